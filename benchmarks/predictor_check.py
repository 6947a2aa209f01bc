"""`python -m benchmarks.predictor_check`: the site-DOS predictor against DFT on generated
candidates (the structures it is asked to judge), not on labelled MP crystals.

Every site of every candidate calculated by the truth bench or the app's DFT check (the
`generated` label shards, pending lines included) is predicted and compared with its DFT row:
MAE per element family, the d-band peak-height error on d metals, the ensemble's spread beside
the error it should flag, and the per-element-mean baseline (each element's mean DFT curve over
the MP labels), which a useful predictor must beat.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys

import numpy as np

from benchmarks.common import machine
from benchmarks.truth import commit
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.labeller import iter_label_lines
from dosmatgen_core.paths import LABEL_DIR, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring.predictor import element_table, family, load_predictor
from dosmatgen_core.structures import atoms_from_cif

RESULTS = ROOT / "benchmarks" / "results" / "predictor-vs-dft.json"
GOAL_MAE = 0.10


def generated_lines() -> list[dict]:
    lines = [d for _, d in iter_label_lines(sorted(LABEL_DIR.glob("generated-*.jsonl.gz"))) if "failed" not in d]
    pending = LABEL_DIR / "generated.pending.jsonl"
    if pending.exists():
        for raw in pending.read_text().splitlines():
            try:
                d = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if "failed" not in d:
                lines.append(d)
    return lines


def element_means() -> dict[int, np.ndarray]:
    """Each element's mean DFT site curve over the MP labels (the baseline)."""
    sums, counts = {}, {}
    for _, d in iter_label_lines([LABEL_DIR]):
        if "failed" in d or d["material_id"].startswith("gen:"):
            continue
        for z, g in zip(atoms_from_cif(d["cif"]).numbers, np.asarray(d["site_dos"])):
            sums[int(z)] = sums.get(int(z), 0) + g
            counts[int(z)] = counts.get(int(z), 0) + 1
    return {z: sums[z] / counts[z] for z in sums}


def run() -> dict:
    pred = load_predictor(PREDICTOR_PATH)
    table = element_table()
    means = element_means()
    rows = []
    for d in generated_lines():
        atoms = atoms_from_cif(d["cif"])
        crystal = (atoms.numbers, atoms.get_scaled_positions(), atoms.cell.array)
        p, sd = pred.predict([crystal])[0], pred.spread([crystal])[0]
        for i, (z, g) in enumerate(zip(atoms.numbers, np.asarray(d["site_dos"]))):
            if not np.all(np.isfinite(p[i])):
                continue
            rows.append({"z": int(z), "family": family(int(z), table), "mae": dosmod.mae(g, p[i]),
                         "baseline_mae": dosmod.mae(g, means[int(z)]) if int(z) in means else None,
                         "spread": float(sd[i].mean()), "peak_dft": float(g.max()), "peak_pred": float(p[i].max())})
    out = {"candidates": len(generated_lines()), "sites": len(rows), "goal_mae": GOAL_MAE}
    if not rows:
        return out

    def stats(rs):
        b = [r["baseline_mae"] for r in rs if r["baseline_mae"] is not None]
        return {"sites": len(rs), "mae": float(np.mean([r["mae"] for r in rs])),
                "per_element_mean_baseline_mae": float(np.mean(b)) if b else None}
    out["all"] = stats(rows)
    out["by_family"] = {f: stats([r for r in rows if r["family"] == f]) for f in sorted({r["family"] for r in rows})}
    d_rows = [r for r in rows if r["family"] == "d-block"]
    if d_rows:
        out["d_block_peak_height"] = {
            "mean_abs_error": float(np.mean([abs(r["peak_pred"] - r["peak_dft"]) for r in d_rows])),
            "mean_relative": float(np.mean([r["peak_pred"] / r["peak_dft"] for r in d_rows if r["peak_dft"] > 0]))}
    errs, spreads = np.array([r["mae"] for r in rows]), np.array([r["spread"] for r in rows])
    out["spread_vs_error"] = {"mean_spread": float(spreads.mean()),
                              "pearson_r": float(np.corrcoef(spreads, errs)[0, 1]) if len(rows) > 2 else None}
    return out


def main(argv=None) -> int:
    argparse.ArgumentParser(prog="python -m benchmarks.predictor_check", description=__doc__.splitlines()[0]).parse_args(argv)
    res = {"command": "python -m benchmarks.predictor_check", "commit": commit(), "machine": machine(),
           "predictor": str(PREDICTOR_PATH.name), **run()}
    RESULTS.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
