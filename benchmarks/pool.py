"""`python -m benchmarks.pool`: do the hard targets' matches sit among the Materials Project
structures that have no DFT label yet?

After the app default and three DFT-guided rounds, about a third of the truth targets stay below
cosine 0.9, and the best-shaped of all labelled sites reaches the bar on only 74 % / 73 % of the
sets. The labels cover about 3k of the 18k shared MP structures, so the wall may be the labels'
reach rather than the method's. This bench asks the pool:

1. `index`: the predictor's site DOS for every unlabelled MP structure the labeller could
   calculate (at most 8 atoms, recipe elements), as one searchable SiteIndex (cached by predictor
   and pool in runs/truth/pool-index-*.npz).
2. `want`: for each target still below the bar, the unlabelled structures whose predicted site is
   closest (by MAE and by cosine, one hit per structure, the target's own material and copies of
   it left out); their ids go to runs/truth/pool-wanted.txt, which `dosmatgen label --first`
   labels before its usual queue (so the DFT is the labeller's, and a label like any other).
3. `measure`: once labelled, each target's best DFT site among its wanted structures against the
   best it had: the labels' lookup and every GPAW check of the app default and the rounds.
   Written to benchmarks/results/pool-SET.json.
4. `grow`: the app's round from DFT-confirmed sites that beat every check the target had. Seeds
   (up to three, best DFT cosine first) from two sources: `pool`, the wanted structures once
   labelled; `shape`, the best-shaped of every labelled site (the pool's new labels included; the
   app default seeds by MAE, and for a third of these targets a labelled site of better shape than
   any check exists). The seeds give the app's three kinds (steered draws, same-group swaps, swaps
   beyond the first shell), the predictor ranks the novel children, and the top 3 are relaxed and
   checked with GPAW (cached in runs/truth/pool-grown.jsonl; each check a label). Added to the same
   record, with the whole set's share at the bar and best-of MAE before and after.
5. `guard`: the app's rounds take a known site only when it beats the best check on both measures
   (seeding.beats: higher DFT cosine, MAE no larger). Read back from the `shape` rounds above,
   which seeded by cosine alone: which rounds that rule would have kept, how many GPAW checks
   their children took, and what the dropped seeds' children reached. Written to
   benchmarks/results/pool-guard.json; nothing is calculated.

The predictor is only the finder here: every number the record reports as a match is DFT.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import refine, truth
from benchmarks.common import append_jsonl, machine, read_jsonl
from dosmatgen_core import dos as dosmod
from dosmatgen_core.candidates.seeding import Seed, beats, drop_copies, known_hits
from dosmatgen_core.labels.labeller import ShardWriter, iter_label_lines, supported_elements
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.paths import DB_URL, GUIDE_PATH, LABEL_DIR, MODEL_PATH, MP_CSVS, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.search import SiteHit, SiteIndex
from dosmatgen_core.structures import (Crystal, StructureError, atoms_from_cif, iter_mp_csv, read_structure,
                                       to_structure)

WANTED = truth.CACHE / "pool-wanted.txt"
GROWN = truth.CACHE / "pool-grown.jsonl"
PER_TARGET = 2          # wanted structures per target and ranking (MAE, cosine)
MAX_ATOMS = truth.MAX_DFT_ATOMS
CHUNK = 256


def pool_rows(labelled: set[str], max_atoms: int = MAX_ATOMS, csvs=tuple(MP_CSVS)) -> list[tuple[str, str]]:
    """(material id, CIF) of every MP structure the labeller could calculate that has no label."""
    ok = supported_elements()
    rows, seen = [], set(labelled)
    for path in csvs:
        for r in iter_mp_csv(path):
            mid = r["material_id"]
            if mid in seen or int(r["nsites"]) > max_atoms:
                continue
            seen.add(mid)
            try:
                s = read_structure(r["cif"], source=mid)
            except StructureError:
                continue
            if {e.symbol for e in s.composition.elements} <= ok:
                rows.append((mid, r["cif"]))
    return rows


def pool_index(predictor, labelled: set[str], log=print) -> tuple[SiteIndex, dict[str, str]]:
    """The predictor's site DOS of the unlabelled pool as a SiteIndex (rows in the CIF's own site
    order, as ASE reads it), and each structure's CIF; cached by predictor and pool."""
    rows = pool_rows(labelled)
    key = hashlib.sha256(json.dumps([str(predictor.card.get("sha256", "")), [m for m, _ in rows]]).encode()).hexdigest()[:12]
    path = truth.CACHE / f"pool-index-{key}.npz"
    cifs = dict(rows)
    if path.exists():
        with np.load(path, allow_pickle=True) as d:
            return SiteIndex(d["material_ids"], d["formulas"], d["sites"], d["elements"], d["n_atoms"], d["curves"]), cifs
    entries = []
    for k in range(0, len(rows), CHUNK):
        structs = [to_structure(atoms_from_cif(c)) for _, c in rows[k:k + CHUNK]]
        preds = predictor.predict([(np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix) for s in structs])
        for (mid, _), s, p in zip(rows[k:k + CHUNK], structs, preds):
            if np.isfinite(p).all():
                entries.append((mid, s.composition.reduced_formula, [x.specie.symbol for x in s], np.clip(p, 0, None)))
        log(f"pool index: {min(k + CHUNK, len(rows))}/{len(rows)} structures predicted")
    index = SiteIndex.from_rows(entries)
    np.savez(path, material_ids=index.material_ids, formulas=index.formulas, sites=index.sites,
             elements=index.elements, n_atoms=index.n_atoms, curves=index.curves)
    return index, cifs


