"""`python -m benchmarks.seeding`: the template strength of seeded generation, chosen by measurement.

On tuning sites (held-out sites the truth bench does not use), seeded candidates at each strength
are scored by the predictor (their conditioned site against the target) and checked for novelty
(StructureMatcher against the MP tables and the labels). Too weak a strength returns the seeds
themselves (not novel); too strong forgets them. The predictor's numbers here only rank strengths:
the truth bench checks the chosen one with DFT.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks.common import machine
from benchmarks.generation import heldout_sites, spread_sites
from benchmarks.truth import MAX_DFT_ATOMS, commit, label_index, truth_sites
from dosmatgen_core.candidates.seeding import find_seeds, seeded_specs
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH, ROOT
from dosmatgen_core.sampling import sampler
from dosmatgen_core.scoring.evaluate import evaluate_candidates
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.structures import Crystal, atoms_from_cif, to_structure

RESULTS = ROOT / "benchmarks" / "results" / "seeding-strength.json"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.seeding", description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=6)
    p.add_argument("--n", type=int, default=8, help="candidates per site and strength")
    p.add_argument("--strengths", default="0.3,0.5,0.7,0.9")
    args = p.parse_args(argv)
    db = open_db(DB_URL)
    used = {(s["material_id"], s["site"]) for s in truth_sites(db, 30, 5)}
    pool = [s for s in heldout_sites(db, max_sites=10**6) if s[1] <= 5 and (s[0], s[2]) not in used]
    sites = spread_sites(pool, args.sites)
    model, pred = load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH)
    index, cifs = label_index()
    out = {}
    for strength in [float(x) for x in args.strengths.split(",")]:
        maes, novel, valid, t0 = [], [], [], time.perf_counter()
        for k, (mid, _, i, g, _) in enumerate(sites):
            seeds = find_seeds(g, DB_URL, k=SHIPPED.n_seeds, exclude={mid}, max_atoms=MAX_DFT_ATOMS, index=index,
                               crystal_of=lambda m: Crystal.from_structure(to_structure(atoms_from_cif(cifs[m]))))
            specs = seeded_specs(np.asarray(g), seeds, args.n, strength)
            gen = sampler.sample(model, specs, steps=SHIPPED.steps, guidance=SHIPPED.guidance, seed=k, device="cpu", redraws=2)
            structs = [x.crystal.to_structure() for x in gen]
            evs = evaluate_candidates(structs, [{int(next(iter(sp.tag["site_to_target"]))): np.asarray(g)} for sp in specs],
                                      pred, db_url=DB_URL)
            for ev in evs:
                valid.append(bool(ev["structurally_valid"]))
                novel.append(bool(ev.get("novel")))
                if ev["structurally_valid"] and ev.get("novel") and np.isfinite(ev.get("dos_mae", np.nan)):
                    maes.append(ev["dos_mae"])
        out[str(strength)] = {"predicted_mae_of_novel_valid": float(np.mean(maes)) if maes else None,
                              "share_valid": float(np.mean(valid)), "share_novel": float(np.mean(novel)),
                              "novel_valid": len(maes), "seconds": round(time.perf_counter() - t0, 1)}
        print(strength, out[str(strength)], flush=True)
    res = {"command": "python -m benchmarks.seeding " + " ".join(argv or sys.argv[1:]), "commit": commit(),
           "machine": machine(), "sites": [f"{s[0]}#{s[2]}" for s in sites], "candidates_per_site": args.n,
           "strengths": out, "shipped_strength": SHIPPED.strength,
           "note": "predicted numbers rank strengths only; truth.json is the DFT check of the shipped one"}
    RESULTS.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
