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
import json
import sys
from pathlib import Path

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


def generated_lines(exclude_shards=()) -> list[dict]:
    """Every DFT-calculated candidate (generated shards, pending lines included), less those in
    exclude_shards and any structure those shards hold (a predictor trained on them)."""
    skip = set(exclude_shards)
    shards = list(iter_label_lines(sorted(LABEL_DIR.glob("generated-*.jsonl.gz"))))
    trained = {d["material_id"] for p, d in shards if p.name in skip}
    lines = [d for p, d in shards if "failed" not in d and p.name not in skip]
    pending = LABEL_DIR / "generated.pending.jsonl"
    if pending.exists():
        for raw in pending.read_text().splitlines():
            try:
                d = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if "failed" not in d:
                lines.append(d)
    return [d for d in lines if d["material_id"] not in trained]


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


def paired(a: list[list[float]], b: list[list[float]], n_boot: int = 2000, seed: int = 0) -> dict:
    """Mean site MAE of b minus a, candidates resampled as wholes (their sites are not independent)."""
    da = np.array([np.mean(x) - np.mean(y) for x, y in zip(b, a) if x and y])
    rng = np.random.default_rng(seed)
    boots = [rng.choice(da, len(da)).mean() for _ in range(n_boot)] if len(da) else [np.nan]
    return {"mean_change": float(da.mean()) if len(da) else None, "ci95": [float(np.percentile(boots, 2.5)),
            float(np.percentile(boots, 97.5))], "candidates_better": int((da < 0).sum()), "candidates": int(len(da))}


def site_rows(pred, lines: list[dict], means: dict, table) -> list[list[dict]]:
    """Per candidate, one row per predicted site: its error against the DFT row, the baseline's,
    the ensemble's spread and the highest peak (predicted and DFT)."""
    out = []
    for d in lines:
        atoms = atoms_from_cif(d["cif"])
        crystal = (atoms.numbers, atoms.get_scaled_positions(), atoms.cell.array)
        (p,), (sd,) = pred.predict_with_spread([crystal])
        rows = []
        for i, (z, g) in enumerate(zip(atoms.numbers, np.asarray(d["site_dos"]))):
            if not np.all(np.isfinite(p[i])):
                continue
            rows.append({"z": int(z), "family": family(int(z), table), "mae": dosmod.mae(g, p[i]),
                         "baseline_mae": dosmod.mae(g, means[int(z)]) if int(z) in means else None,
                         "spread": float(sd[i].mean()), "peak_dft": float(g.max()), "peak_pred": float(p[i].max())})
        out.append(rows)
    return out


def summary(rows: list[dict]) -> dict:
    """MAE overall and per element family beside the per-element-mean baseline, the d-band
    peak-height error on d metals, and how well the spread flags the error."""
    def stats(rs):
        b = [r["baseline_mae"] for r in rs if r["baseline_mae"] is not None]
        return {"sites": len(rs), "mae": float(np.mean([r["mae"] for r in rs])),
                "per_element_mean_baseline_mae": float(np.mean(b)) if b else None}
    if not rows:
        return {"sites": 0}
    out = {"all": stats(rows),
           "by_family": {f: stats([r for r in rows if r["family"] == f]) for f in sorted({r["family"] for r in rows})}}
    d_rows = [r for r in rows if r["family"] == "d-block"]
    if d_rows:
        out["d_block_peak_height"] = {
            "mean_abs_error": float(np.mean([abs(r["peak_pred"] - r["peak_dft"]) for r in d_rows])),
            "mean_relative": float(np.mean([r["peak_pred"] / r["peak_dft"] for r in d_rows if r["peak_dft"] > 0]))}
    errs, spreads = np.array([r["mae"] for r in rows]), np.array([r["spread"] for r in rows])
    out["spread_vs_error"] = {"mean_spread": float(spreads.mean()),
                              "pearson_r": float(np.corrcoef(spreads, errs)[0, 1]) if len(rows) > 2 else None}
    return out


def run(paths=(PREDICTOR_PATH,)) -> dict:
    """Each predictor on the same candidates: those none of them trained on (their cards name the
    shards). With two, the second's change per candidate, with a bootstrap interval."""
    preds = {Path(p): load_predictor(p, trust=Path(p).resolve() != PREDICTOR_PATH.resolve()) for p in paths}
    trained = sorted(set().union(*(pr.card.get("label_shards", []) for pr in preds.values())))
    lines = generated_lines(trained)
    table, means = element_table(), element_means()
    per = {p: site_rows(pr, lines, means, table) for p, pr in preds.items()}
    out = {"goal_mae": GOAL_MAE, "candidates": len(lines),
           "excluded_shards": [s for s in trained if s.startswith("generated")], "predictors": {}}
    for p, pr in preds.items():
        name = f"{p.name}@{str(pr.card.get('sha256', ''))[:16]}"
        out["predictors"][name] = {"shipped": p.resolve() == PREDICTOR_PATH.resolve(), **summary([r for c in per[p] for r in c])}
    if len(preds) == 2:
        a, b = ([[r["mae"] for r in c] for c in per[p]] for p in preds)
        out["second_minus_first"] = paired(a, b)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.predictor_check", description=__doc__.splitlines()[0])
    ap.add_argument("--predictor", type=Path, action="append",
                    help="repeat to compare (default: the shipped one); the first is the reference")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    res = {"command": " ".join(["python -m benchmarks.predictor_check", *sys.argv[1:]]), "commit": commit(),
           "machine": machine(), **run(args.predictor or [PREDICTOR_PATH])}
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