def best_checks(site_set: str, res: dict) -> tuple[list[dict], dict[str, list[dict]]]:
    """The set's targets, and per target every GPAW check so far: the app default's picks and
    every refinement round's children (relaxed cells, DFT MAE and cosine against the target)."""
    sites = truth.set_sites(open_db(DB_URL), 30, 5, site_set)
    tag = truth.settings_tag(truth.draw_settings(res))
    generated = {r["key"]: r for r in read_jsonl(truth.CACHE / "generated.jsonl")}
    relaxed = {r["key"]: r for r in read_jsonl(truth.RELAXED)}
    grown = read_jsonl(refine.CACHE)
    out = {}
    for s in sites:
        sk = f"{s['material_id']}#{s['site']}"
        picks = refine.app_picks(generated, tag, sk) or []
        kids = [c for r in grown if r["key"].startswith(tag + "/") and r["key"].split("/")[2] == sk
                for c in r["candidates"]]
        scored = refine.checked([c for c in picks + kids if truth.cif_key(c["cif"]) in relaxed], relaxed, s["target"])
        if scored:
            out[sk] = scored
    return sites, out


def hard_targets(sites: list[dict], checks: dict[str, list[dict]]) -> list[dict]:
    """The targets whose best GPAW check is below the bar."""
    return [s for s in sites if (sk := f"{s['material_id']}#{s['site']}") in checks
            and max(c["dft_cosine"] for c in checks[sk]) < refine.BAR]


def wanted(site: dict, pool: SiteIndex, cifs: dict[str, str], labelled_cifs: dict[str, str]) -> dict[str, list]:
    """The pool structures closest to the target by predicted MAE and by predicted cosine (one hit
    per structure; the target's own material and any copy of it left out)."""
    left_out = [to_structure(atoms_from_cif(labelled_cifs[site["material_id"]]))]
    structure_of = lambda m: to_structure(atoms_from_cif(cifs[m]))      # noqa: E731
    out = {}
    for by in ("mae", "cosine"):
        hits = pool.search(site["target"], top=4 * PER_TARGET, by=by, per_structure=True)
        out[by] = [h.to_dict() for h in drop_copies(hits, left_out, structure_of)[:PER_TARGET]]
    return out


def dft_of(ids: set[str]) -> tuple[dict[str, tuple[list[str], np.ndarray]], dict[str, str]]:
    """The labels of these structures (element per site, site DOS) from every shard and the
    labeller's pending lines, and their labelled cells' CIFs (rows in that CIF's site order)."""
    out, cifs = {}, {}
    lines = [d for _, d in iter_label_lines([LABEL_DIR])] + read_jsonl(ShardWriter(LABEL_DIR).pending)   # not sealed yet
    for d in lines:
        if d["material_id"] in ids and "failed" not in d:
            out[d["material_id"]] = (atoms_from_cif(d["cif"]).get_chemical_symbols(), np.asarray(d["site_dos"]))
            cifs[d["material_id"]] = d["cif"]
    return out, cifs


