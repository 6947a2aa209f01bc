"""`python -m benchmarks.refine`: a second round, grown from the best candidate that DFT has
checked, on the targets where the app default's checks fall short of cosine 0.9.

The app's default flow checks its picks with GPAW and ranks them by DFT. Where even the best of
them misses the bar's shape (cosine < 0.9), a scientist would go on from that candidate: it is the
closest thing DFT has confirmed. This bench does that once per target: the best checked candidate
(relaxed cell, by DFT cosine) becomes the only seed of the app's three kinds of candidate (template
draws with DOS steering, same-group swaps, swaps beyond the matched site's first shell). The
predictor ranks the children as the app ranks (predicted MAE, novel, valid, calculable), and the
top CHECKS are relaxed and checked with GPAW. A target's result is the best of the first round's
checks and the children's. With --rounds N, the targets still below the bar grow again from the
best checked so far (a child where one beat its parent), N rounds in all.

Only targets below cosine 0.9 are refined, nearest the bar first: on the others the bar is met
already, and more checks can only lower a best-of MAE, so leaving them out understates the gain.
Work is cached (children in runs/truth/refine.jsonl, DFT in the truth bench's relaxed cache), so a
run resumes; every DFT result is a label (data/labels/generated-*).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import truth
from benchmarks.common import append_jsonl, machine, read_jsonl
from dosmatgen_core import dos as dosmod
from dosmatgen_core.candidates.seeding import Seed, candidate_seed
from dosmatgen_core.labels.labeller import ShardWriter
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.paths import DB_URL, GUIDE_PATH, LABEL_DIR, MODEL_PATH, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL
from dosmatgen_core.scoring.verify import relax_in_site_order
from dosmatgen_core.settings import SHIPPED

CACHE = truth.CACHE / "refine.jsonl"
PARTS = ("seeded_steered", "substituted", "substituted_far")     # the app's kinds, grown from one seed
CHECKS = 3
BAR = SHIPPED.cosine_bar      # issue 21's bar


def app_picks(generated: dict, tag: str, site_key: str) -> list[dict] | None:
    """The app default's DFT picks for a target from the truth bench's cache (None: not drawn yet)."""
    m = truth.APP_DEFAULT
    parts = [generated.get(f"{tag}/{p}/{site_key}") for p in truth.MIXED.get(m, (m,))]
    if any(p is None for p in parts):
        return None
    return truth.merge_picks(parts, truth.DEPTH.get(m, truth.TOP))["candidates"]


def checked(cands: list[dict], relaxed: dict, target: np.ndarray) -> list[dict] | None:
    """The candidates with their relaxed cell's DFT MAE and cosine against the target; None while
    any of them is unchecked (a failed check counts as checked, without a score)."""
    out = []
    for c in cands:
        rec = relaxed.get(truth.cif_key(c["cif"]))
        if rec is None:
            return None
        if "site_dos" in rec:
            row = np.asarray(rec["site_dos"])[c["site"]]
            out.append({**c, "key": rec["key"], "relaxed_cif": rec.get("cif"),
                        "dft_mae": dosmod.mae(target, row), "dft_cosine": dosmod.cosine(target, row)})
    return out


def parent_seed(parent: dict) -> Seed:
    """The checked candidate as a seed: its relaxed cell (read in its own site order), its matched
    site, and its DFT match to the target in place of a search hit's. The truth bench's first
    relaxed records kept no cell: those are relaxed again (the same potential, deterministic)."""
    cif = parent.get("relaxed_cif") or relax_in_site_order(parent["cif"], DEFAULT_POTENTIAL)[0]
    return candidate_seed(cif, int(parent["site"]), parent["dft_mae"], parent["dft_cosine"], f"gen:{parent['key']}")


def children(site: dict, parent: dict, res: dict, seed: int, checked_keys=frozenset()) -> dict:
    """The app's three kinds grown from the parent alone, ranked together; the top CHECKS kept of
    those not checked already (a later round from the same parent swaps it the same way)."""
    pseed = parent_seed(parent)
    parts = [truth.generate(p, site, res, seed, seeds=[pseed], top=2 * CHECKS) for p in PARTS]
    for p in parts:
        p["candidates"] = [c for c in p["candidates"] if truth.cif_key(c["cif"]) not in checked_keys]
    merged = truth.merge_picks(parts, CHECKS)
    return {**merged, "parts": {p: len(x["candidates"]) for p, x in zip(PARTS, parts)}}


def _short(c: dict) -> dict:
    keep = ("formula", "element", "site", "predicted_mae", "predicted_cosine", "dft_mae", "dft_cosine", "seed")
    out = {k: c[k] for k in keep if k in c}
    if isinstance(out.get("seed"), dict):
        out["seed"] = {k: v for k, v in out["seed"].items() if k in ("material_id", "substitution")}
    return out


def summarise(sites: list[dict], before: dict, after: dict, lookups: dict) -> dict:
    """Best-of numbers over the set's sites whose first round is complete: before refinement, after
    it (refined sites take the best of both rounds; the rest keep theirs), and the lookup's."""
    keys = [k for k in (f"{s['material_id']}#{s['site']}" for s in sites) if k in before]
    if not keys:
        return {"sites": 0}
    b_cos = np.array([max(c["dft_cosine"] for c in before[k]) for k in keys])
    b_mae = np.array([min(c["dft_mae"] for c in before[k]) for k in keys])
    a_all = {k: before[k] + after.get(k, []) for k in keys}
    a_cos = np.array([max(c["dft_cosine"] for c in a_all[k]) for k in keys])
    a_mae = np.array([min(c["dft_mae"] for c in a_all[k]) for k in keys])
    l_mae = np.array([min(c["dft_mae"] for c in lookups[k]["candidates"]) for k in keys])
    return {"sites": len(keys), "sites_below_bar": int((b_cos < BAR).sum()), "sites_refined": len(after),
            "share_cosine_0.9_before": float((b_cos >= BAR).mean()), "share_cosine_0.9_after": float((a_cos >= BAR).mean()),
            "dft_mae_best_before": float(b_mae.mean()), "dft_mae_best_after": float(a_mae.mean()),
            "lookup_dft_mae": float(l_mae.mean()),
            "rescued": [k for k, x, y in zip(keys, b_cos, a_cos) if x < BAR <= y],
            "children_better_than_parent": int(sum(max((c["dft_cosine"] for c in after[k]), default=-1)
                                                   > max(c["dft_cosine"] for c in before[k]) for k in after))}


