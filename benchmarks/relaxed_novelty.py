"""`python -m benchmarks.relaxed_novelty`: every GPAW check of the truth sets again, with "novel"
judged on the cell DFT calculated.

The benches pick novel candidates on the drawn cell (StructureMatcher against the shared MP
structures), then relax each one with SevenNet before GPAW, as the app does. A drawn cell can
relax into a known compound; its DFT curve is then that compound's, and it is no novel match.
This reads every check the truth bench (the app default's picks), the refinement rounds and the
pool rounds made, and gives each set's share at cosine 0.9 and best-of MAE twice: counting every
check, as the records did, and counting only checks whose relaxed cell is still no known structure
(truth.relaxed_known). Nothing is calculated.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import pool, refine, truth
from benchmarks.common import machine, read_jsonl
from dosmatgen_core.paths import ROOT

OUT = ROOT / "benchmarks" / "results" / "relaxed-novelty.json"


def best_of(checks: dict[str, list[dict]], keys: list[str], bar: float, strict: bool) -> dict:
    """Share of keys whose best check reaches bar, and mean best MAE (strict: only checks whose
    relaxed cell is novel; a site with none left counts as below the bar and has no MAE)."""
    cos, mae, none = [], [], []
    for k in keys:
        got = [c for c in checks.get(k, []) if not (strict and c.get("relaxed_into"))]
        cos.append(max((c["dft_cosine"] for c in got), default=-1.0))
        if got:
            mae.append(min(c["dft_mae"] for c in got))
        else:
            none.append(k)
    return {"share_cosine_0.9": float(np.mean(np.array(cos) >= bar)), "dft_mae_best": float(np.mean(mae)),
            "sites_without_check": none}


def set_record(site_set: str, res: dict, bar: float = refine.BAR) -> dict:
    """The set's app-default checks, and those with every round's children, counted both ways."""
    sites, app_and_refine = pool.best_checks(site_set, res)
    relaxed = {r["key"]: r for r in read_jsonl(truth.RELAXED)}
    tag = truth.settings_tag(truth.draw_settings(res))
    generated = {r["key"]: r for r in read_jsonl(truth.CACHE / "generated.jsonl")}
    grown = read_jsonl(pool.GROWN)
    known_of = {}          # a check's relaxed_known, matched once though two lists hold it

    def known(key: str) -> str | None:
        if key not in known_of:
            known_of[key] = truth.relaxed_known(relaxed[key])
        return known_of[key]
    everything, app_only, into = {}, {}, []
    for s in sites:
        sk = f"{s['material_id']}#{s['site']}"
        picks = refine.app_picks(generated, tag, sk) or []
        kids = [c for r in grown if r["key"].split("/")[1] == sk for c in r["candidates"]]
        for name, cands in (("app", picks), ("all", picks + kids)):
            scored = refine.checked([c for c in cands if truth.cif_key(c["cif"]) in relaxed], relaxed, s["target"]) or []
            extra = app_and_refine.get(sk, []) if name == "all" else []
            seen, out = set(), []
            for c in scored + extra:             # each check once (a kid can be a refinement's too)
                if c["key"] in seen:
                    continue
                seen.add(c["key"])
                hit = known(c["key"])
                out.append({**c, "relaxed_into": hit} if hit else c)
                if hit and name == "all":
                    into.append({"site": sk, "formula": c["formula"], "relaxed_into": hit,
                                 "dft_cosine": c["dft_cosine"], "dft_mae": c["dft_mae"]})
            (everything if name == "all" else app_only)[sk] = out
    keys = [f"{s['material_id']}#{s['site']}" for s in sites]
    return {"sites": len(keys), "checks": sum(len(v) for v in everything.values()),
            "app_default": {"as_recorded": best_of(app_only, keys, bar, False),
                            "novel_after_relaxation": best_of(app_only, keys, bar, True)},
            "with_every_round": {"as_recorded": best_of(everything, keys, bar, False),
                                 "novel_after_relaxation": best_of(everything, keys, bar, True)},
            "checks_relaxed_into_known": into}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.relaxed_novelty", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    res = pool.resources()
    rec = {"command": " ".join(["python -m benchmarks.relaxed_novelty", *sys.argv[1:]]), "commit": truth.commit(),
           "machine": machine(),
           "note": "every relaxed GPAW check of the truth sets (app default, refinement rounds, pool rounds); "
                   "novel_after_relaxation drops checks whose relaxed cell matches a shared MP structure "
                   "(evaluate.same_compound: two relaxed cells, volume and shape); cosine and MAE against the target site, states/eV",
           "bar": refine.BAR, "sets": {ss: set_record(ss, res) for ss in truth.SITE_SETS}}
    with open(args.out, "w") as fh:
        json.dump(rec, fh, indent=1)
    print(json.dumps({ss: {k: {kk: {x: y for x, y in vv.items() if x != "sites_without_check"} for kk, vv in v[k].items()}
                           for k in ("app_default", "with_every_round")} for ss, v in rec["sets"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