def best_site(target: np.ndarray, elements: list[str], rows: np.ndarray, element: str) -> tuple[int, float, float]:
    """(site, DFT cosine, DFT MAE) of a labelled structure's best-shaped site of the predicted hit's
    element. The label's rows follow its own CIF's order, which need not be the MP table's order
    the predicted hit was numbered in, so the site is found again by element and DFT."""
    same = [i for i, e in enumerate(elements) if e == element] or list(range(len(elements)))
    cos = {i: dosmod.cosine(target, rows[i]) for i in same}
    i = max(cos, key=cos.get)
    return i, cos[i], dosmod.mae(target, rows[i])


def shape_seeds(site: dict, index: SiteIndex, cifs: dict[str, str], above: float, k: int = 3) -> list[Seed]:
    """The best-shaped labelled sites (DFT cosine to the target; every label, the pool's new ones
    too) that beat the target's best check: the target's own material, its copies and cells over
    MAX_ATOMS left out; their label's cell as the seed, rows in its order."""
    structure_of = lambda m: to_structure(atoms_from_cif(cifs[m]))      # noqa: E731
    big = set(np.unique(index.material_ids[index.n_atoms > MAX_ATOMS]).tolist())
    hits = known_hits(index, site["target"], k, [structure_of(site["material_id"])], structure_of, by="cosine",
                      exclude={site["material_id"]} | big)
    return [Seed(h, Crystal.from_structure(structure_of(h.material_id))) for h in hits if h.cosine > above]


def set_summary(sites: list[dict], checks: dict[str, list[dict]], per_target: list[dict], index: SiteIndex,
                bar: float) -> dict:
    """The whole set before and after the grown rounds: cosine >= bar share and best-of MAE over
    every GPAW check (the app default's, the refinement rounds', and these rounds' children), and
    the lookup's (the nearest labelled site by MAE, every label, own material left out)."""
    rows = {r["site"]: r for r in per_target}
    keys = [k for k in (f"{s['material_id']}#{s['site']}" for s in sites) if k in checks]
    cos_b = np.array([max(c["dft_cosine"] for c in checks[k]) for k in keys])
    mae_b = np.array([min(c["dft_mae"] for c in checks[k]) for k in keys])
    cos_a = np.array([max(x, rows.get(k, {}).get("grown_best_dft_cosine") or -1) for k, x in zip(keys, cos_b)])
    mae_a = np.array([min(x, rows.get(k, {}).get("grown_best_dft_mae") or np.inf) for k, x in zip(keys, mae_b)])
    lookup = np.array([truth.lookup(index, s)["candidates"][0]["dft_mae"] for s in sites
                       if f"{s['material_id']}#{s['site']}" in checks])
    return {"set_sites": len(keys), "share_cosine_0.9_before": float((cos_b >= bar).mean()),
            "share_cosine_0.9_after": float((cos_a >= bar).mean()), "dft_mae_best_before": float(mae_b.mean()),
            "dft_mae_best_after": float(mae_a.mean()), "lookup_dft_mae": float(lookup.mean()),
            "rescued": [k for k, x, y in zip(keys, cos_b, cos_a) if x < bar <= y]}


def resources() -> dict:
    return {"model": load_model(MODEL_PATH), "predictor": load_predictor(PREDICTOR_PATH), "guide": load_guide(GUIDE_PATH),
            "strength": 0.5}


def pool_seeds(row: dict, cifs: dict[str, str], k: int = 3) -> list[Seed]:
    """The labelled pool structures of a measured target that beat its best check, best DFT site
    first: as seeds (their label's cell, rows in its order), their DFT match in place of a search hit's."""
    better = sorted({p["material_id"]: p for p in row["pool"] if p["labelled"] and p["dft_cosine"] > row["best_check_cosine"]}
                    .values(), key=lambda p: -p["dft_cosine"])[:k]
    out = []
    for p in better:
        s = to_structure(atoms_from_cif(cifs[p["material_id"]]))
        hit = SiteHit(p["material_id"], s.composition.reduced_formula, int(p["dft_site"]), s[int(p["dft_site"])].specie.symbol,
                      len(s), float(p["dft_mae"]), float(p["dft_cosine"]), 0.0)
        out.append(Seed(hit, Crystal.from_structure(s)))
    return out


