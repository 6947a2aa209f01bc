"""`python -m benchmarks.seed_type`: do the app default's new crystals that keep their seed's
arrangement of sites match under DFT as well as those with another arrangement?

A seeded candidate either keeps its seed's arrangement of sites with other elements on them (a
swap, or a draw that kept the framework) or is a new arrangement drawn by the generator. The card
now says which (pipeline: `seed_type`, evaluate.same_arrangement on the drawn cell). This reads
every relaxed GPAW check of the app default's picks on the truth sets (runs/truth, nothing is
calculated) and compares the two kinds: the checks, and which kind each site's best new check is.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import pool, refine, truth
from benchmarks.common import machine, read_jsonl
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL, ROOT
from dosmatgen_core.scoring.evaluate import same_arrangement
from dosmatgen_core.structures import atoms_from_cif, to_structure

OUT = ROOT / "benchmarks" / "results" / "seed-type.json"


def summary(checks: list[dict], bar: float) -> dict:
    """n, mean DFT MAE, cosine ≥ bar share and mean predicted MAE of some checks."""
    if not checks:
        return {"n": 0}
    return {"n": len(checks), "dft_mae": float(np.mean([c["dft_mae"] for c in checks])),
            "share_cosine_0.9": float(np.mean([c["dft_cosine"] >= bar for c in checks])),
            "predicted_mae": float(np.mean([c["predicted_mae"] for c in checks if c.get("predicted_mae") is not None]))}


def set_record(site_set: str, res: dict, db, bar: float = refine.BAR) -> dict:
    sites = truth.set_sites(db, 30, 5, site_set)
    tag = truth.settings_tag(truth.draw_settings(res))
    generated = {r["key"]: r for r in read_jsonl(truth.CACHE / "generated.jsonl")}
    relaxed = {r["key"]: r for r in read_jsonl(truth.RELAXED)}
    seed_cells: dict = {}
    checks, best = [], {"keeps": 0, "new arrangement": 0}
    for s in sites:
        sk = f"{s['material_id']}#{s['site']}"
        picks = [c for c in refine.app_picks(generated, tag, sk) or [] if truth.cif_key(c["cif"]) in relaxed]
        scored = [c for c in refine.checked(picks, relaxed, s["target"]) or []
                  if c.get("novel") and c.get("seed") and not truth.relaxed_known(relaxed[c["key"]])]
        for c in scored:
            mid = c["seed"]["material_id"]
            if mid not in seed_cells:
                seed_cells[mid] = to_structure(db.get(mid).atoms)
            c["seed_type"] = same_arrangement(to_structure(atoms_from_cif(c["cif"])), seed_cells[mid])
            checks.append({"site": sk, "formula": c["formula"], "seed": mid, "seed_formula": c["seed"]["formula"],
                           "origin": c.get("origin", "generator"), "seed_type": c["seed_type"],
                           "dft_mae": c["dft_mae"], "dft_cosine": c["dft_cosine"],
                           "predicted_mae": c.get("predicted_mae")})
        if scored:
            top = min(scored, key=lambda c: c["dft_mae"])
            best["keeps" if top["seed_type"] else "new arrangement"] += 1
    keeps = [c for c in checks if c["seed_type"]]
    other = [c for c in checks if not c["seed_type"]]
    return {"sites": len(sites), "checks": len(checks),
            "keeps_seed_arrangement": summary(keeps, bar), "new_arrangement": summary(other, bar),
            "best_new_check_per_site": best, "per_check": checks}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seed_type", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    res = pool.resources()
    db = open_db(DB_URL)
    rec = {"command": " ".join(["python -m benchmarks.seed_type", *sys.argv[1:]]), "commit": truth.commit(),
           "machine": machine(),
           "note": "relaxed GPAW checks of the app default's picks that stayed new after relaxation; seed_type: the "
                   "drawn cell's sites lie as its seed's, whatever the elements (evaluate.same_arrangement: every "
                   "site one element, the novelty matcher); MAE and cosine against the target site on the whole "
                   "grid, states/eV",
           "bar": refine.BAR, "sets": {ss: set_record(ss, res, db) for ss in truth.SITE_SETS}}
    with open(args.out, "w") as fh:
        json.dump(rec, fh, indent=1)
    print(json.dumps({ss: {k: v for k, v in r.items() if k != "per_check"} for ss, r in rec["sets"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
