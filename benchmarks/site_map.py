"""`python -m benchmarks.site_map`: is a known candidate's stored DFT curve read off the right site?

A candidate that matches a labelled structure is shown that structure's stored DFT label, at the
site that plays the role of its conditioned site (studio.known.matching_site). Neighbour distances
alone cannot tell apart two sites of one element with the same surroundings (YMg3's two Mg); the
matcher's laying of one cell on the other (evaluate.corresponding_site) can.

For every labelled material of at most 8 atoms with two or more symmetry-distinct sites of one
element, a candidate is made of it as a generator could draw it: its sites shuffled, the cell 2 %
larger and doubled along c. Each of the candidate's sites is mapped back both ways; the truth is the
site it was made from (equal up to symmetry). Nothing is calculated; the cost of a wrong site is
the MAE between the two sites' stored curves.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from benchmarks.common import machine
from benchmarks.truth import commit
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL, ROOT
from dosmatgen_core.structures import to_structure
from studio.known import _fingerprint, matching_site

OUT = ROOT / "benchmarks" / "results" / "site-map.json"


def by_distances(candidate: Structure, site: int, known: Structure) -> int:
    """The rule before elements and positions: the symmetry-distinct site of that element with the
    most similar neighbour distances."""
    el = candidate[site].specie.symbol
    same = [j for j, s in enumerate(known) if s.specie.symbol == el]
    classes = SpacegroupAnalyzer(known, symprec=0.1).get_symmetrized_structure().equivalent_indices
    reps = [c[0] for c in classes if c[0] in same] or same
    want = _fingerprint(candidate, site)
    return min(reps, key=lambda j: (float(np.abs(_fingerprint(known, j) - want).sum()), j))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-atoms", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    db, rng, t0 = open_db(DB_URL), np.random.default_rng(args.seed), time.time()
    rules = {"distances": by_distances, "elements_and_positions": matching_site}
    wrong = {k: {"materials": 0, "sites": 0, "cost_mae": []} for k in rules}
    materials = sites = 0
    examples: dict[str, list] = {k: [] for k in rules}
    for r in db.search():
        ref = db.get(r["material_id"])
        t = to_structure(ref.atoms)
        if len(t) > args.max_atoms:
            continue
        try:
            orbit = SpacegroupAnalyzer(t, 0.1).get_symmetry_dataset().equivalent_atoms
        except Exception:            # no symmetry dataset at this tolerance: nothing to tell apart
            continue
        els = [x.specie.symbol for x in t]
        if not any(len({orbit[k] for k in range(len(t)) if els[k] == e}) > 1 for e in set(els)):
            continue
        materials += 1
        order = [int(k) for k in rng.permutation(len(t))]
        cand = Structure.from_sites([t[k] for k in order])
        cand.scale_lattice(t.volume * 1.02)
        cand.make_supercell([1, 1, 2])             # pymatgen keeps each site's images together
        dos = np.asarray(ref.site_dos, float)
        for name, rule in rules.items():
            missed = 0
            for i in range(len(cand)):
                truth = order[i // 2]
                j = rule(cand, i, t)
                if j is None or orbit[j] != orbit[truth]:
                    missed += 1
                    wrong[name]["cost_mae"].append(dosmod.mae(dos[truth], dos[j]) if j is not None else None)
            wrong[name]["sites"] += missed
            if missed:
                wrong[name]["materials"] += 1
                if len(examples[name]) < 10:
                    examples[name].append(r["material_id"])
        sites += len(cand)
    out = {"what": "known candidates' stored DFT site, found by neighbour distances or by elements and positions",
           "materials": materials, "candidate_sites": sites,
           "rules": {k: {"materials_wrong": v["materials"], "sites_wrong": v["sites"],
                         "median_cost_mae": (float(np.median([c for c in v["cost_mae"] if c is not None]))
                                             if any(c is not None for c in v["cost_mae"]) else None),
                         "examples": examples[k]} for k, v in wrong.items()},
           "seconds": round(time.time() - t0, 1),
           "command": "python -m benchmarks.site_map " + " ".join(argv if argv is not None else sys.argv[1:]),
           "commit": commit(), "machine": machine()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