def wanted_order(plan: dict) -> list[str]:
    """The wanted ids, most promising first: each target's hit of highest predicted cosine (its
    best chance), those by predicted cosine; then every other hit. These structures are the
    costly end of the labeller's queue (5-15 minutes each on one core), so a session labels the
    first ones."""
    hits = [(t[by], k) for k, t in plan["targets"].items() for by in ("mae", "cosine")]
    firsts = {}
    for hs, k in hits:
        for h in hs:
            if k not in firsts or h["cosine"] > firsts[k]["cosine"]:
                firsts[k] = h
    first = [h["material_id"] for h in sorted(firsts.values(), key=lambda h: -h["cosine"])]
    return list(dict.fromkeys(first + [h["material_id"] for hs, _ in hits for h in hs]))


def cmd_want(site_sets, log=print) -> dict:
    """The plan (pinned in runs/truth/pool-plan.json on first use: labelled structures leave the
    pool, so a new search would move the plan under the labels made for it) and the wanted ids."""
    plan_file = truth.CACHE / "pool-plan.json"
    if plan_file.exists():
        plan = json.loads(plan_file.read_text())
    else:
        res = resources()
        index, labelled_cifs = truth.label_index()
        pool, cifs = pool_index(res["predictor"], set(labelled_cifs), log)
        plan = {"pool_structures": len(cifs), "pool_sites": len(pool), "targets": {}}
        for ss in site_sets:
            sites, checks = best_checks(ss, res)
            for s in hard_targets(sites, checks):
                plan["targets"][f"{s['material_id']}#{s['site']}"] = {"set": ss, "element": s["element"],
                                                                       **wanted(s, pool, cifs, labelled_cifs)}
        plan_file.write_text(json.dumps(plan, indent=1))
    ids = wanted_order(plan)
    WANTED.write_text("\n".join(ids) + "\n")
    log(f"{len(plan['targets'])} targets below the bar; {len(ids)} pool structures wanted → {WANTED}")
    return plan


