"""`python -m benchmarks.top_up`: how often the app's default run draws a second batch.

The app's default (seeded, with swaps) DFT-checks the top new crystals of a run. Once earlier
checks have made a target's neighbourhood labels, the seeds' draws come back as those labels and
nothing is left to check; then the run draws again further from the seeds (SHIPPED.top_up,
pipeline.top_up_specs). This runs the shipped default on every truth-set site (its own material
left out, as the truth bench does) and on the preset, with no DFT, and records per site how many
candidates a check would take before and after the second batch. Resumable: sites already in the
record are kept.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks.common import machine
from benchmarks.truth import commit, set_sites
from dosmatgen_core.candidates.pipeline import Request, run_generation, shipped_guide
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.settings import PRESET_ID, SHIPPED

RESULTS = ROOT / "benchmarks" / "results" / "top-up.json"


def checkable(cands: list[dict], labelled: frozenset) -> int:
    """How many of cands a DFT check would take (certify.dft_eligibility)."""
    return sum(certify.dft_eligibility(c, labelled=labelled) is None for c in cands)


def site_record(run: dict, labelled: frozenset) -> dict:
    first = [c for c in run["candidates"] if not c.get("top_up")]
    return {"candidates": len(run["candidates"]), "top_up": run["summary"].get("top_up"),
            "checkable_first_batch": checkable(first, labelled),
            "checkable": checkable(run["candidates"], labelled),
            "dft_picks": len(certify.pick(run, labelled=labelled)),
            "seconds": run["summary"]["seconds_total"]}


def summarise(per_site: dict) -> dict:
    recs = list(per_site.values())
    n = len(recs)
    topped = [r for r in recs if r["top_up"]]
    return {"sites": n, "topped_up": len(topped),
            "sites_without_a_check_before": sum(r["checkable_first_batch"] == 0 for r in recs),
            "sites_without_a_check_after": sum(r["checkable"] == 0 for r in recs),
            "sites_with_fewer_than_top_before": sum(r["checkable_first_batch"] < SHIPPED.dft_top for r in recs),
            "sites_with_fewer_than_top_after": sum(r["checkable"] < SHIPPED.dft_top for r in recs),
            "mean_seconds": round(sum(r["seconds"] for r in recs) / max(n, 1), 1),
            "mean_seconds_topped_up": round(sum(r["seconds"] for r in topped) / len(topped), 1) if topped else None}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sets", default="a,b", help="truth site sets, comma separated")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    db = open_db(DB_URL)
    labelled = frozenset(r.material_id for r in db.db.select())
    sites = [s for name in args.sets.split(",") for s in set_sites(db, 30, 5, name)]
    model, predictor, guide = load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), shipped_guide("cpu")
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    per_site = old.get("per_site", {})
    for s in sites:
        key = f"{s['material_id']}#{s['site']}"
        if key in per_site:
            continue
        t = time.time()
        # as the app runs it: the shipped defaults, the target's own material never a seed
        req = Request(mode="seeded", targets=[list(map(float, s["target"]))], seed_exclude=[s["material_id"]],
                      baseline=False, title=f"target: {key}")
        run = run_generation(req, model, predictor, guide=guide, db_url=DB_URL, check_novelty=True)
        per_site[key] = site_record(run, labelled)
        print(key, per_site[key], f"{time.time() - t:.0f} s", flush=True)
        out = {"command": " ".join(["python -m benchmarks.top_up", *sys.argv[1:]]), "commit": commit(),
               "machine": machine(), "db_structures": len(labelled),
               "settings": {"strength": SHIPPED.strength, "top_up": SHIPPED.top_up, "dft_top": SHIPPED.dft_top,
                            "n_candidates": SHIPPED.n_candidates, "sets": args.sets},
               "note": "the app's default generation (no DFT) per truth site, its own material left out; "
                       "'checkable': candidates a DFT check would take (valid, new, no copy, <= 8 atoms); "
                       "first batch = before the second batch drawn further from the seeds",
               "summary": summarise(per_site), "per_site": per_site}
        args.out.write_text(json.dumps(out, indent=1))
    return per_site


if __name__ == "__main__":
    main()