def run(site_set: str = "a", max_minutes: float = 0.0, log=print, out: Path | None = None, rounds: int = 1) -> dict:
    """rounds: grow again, from the best checked so far, on the targets still below the bar."""
    t_start = time.time()
    db = open_db(DB_URL)
    sites = truth.set_sites(db, 30, 5, site_set)
    res = {"model": load_model(MODEL_PATH), "predictor": load_predictor(PREDICTOR_PATH), "guide": load_guide(GUIDE_PATH),
           "strength": 0.5}
    res["index"], res["cifs"] = truth.label_index()
    tag = truth.settings_tag(truth.draw_settings(res))
    generated = {r["key"]: r for r in read_jsonl(truth.CACHE / "generated.jsonl")}
    relaxed = {r["key"]: r for r in read_jsonl(truth.RELAXED)}
    grown = {r["key"]: r for r in read_jsonl(CACHE)}
    writer = ShardWriter(LABEL_DIR, prefix="generated")
    lookups, before = {}, {}
    for s in sites:
        sk = f"{s['material_id']}#{s['site']}"
        picks = app_picks(generated, tag, sk)
        first = checked(picks, relaxed, s["target"]) if picks else None
        if first:
            before[sk], lookups[sk] = first, truth.lookup(res["index"], s)
    after: dict[str, list] = {}        # every child checked, over all rounds
    per_site, by_round = [], []

    def write() -> dict:
        rec = {"command": " ".join(["python -m benchmarks.refine", *sys.argv[1:]]), "commit": truth.commit(),
               "machine": machine(),
               "settings": {"site_set": site_set, "app_default": truth.APP_DEFAULT, "parts": PARTS, "checks": CHECKS,
                            "rounds": rounds, "draw_tag": tag, "cell": "relaxed", "strength": res["strength"]},
               "note": "rounds grown from the best DFT-checked candidate so far (by cosine; the first from the app "
                       "default's checks) on the targets below cosine 0.9; 'after' is the best of every DFT check "
                       "(states/eV); by_round: the same after each round",
               **summarise(sites, before, after, lookups), "by_round": by_round, "per_site": per_site}
        if out is not None:
            out.write_text(json.dumps(rec, indent=1))
        return rec

    out_of_time = False
    for rnd in range(1, rounds + 1):
        todo = []
        for k, s in enumerate(sites):
            sk = f"{s['material_id']}#{s['site']}"
            if sk in before:
                best = max(before[sk] + after.get(sk, []), key=lambda c: c["dft_cosine"])
                if best["dft_cosine"] < BAR:
                    todo.append((best["dft_cosine"], k, s, sk, best))
        todo.sort(key=lambda t: -t[0])        # nearest the bar first: a partial run decides most
        log(f"set {site_set}, round {rnd}: {len(before)} sites with the first round complete, {len(todo)} below "
            f"cosine {BAR}")
        done = 0
        for _, k, s, sk, parent in todo:
            if max_minutes and time.time() - t_start > 60 * max_minutes:
                out_of_time = True
                break
            key = f"{tag}/{parent['key']}/{sk}" + (f"/r{rnd}" if rnd > 1 else "")
            if key not in grown:
                seen = {truth.cif_key(c["cif"]) for c in before[sk] + after.get(sk, [])}
                grown[key] = {"key": key, **children(s, parent, res, seed=7 + 1000 * k + 100 * (rnd - 1),
                                                     checked_keys=seen)}
                append_jsonl(CACHE, grown[key])
                log(f"{sk}: {len(grown[key]['candidates'])} children to check of {grown[key]['drawn']} "
                    f"({grown[key]['seconds']} s; {grown[key]['parts']})")
            kids = grown[key]["candidates"]
            t = time.perf_counter()
            for c in kids:
                if max_minutes and time.time() - t_start > 60 * max_minutes:
                    break
                if truth.cif_key(c["cif"]) not in relaxed:
                    truth.calculate_relaxed(c, relaxed, writer, provenance={"bench": "refine", "target": sk,
                                                                             "parent": parent["key"], "round": rnd})
            got = checked(kids, relaxed, s["target"])
            if got is None:
                out_of_time = True
                break
            after.setdefault(sk, []).extend(got)
            done += 1
            per_site.append({"site": sk, "element": s["element"], "round": rnd, "parent": _short(parent),
                             "drawn": grown[key]["drawn"], "children": [_short(c) for c in got],
                             "generate_seconds": grown[key]["seconds"], "check_seconds": round(time.perf_counter() - t, 1)})
            best = max((c["dft_cosine"] for c in got), default=float("nan"))
            log(f"{sk} ({s['element']}) round {rnd}: parent cosine {parent['dft_cosine']:.3f}, best child {best:.3f}")
            write()
        summary = summarise(sites, before, after, lookups)
        by_round.append({"round": rnd, "sites_grown": done, "complete": not out_of_time,
                         **{k: summary[k] for k in ("share_cosine_0.9_after", "dft_mae_best_after", "rescued")}})
        write()
        if out_of_time:
            break
    writer.seal()
    return write()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.refine", description=__doc__.splitlines()[0])
    p.add_argument("--site-set", default="a", choices=truth.SITE_SETS)
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop starting DFT after this long (0: no limit)")
    p.add_argument("--rounds", type=int, default=1, help="grow again from the best so far, this many times in all")
    p.add_argument("--out", type=Path, help="the record (default: benchmarks/results/refine-SET.json)")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    out = args.out or ROOT / "benchmarks" / "results" / f"refine-{args.site_set}.json"
    rec = run(args.site_set, args.max_minutes, log=lambda m: print(m, flush=True), out=out, rounds=args.rounds)
    print(json.dumps({k: v for k, v in rec.items() if k not in ("machine", "per_site")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