def cmd_measure(site_set: str, out: Path, log=print, grow: tuple = (), max_minutes: float = 0.0) -> dict:
    """Per hard target: the best GPAW check so far, the labels' lookup (DFT, every label but the
    wanted structures'), and the best DFT site among its wanted structures once labelled; with
    grow ("pool", "shape"), the app's round from the seeds of each source that beat the best check
    (`grow` in the docstring)."""
    t_start = time.time()
    res = resources()
    plan = json.loads((truth.CACHE / "pool-plan.json").read_text())
    index, all_cifs = truth.label_index()
    sites, checks = best_checks(site_set, res)
    targets = {k: t for k, t in plan["targets"].items() if t["set"] == site_set}
    wanted_ids = {h["material_id"] for t in targets.values() for by in ("mae", "cosine") for h in t[by]}
    labels, label_cifs = dft_of(wanted_ids)
    per_target = []
    for s in sites:
        sk = f"{s['material_id']}#{s['site']}"
        if sk not in targets:
            continue
        g = s["target"]
        known = index.search(g, top=1, by="cosine", exclude={s["material_id"]} | wanted_ids, per_structure=True)[0]
        row = {"site": sk, "element": s["element"],
               "best_check_cosine": max(c["dft_cosine"] for c in checks[sk]),
               "best_check_mae": min(c["dft_mae"] for c in checks[sk]),
               "best_known_site_cosine": known.cosine, "pool": []}
        for by in ("mae", "cosine"):
            for h in targets[sk][by]:
                got = labels.get(h["material_id"])
                entry = {"by": by, "material_id": h["material_id"], "formula": h["formula"], "element": h["element"],
                         "predicted_mae": h["mae"], "predicted_cosine": h["cosine"], "labelled": got is not None}
                if got is not None:
                    i, cos, mae = best_site(g, *got, h["element"])
                    entry.update(dft_site=i, dft_cosine=cos, dft_mae=mae)
                row["pool"].append(entry)
        done = [p for p in row["pool"] if p["labelled"]]
        row["first_hit_labelled"] = any(p["labelled"] and p["predicted_cosine"] == max(q["predicted_cosine"] for q in row["pool"])
                                        for p in row["pool"])
        row["pool_best_dft_cosine"] = max((p["dft_cosine"] for p in done), default=None)
        row["pool_best_dft_mae"] = min((p["dft_mae"] for p in done), default=None)
        per_target.append(row)
    if grow:
        tag = truth.settings_tag(truth.draw_settings(res))
        grown = {r["key"]: r for r in read_jsonl(GROWN)}
        relaxed = {r["key"]: r for r in read_jsonl(truth.RELAXED)}
        writer = ShardWriter(LABEL_DIR, prefix="generated")
        by_key = {f"{s['material_id']}#{s['site']}": (k, s) for k, s in enumerate(sites)}
        for row in per_target:
            k, s = by_key[row["site"]]
            for source in grow:
                if max_minutes and time.time() - t_start > 60 * max_minutes:
                    break
                seeds = (pool_seeds(row, label_cifs) if source == "pool" else
                         shape_seeds(s, index, all_cifs, row["best_check_cosine"]))
                if not seeds:
                    continue
                key = f"{tag}/{row['site']}/" + "+".join(x.hit.material_id for x in seeds)
                if key not in grown:
                    parts = [truth.generate(p, s, res, 7 + 1000 * k, seeds=seeds, top=2 * refine.CHECKS)
                             for p in refine.PARTS]
                    grown[key] = {"key": key, **truth.merge_picks(parts, refine.CHECKS),
                                  "parts": {p: len(x["candidates"]) for p, x in zip(refine.PARTS, parts)}}
                    append_jsonl(GROWN, grown[key])
                kids = grown[key]["candidates"]
                for c in kids:
                    if max_minutes and time.time() - t_start > 60 * max_minutes:
                        break
                    truth.calculate_relaxed(c, relaxed, writer, provenance={"bench": "pool", "target": row["site"],
                                                                             "seeds": source})
                got = refine.checked([c for c in kids if truth.cif_key(c["cif"]) in relaxed], relaxed, s["target"])
                row.setdefault("grown", {})[source] = {
                    "seeds": [x.record() for x in seeds], "drawn": grown[key]["drawn"],
                    "children": [refine._short(c) for c in got], "complete": len(got) == len(kids)}
                log(f"{row['site']} ({row['element']}): best check {row['best_check_cosine']:.3f}, seeds ({source}) "
                    + ", ".join(f"{x.hit.formula} {x.hit.cosine:.3f}" for x in seeds)
                    + f"; best child {max((c['dft_cosine'] for c in got), default=float('nan')):.3f}")
                out.write_text(json.dumps({"per_target": per_target}, indent=1))
        writer.seal()
    for row in per_target:
        kids = [c for g_ in row.get("grown", {}).values() for c in g_["children"]]
        row["grown_best_dft_cosine"] = max((c["dft_cosine"] for c in kids), default=None)
        row["grown_best_dft_mae"] = min((c["dft_mae"] for c in kids), default=None)
    full = [r for r in per_target if r["pool_best_dft_cosine"] is not None]     # at least one labelled
    bar = refine.BAR
    rec = {"command": " ".join(["python -m benchmarks.pool", *sys.argv[1:]]), "commit": truth.commit(),
           "machine": machine(), "site_set": site_set, "bar": bar, "pool_structures": plan["pool_structures"],
           "note": "targets whose best GPAW check (app default + refinement rounds) is below the bar; 'pool' = "
                   f"the {PER_TARGET} unlabelled MP structures nearest by predicted MAE and by predicted cosine, "
                   "labelled with the labeller's recipe; cosines and MAEs marked dft_* are GPAW, states/eV",
           "targets_below_bar": len(per_target), "targets_with_pool_labels": len(full),
           "targets_first_hit_labelled": sum(r["first_hit_labelled"] for r in per_target),
           "pool_reaches_bar": sum(r["pool_best_dft_cosine"] >= bar for r in full),
           "pool_beats_best_check": sum(r["pool_best_dft_cosine"] > r["best_check_cosine"] for r in full),
           "pool_beats_best_known_site": sum(r["pool_best_dft_cosine"] > r["best_known_site_cosine"] for r in full),
           "grown_targets": {src: sum(src in r.get("grown", {}) for r in per_target) for src in ("pool", "shape")},
           "grown_reach_bar": sum((r.get("grown_best_dft_cosine") or 0) >= bar for r in per_target),
           **set_summary(sites, checks, per_target, index, bar),
           "per_target": per_target}
    out.write_text(json.dumps(rec, indent=1))
    return rec


