"""`python -m benchmarks.relax_effect`: does a candidate's DFT site DOS survive relaxation?

The truth bench and the app certify a candidate as the generator drew it. A drawn cell is not at
an energy minimum, and a materials scientist reads a "DFT match" as a property of the material,
that is, of the relaxed cell. So: take seeded candidates the truth bench calculated, relax each with
the app's default potential (positions and cell, the stability check's settings; site order is
kept), calculate the relaxed cell with the same GPAW recipe, and compare the conditioned site's
curve before and after, and each against the target. Also: is the predictor closer to DFT on the
relaxed cells, and does it pick better among a site's checked candidates seeing them?

Writes benchmarks/results/relax-effect.json (resumable: relaxed DFT results are cached in
runs/truth/relaxed.jsonl). Every relaxed calculation is also a label.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from benchmarks import truth
from benchmarks.common import machine, read_jsonl
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.labeller import FAST_RECIPE, ShardWriter, iter_label_lines
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL, LABEL_DIR, PREDICTOR_PATH, ROOT
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL
from dosmatgen_core.structures import atoms_from_cif

RESULTS = ROOT / "benchmarks" / "results" / "relax-effect.json"
RELAXED = truth.RELAXED


def checked_candidates(methods=("seeded", "seeded_steered")) -> list[dict]:
    """Truth-bench candidates of these methods with an unrelaxed DFT result, each once: every
    site's first candidate, then every site's second, and so on, so that the first n spread over
    as many targets as they can."""
    per_group = [group for _, group in truth.checked_candidates(methods)]
    return [grp[r] for r in range(max(map(len, per_group), default=0)) for grp in per_group if r < len(grp)]


def summarise(rows: list[dict]) -> dict:
    ok = [r for r in rows if "relaxed_mae" in r]
    if not ok:
        return {"candidates": 0}
    a = {k: np.array([r[k] for r in ok]) for k in ("unrelaxed_mae", "relaxed_mae", "shift_mae", "unrelaxed_cosine",
                                                    "relaxed_cosine", "volume_ratio")}
    return {"candidates": len(ok), "failed": len(rows) - len(ok),
            "target_mae_unrelaxed": float(a["unrelaxed_mae"].mean()), "target_mae_relaxed": float(a["relaxed_mae"].mean()),
            "share_cosine_0.9_unrelaxed": float((a["unrelaxed_cosine"] >= 0.9).mean()),
            "share_cosine_0.9_relaxed": float((a["relaxed_cosine"] >= 0.9).mean()),
            "relaxed_vs_unrelaxed_mae": {"mean": float(a["shift_mae"].mean()), "median": float(np.median(a["shift_mae"])),
                                         "max": float(a["shift_mae"].max())},
            "relaxed_closer_to_target": int((a["relaxed_mae"] < a["unrelaxed_mae"]).sum()),
            "volume_ratio": {"median": float(np.median(a["volume_ratio"])), "min": float(a["volume_ratio"].min()),
                             "max": float(a["volume_ratio"].max())}}


def relaxed_cifs(cache: dict) -> dict[str, str]:
    """The relaxed cell of each drawn candidate the bench relaxed (drawn key → CIF, rows in the
    drawn site order), from its relaxed.jsonl record."""
    return {k: r["cif"] for k, r in cache.items() if "cif" in r}


def _pearson(x: np.ndarray, y: np.ndarray) -> float | None:
    return float(np.corrcoef(x, y)[0, 1]) if len(x) > 2 and x.std() > 0 and y.std() > 0 else None


def predictor_on_relaxed(predictor, cands: list[dict], cache: dict, cifs: dict, targets: dict,
                         trained: set) -> dict:
    """Is the predictor, trained on relaxed Materials Project cells, closer to DFT on relaxed
    candidates than on drawn ones, and does it pick better among a site's checked candidates when
    it sees the relaxed cell? On candidates none of its members trained on."""
    got = []
    for c in cands:
        rec = cache.get(c["key"]) or {}
        if "site_dos" not in rec or c["key"] not in cifs or f"gen:{c['key']}" in trained:
            continue
        drawn, relaxed = atoms_from_cif(c["cif"]), atoms_from_cif(cifs[c["key"]])
        if drawn.get_chemical_symbols() != relaxed.get_chemical_symbols():
            continue
        p_d, p_r = (x[c["site"]] for x in predictor.predict(
            [(a.numbers, a.get_scaled_positions(), a.cell.array) for a in (drawn, relaxed)]))
        t, after = targets[c["target_site"]], np.asarray(rec["site_dos"])[c["site"]]
        got.append({"target": c["target_site"], "err_drawn": dosmod.mae(p_d, c["dft_dos"]),
                    "err_relaxed": dosmod.mae(p_r, after), "pred_drawn": dosmod.mae(t, p_d),
                    "pred_relaxed": dosmod.mae(t, p_r), "dft_relaxed": dosmod.mae(t, after)})
    if not got:
        return {"candidates": 0}
    a = {k: np.array([g[k] for g in got]) for k in got[0] if k != "target"}
    by = {}
    for g in got:
        by.setdefault(g["target"], []).append(g)
    multi = [v for v in by.values() if len(v) > 1]
    pick_d = np.array([min(v, key=lambda g: g["pred_drawn"])["dft_relaxed"] for v in multi])
    pick_r = np.array([min(v, key=lambda g: g["pred_relaxed"])["dft_relaxed"] for v in multi])
    return {"candidates": len(got), "predictor_mae_vs_dft_drawn_cells": float(a["err_drawn"].mean()),
            "predictor_mae_vs_dft_relaxed_cells": float(a["err_relaxed"].mean()),
            "pearson_predicted_vs_dft_target_mae": {
                "drawn_prediction": _pearson(a["pred_drawn"], a["dft_relaxed"]),
                "relaxed_prediction": _pearson(a["pred_relaxed"], a["dft_relaxed"])},
            "top1_of_checked_relaxed_dft_mae": {"sites": len(multi),
                                                "picked_on_drawn": float(pick_d.mean()) if multi else None,
                                                "picked_on_relaxed": float(pick_r.mean()) if multi else None,
                                                "relaxed_pick_better": int((pick_r < pick_d).sum()),
                                                "relaxed_pick_worse": int((pick_r > pick_d).sum())}}


def run(n: int, potential: str = DEFAULT_POTENTIAL, max_minutes: float = 0.0, log=print, predictor=None) -> dict:
    t0 = time.time()
    targets = {f"{s['material_id']}#{s['site']}": s["target"] for s in truth.truth_sites(open_db(DB_URL), 30, 5)}
    cache = {r["key"]: r for r in read_jsonl(RELAXED)}
    # every candidate relaxed before counts; new ones fill up to n, spread over the targets
    every = checked_candidates()
    done = [c for c in every if c["key"] in cache]
    cands = done + [c for c in every if c["key"] not in cache][:max(0, n - len(done))]
    writer = ShardWriter(LABEL_DIR, prefix="generated")
    rows = []
    for k, c in enumerate(cands):
        if max_minutes and time.time() - t0 > 60 * max_minutes and c["key"] not in cache:
            break
        rec = truth.calculate_relaxed(c, cache, writer, potential)
        g = targets[c["target_site"]]
        row = {"candidate": c["key"], "formula": c["formula"], "element": c["element"], "site": c["site"],
               "target": c["target_site"], "method": c["method"], "volume_ratio": rec["volume_ratio"],
               "relax_steps": rec["relax_steps"], "unrelaxed_mae": dosmod.mae(g, c["dft_dos"]),
               "unrelaxed_cosine": dosmod.cosine(g, c["dft_dos"])}
        if "site_dos" in rec:
            after = np.asarray(rec["site_dos"])[c["site"]]
            row.update(relaxed_mae=dosmod.mae(g, after), relaxed_cosine=dosmod.cosine(g, after),
                       shift_mae=dosmod.mae(c["dft_dos"], after))
        else:
            row["failed"] = rec["failed"]
        rows.append(row)
        log(f"{k + 1}/{len(cands)} {c['formula']} {c['element']}{c['site']}: target MAE {row['unrelaxed_mae']:.3f} -> "
            f"{row.get('relaxed_mae', float('nan')):.3f}, moved {row.get('shift_mae', float('nan')):.3f} "
            f"(volume x{rec['volume_ratio']:.2f})")
    writer.seal()
    out = {"command": " ".join(["python -m benchmarks.relax_effect", *sys.argv[1:]]), "commit": truth.commit(),
           "machine": machine(), "potential": potential, "recipe": FAST_RECIPE.name,
           "note": "seeded truth-bench candidates, DFT of the cell as drawn against DFT of the same cell relaxed "
                   "(positions and cell) with the potential; MAE in states/eV on the conditioned site",
           "summary": summarise(rows), "rows": rows}
    if predictor is not None:
        trained = {d["material_id"] for _, d in iter_label_lines(
            [LABEL_DIR / n for n in predictor.card.get("label_shards", []) if (LABEL_DIR / n).exists()])}
        out["predictor_on_relaxed_cells"] = predictor_on_relaxed(predictor, cands, cache, relaxed_cifs(cache), targets, trained)
    RESULTS.write_text(json.dumps(out, indent=1))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.relax_effect", description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=20)
    p.add_argument("--potential", default=DEFAULT_POTENTIAL)
    p.add_argument("--max-minutes", type=float, default=0.0)
    args = p.parse_args(argv)
    out = run(args.candidates, args.potential, args.max_minutes, log=lambda m: print(m, flush=True),
              predictor=load_predictor(PREDICTOR_PATH))
    print(json.dumps({k: out[k] for k in ("summary", "predictor_on_relaxed_cells")}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
