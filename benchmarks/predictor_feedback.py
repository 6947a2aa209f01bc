"""`python -m benchmarks.predictor_feedback`: does retraining on the generator's own DFT-checked
candidates make the site-DOS predictor better on the next candidates?

Three predictors score the same held-out candidates (DFT-calculated candidates from `generated`
shards or pending lines that none of them trained on), site by site against DFT:
- before: the shipped predictor;
- control: retrained on the MP labels alone;
- after: retrained the same way (same seed, epochs, architecture) on the MP labels plus the
  earlier generated shards (`--train-shards`).
control against after isolates what the generated labels add; before against control what the
newer MP labels and the retraining add. Pairs are compared per candidate, with a bootstrap
interval over candidates.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from benchmarks.common import machine
from benchmarks.predictor_check import generated_lines, paired
from benchmarks.truth import commit
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.labeller import iter_label_lines
from dosmatgen_core.paths import LABEL_DIR, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring.predictor import element_table, family, load_predictor
from dosmatgen_core.structures import atoms_from_cif

RESULTS = ROOT / "benchmarks" / "results" / "predictor-feedback.json"


def held_out_lines(train_shards: list[Path]) -> list[dict]:
    seen = {d["material_id"] for _, d in iter_label_lines(train_shards)}
    return [d for d in generated_lines() if d["material_id"] not in seen]


def site_errors(pred, lines: list[dict]) -> list[list[float]]:
    """Per candidate, the MAE of each site against its DFT row (sites with no prediction skipped)."""
    out = []
    for d in lines:
        atoms = atoms_from_cif(d["cif"])
        p = pred.predict([(atoms.numbers, atoms.get_scaled_positions(), atoms.cell.array)])[0]
        g = np.asarray(d["site_dos"])
        out.append([dosmod.mae(g[i], p[i]) for i in range(len(atoms)) if np.all(np.isfinite(p[i]))])
    return out


def run(before: Path, control: Path, after: Path, train_shards: list[Path]) -> dict:
    lines = held_out_lines(train_shards)
    table = element_table()
    fam = [[family(int(z), table) for z in atoms_from_cif(d["cif"]).numbers] for d in lines]
    preds = {"before": load_predictor(before), "control": load_predictor(control, trust=True),
             "after": load_predictor(after, trust=True)}
    errs = {k: site_errors(p, lines) for k, p in preds.items()}
    out = {"held_out_candidates": len(lines), "sites": sum(len(e) for e in errs["before"]),
           "train_shards": [p.name for p in train_shards]}
    for k, e in errs.items():
        flat = [x for c in e for x in c]
        out[k] = {"mae": float(np.mean(flat)) if flat else None,
                  "by_family": {f: float(np.mean([x for c, fs in zip(e, fam) for x, ff in zip(c, fs) if ff == f]))
                                for f in sorted({f for fs in fam for f in fs})}}
    out["after_minus_control"] = paired(errs["control"], errs["after"])
    out["control_minus_before"] = paired(errs["before"], errs["control"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.predictor_feedback", description=__doc__.splitlines()[0])
    p.add_argument("--before", type=Path, default=PREDICTOR_PATH)
    p.add_argument("--control", type=Path, required=True, help="retrained on the MP labels alone")
    p.add_argument("--after", type=Path, required=True, help="retrained on the MP labels + --train-shards")
    p.add_argument("--train-shards", type=Path, nargs="+",
                   default=[LABEL_DIR / "generated-0000.jsonl.gz", LABEL_DIR / "generated-0001.jsonl.gz"])
    p.add_argument("--procedure", default="", help="how control and after were trained (kept in the record)")
    args = p.parse_args(argv)
    res = {"command": " ".join(["python -m benchmarks.predictor_feedback", *sys.argv[1:]]), "commit": commit(),
           "machine": machine(), "procedure": args.procedure,
           **run(args.before, args.control, args.after, args.train_shards)}
    RESULTS.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k not in ("machine",)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