def seed_guard(per_target: list[dict], bar: float) -> dict:
    """The `shape` rounds of one set's records read under the app's rule (seeding.beats: a seed's
    DFT cosine above the best check's and its MAE no larger): per target, which seeds it keeps and
    what the children of kept and dropped seeds reached (DFT cosine, against the best check)."""
    rows = []
    for t in per_target:
        g = (t.get("grown") or {}).get("shape")
        if not g:
            continue
        keep = {sd["material_id"]: beats(SiteHit(sd["material_id"], sd["formula"], sd["site"], sd["element"], 0,
                                                 sd["mae"], sd["cosine"], 0.0),
                                         cosine=t["best_check_cosine"], mae=t["best_check_mae"]) for sd in g["seeds"]}
        kids = [{"kept": keep.get(c["seed"]["material_id"], False), "dft_cosine": c["dft_cosine"],
                 "gain": c["dft_cosine"] - t["best_check_cosine"]} for c in g["children"]]
        rows.append({"site": t["site"], "best_check_cosine": t["best_check_cosine"],
                     "best_check_mae": t["best_check_mae"], "seeds_kept": sum(keep.values()), "seeds": len(keep),
                     "children": kids})

    def of(kept: bool) -> dict:
        kids = [c for r in rows for c in r["children"] if c["kept"] is kept]
        return {"checks": len(kids), "children_beat_check": sum(c["gain"] > 0 for c in kids),
                "children_reach_bar": sum(c["dft_cosine"] >= bar for c in kids),
                "best_gain": max((c["gain"] for c in kids), default=None)}
    return {"targets_with_shape_round": len(rows), "rounds_kept": sum(r["seeds_kept"] > 0 for r in rows),
            "from_kept_seeds": of(True), "from_dropped_seeds": of(False), "per_target": rows}


def cmd_guard(site_sets, out: Path) -> dict:
    """seed_guard over each set's pool record (benchmarks/results/pool-SET.json, as `grow` left it)."""
    sets = {}
    for ss in site_sets:
        rec = json.loads((ROOT / "benchmarks" / "results" / f"pool-{ss}.json").read_text())
        sets[ss] = {"record_commit": rec["commit"], **seed_guard(rec["per_target"], rec["bar"])}
    total = {k: sum(v[k] for v in sets.values()) for k in ("targets_with_shape_round", "rounds_kept")}
    for part in ("from_kept_seeds", "from_dropped_seeds"):
        total[part] = {k: sum(v[part][k] for v in sets.values()) for k in ("checks", "children_beat_check",
                                                                            "children_reach_bar")}
        gains = [v[part]["best_gain"] for v in sets.values() if v[part]["best_gain"] is not None]
        total[part]["best_gain"] = max(gains, default=None)
    rec = {"command": " ".join(["python -m benchmarks.pool", *sys.argv[1:]]), "commit": truth.commit(),
           "machine": machine(),
           "note": "the pool bench's `shape` rounds (seeds by DFT cosine alone) read under the app's rule "
                   "(seeding.beats: DFT cosine above the best check's, DFT MAE no larger); children are the "
                   "relaxed GPAW checks those rounds made; gain = child's DFT cosine - the best check's",
           "bar": refine.BAR, **total, "sets": sets}
    out.write_text(json.dumps(rec, indent=1))
    return rec


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pool", description=__doc__.splitlines()[0])
    p.add_argument("step", choices=("want", "measure", "grow", "guard"))
    p.add_argument("--max-minutes", type=float, default=0.0, help="grow: stop starting DFT after this long")
    p.add_argument("--seeds", action="append", choices=("pool", "shape"),
                   help="grow: from the pool's labelled structures, or from the best-shaped labelled sites (default both)")
    p.add_argument("--site-set", action="append", choices=truth.SITE_SETS, help="default: every set")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    sets = args.site_set or list(truth.SITE_SETS)
    log = lambda m: print(m, flush=True)      # noqa: E731
    if args.step == "want":
        cmd_want(sets, log)
    elif args.step == "guard":
        rec = cmd_guard(sets, ROOT / "benchmarks" / "results" / "pool-guard.json")
        print(json.dumps({k: v for k, v in rec.items() if k not in ("machine", "sets")}, indent=1))
    else:
        for ss in sets:
            rec = cmd_measure(ss, ROOT / "benchmarks" / "results" / f"pool-{ss}.json", log, grow=tuple(args.seeds or ("pool", "shape")) if args.step == "grow" else (),
                              max_minutes=args.max_minutes)
            print(json.dumps({k: v for k, v in rec.items() if k not in ("machine", "per_target")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
