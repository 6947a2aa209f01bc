"""`python -m benchmarks.relaxed_prediction`: would the predictor rank better on the relaxed cell?

The app ranks candidates by the predictor's curve on the cell as drawn, then relaxes the top
ones with SevenNet and calculates the relaxed cell with GPAW. Relaxation moves the conditioned
site's DFT curve (relax-effect.json), so the predictor may judge the wrong geometry. This reads
every relaxed GPAW check of the truth bench (runs/truth/relaxed.jsonl: the relaxed CIF and its
DFT rows, keyed by the drawn candidate) and predicts the conditioned site twice with the shipped
predictor, on the drawn cell and on the relaxed one:

- the predictor's error against the relaxed cell's DFT curve, both ways, paired by candidate;
- how well each predicted target MAE tracks the DFT target MAE (Pearson r);
- within each target site, among its checked candidates: the DFT MAE and cosine of the top 1 and
  the best of the top 3 picked by each ordering, paired by site.

Candidates whose structures the predictor trained on (its card's generated shards) are left out.
Nothing is calculated with DFT: this costs the predictor's time and, for the app, a relaxation
of every ranked candidate, which is why it is measured before it is built.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import truth
from benchmarks.common import machine, read_jsonl
from benchmarks.predictor_check import paired
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.labeller import iter_label_lines
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL, LABEL_DIR, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.structures import atoms_from_cif

OUT = ROOT / "benchmarks" / "results" / "relaxed-prediction.json"
BAR = 0.9


def trained_cifs(pred) -> set[str]:
    """The CIFs of the generated candidates the predictor trained on (its card's shards)."""
    shards = [LABEL_DIR / s for s in pred.card.get("label_shards", []) if s.startswith("generated")]
    return {d["cif"] for _, d in iter_label_lines([p for p in shards if p.exists()]) if "failed" not in d}


def checked_candidates(generated: list[dict], relaxed: dict[str, dict]) -> list[dict]:
    """Every drawn candidate with a relaxed GPAW check, once (a candidate picked by two methods of
    one site is one check): its site key, conditioned site, drawn and relaxed CIFs, DFT row."""
    out, seen = [], set()
    for rec in generated:
        sk = rec["key"].split("/")[-1]
        for c in rec["candidates"]:
            key = truth.cif_key(c["cif"])
            calc = relaxed.get(key)
            if calc is None or "site_dos" not in calc or "cif" not in calc or (sk, key) in seen:
                continue
            seen.add((sk, key))
            out.append({"site_key": sk, "key": key, "site": int(c["site"]), "drawn": c["cif"], "relaxed": calc["cif"],
                        "dft": np.asarray(calc["site_dos"], float)[int(c["site"])],
                        "volume_ratio": calc.get("volume_ratio")})
    return out


def predict_site(pred, cifs: list[str], sites: list[int]) -> list[np.ndarray]:
    crystals = []
    for cif in cifs:
        a = atoms_from_cif(cif)
        crystals.append((a.numbers, a.get_scaled_positions(), a.cell.array))
    out = []
    for k in range(0, len(crystals), 64):
        out += pred.predict(crystals[k:k + 64])
    return [p[i] for p, i in zip(out, sites)]


def picks(rows: list[dict], by: str, top: int) -> list[dict]:
    return sorted(rows, key=lambda r: r[by])[:top]


def unseen_checks(pred) -> tuple[list[dict], dict[str, np.ndarray], set[str]]:
    """The truth bench's relaxed checks that pred never trained on (checked_candidates), their
    targets' DFT curves by site key, and the trained-on CIFs left out."""
    skip = trained_cifs(pred)
    relaxed = {r["key"]: r for r in read_jsonl(truth.RELAXED)}
    cands = [c for c in checked_candidates(read_jsonl(truth.CACHE / "generated.jsonl"), relaxed)
             if c["drawn"] not in skip and c["relaxed"] not in skip]
    db = open_db(DB_URL)
    targets = {}
    for sk in sorted({c["site_key"] for c in cands}):
        mid, i = sk.rsplit("#", 1)
        targets[sk] = np.asarray(db.get(mid).site_dos[int(i)], float)
    return cands, targets, skip


def run(predictor=PREDICTOR_PATH) -> dict:
    pred = load_predictor(predictor, trust=predictor != PREDICTOR_PATH)
    cands, targets, skip = unseen_checks(pred)
    sites = [c["site"] for c in cands]
    p_drawn = predict_site(pred, [c["drawn"] for c in cands], sites)
    p_relaxed = predict_site(pred, [c["relaxed"] for c in cands], sites)
    rows = []
    for c, a, b in zip(cands, p_drawn, p_relaxed):
        g = targets[c["site_key"]]
        rows.append({"site_key": c["site_key"], "error_drawn": dosmod.mae(c["dft"], a), "error_relaxed": dosmod.mae(c["dft"], b),
                     "pred_mae_drawn": dosmod.mae(g, a), "pred_mae_relaxed": dosmod.mae(g, b),
                     "dft_mae": dosmod.mae(g, c["dft"]), "dft_cosine": dosmod.cosine(g, c["dft"]),
                     "volume_ratio": c["volume_ratio"]})
    return {"predictor": f"{predictor.name}@{str(pred.card.get('sha256', ''))[:16]}",
            "left_out_trained_on": len(skip), **summarise(rows)}


def summarise(rows: list[dict], min_checks: int = 4) -> dict:
    """rows: one per checked candidate (site_key, error_*, pred_mae_*, dft_mae, dft_cosine; * drawn
    and relaxed). Sites with at least min_checks checks are ranked within."""
    dft = np.array([r["dft_mae"] for r in rows])
    out = {"candidates": len(rows), "sites": len({r["site_key"] for r in rows}), "bar": BAR}
    out["error_against_dft"] = {
        "drawn_cell": float(np.mean([r["error_drawn"] for r in rows])),
        "relaxed_cell": float(np.mean([r["error_relaxed"] for r in rows])),
        "relaxed_minus_drawn": paired([[r["error_drawn"]] for r in rows], [[r["error_relaxed"]] for r in rows])}
    out["predicted_target_mae_vs_dft"] = {
        way: {"pearson_r": float(np.corrcoef([r[f"pred_mae_{way}"] for r in rows], dft)[0, 1]),
              "mean_predicted": float(np.mean([r[f"pred_mae_{way}"] for r in rows])), "mean_dft": float(dft.mean())}
        for way in ("drawn", "relaxed")}
    by_site: dict[str, list[dict]] = {}
    for r in rows:
        by_site.setdefault(r["site_key"], []).append(r)
    ranked = {k: v for k, v in by_site.items() if len(v) >= min_checks}     # enough for a top 3 to choose
    if not ranked:
        out["within_site"] = {"sites": 0}
        return out
    out["within_site"] = {"sites": len(ranked), "checks_per_site": float(np.mean([len(v) for v in ranked.values()]))}
    for top in (1, 3):
        for way in ("drawn", "relaxed"):
            best = [min(picks(v, f"pred_mae_{way}", top), key=lambda r: r["dft_mae"]) for v in ranked.values()]
            cos = [max(r["dft_cosine"] for r in picks(v, f"pred_mae_{way}", top)) for v in ranked.values()]
            out["within_site"][f"top{top}_{way}"] = {"dft_mae": float(np.mean([r["dft_mae"] for r in best])),
                                                     f"share_cosine_{BAR}": float(np.mean(np.array(cos) >= BAR))}
        a = [[min(picks(v, "pred_mae_drawn", top), key=lambda r: r["dft_mae"])["dft_mae"]] for v in ranked.values()]
        b = [[min(picks(v, "pred_mae_relaxed", top), key=lambda r: r["dft_mae"])["dft_mae"]] for v in ranked.values()]
        out["within_site"][f"top{top}_relaxed_minus_drawn"] = paired(a, b)
    out["within_site"]["oracle_best_check"] = float(np.mean([min(r["dft_mae"] for r in v) for v in ranked.values()]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.relaxed_prediction", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=type(OUT), default=OUT)
    args = ap.parse_args(argv)
    res = {"command": " ".join(["python -m benchmarks.relaxed_prediction", *sys.argv[1:]]), "commit": truth.commit(),
           "machine": machine(), **run()}
    args.out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
