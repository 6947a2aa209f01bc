"""`python -m benchmarks.structure_types`: the labelled materials' structure types, found by laying
the AFLOW library's cells on them (pymatgen's matcher, its first fit: the rule before) or by the closest fit among the prototypes of
their AFLOW label, then of their formula type (prototypes.structure_type, today's rule).

Walk 17 typed "anatase" and got Mo2N, while anatase TiO2 (mp-390) had no type: the library's
anatase cell has its O at z = 0.333, not 0.208, so no anatase lies within the matcher's tolerances.
This counts, over every material of the reference database, how many each rule names and where
they differ. Nothing is calculated.
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import time

from pymatgen.analysis.prototypes.matcher import PrototypeDatabaseMatcher

from benchmarks.common import machine
from benchmarks.truth import commit
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL, ROOT
from dosmatgen_core.scoring import prototypes
from dosmatgen_core.structures import to_structure

OUT = ROOT / "benchmarks" / "results" / "structure-types.json"


def by_matcher(s) -> dict | None:
    """The rule before: the first library prototype of the cell's formula type that pymatgen's
    PrototypeDatabaseMatcher lays on it."""
    lib = prototypes._library()
    rows = lib[lib["anonymous"] == s.composition.anonymized_formula]
    hits = PrototypeDatabaseMatcher(rows).get_prototypes(s) if len(rows) else None
    return prototypes._tags(hits[0]) if hits else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args(argv)
    db, t0 = open_db(DB_URL), time.time()
    named = collections.Counter()
    renamed, gained, lost = collections.Counter(), collections.Counter(), collections.Counter()
    n = 0
    for r in db.search():
        s = to_structure(db.get(r["material_id"]).atoms)
        before, now = by_matcher(s), prototypes.structure_type(s)
        a = prototypes.short_name(before) if before else None
        b = prototypes.short_name(now) if now else None
        n += 1
        named["matcher"] += a is not None
        named["closest_by_label_then_formula_type"] += b is not None
        if a == b:
            continue
        if a and b:
            renamed[f"{a} → {b}"] += 1
        elif b:
            gained[b] += 1
        else:
            lost[a] += 1
    out = {"what": "structure types of the labelled materials: the library matcher's first fit against the closest fit by label, then by formula type",
           "materials": n, "named": dict(named), "renamed": sum(renamed.values()), "gained": sum(gained.values()),
           "lost": sum(lost.values()), "most_renamed": renamed.most_common(12), "most_gained": gained.most_common(12),
           "most_lost": lost.most_common(12), "seconds": round(time.time() - t0, 1),
           "command": "python -m benchmarks.structure_types " + " ".join(argv if argv is not None else sys.argv[1:]),
           "commit": commit(), "machine": machine()}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, ensure_ascii=False)
    print(json.dumps({k: v for k, v in out.items() if k != "machine"}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
