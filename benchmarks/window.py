"""`python -m benchmarks.window`: a target known on part of the grid only, matched on its window
against matched as zeros outside it (exact DFT numbers: every hit is a label, no sampling).

A measured curve often covers part of −10…10 eV: photoemission gives the occupied states, a code's
DOS file may stop short. The held-out truth sites (sets a, b and c) are cut to such a window; the
closest known site (its own material left out) is then searched two ways:
- `window`: MAE on the window alone (what the app and the CLI do now);
- `zeros`: the cut curve read as zero outside its window, MAE over the whole grid (before);
- `whole`: the uncut curve searched, as the lookup does when the whole curve is known (a ceiling).
Each pick is scored against the site's *whole* DFT curve (what the user's material really has),
on the window and outside it. The completion the generator is given (the window's best site
outside the window, dos.complete) is scored outside the window too.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from benchmarks import truth
from benchmarks.common import machine
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL, ROOT
from dosmatgen_core.scoring.search import site_index

RESULTS = ROOT / "benchmarks" / "results" / "window.json"
WINDOWS = {"occupied": (-10.0, 0.5), "valence -6..2 eV": (-6.0, 2.0)}


def outside_mae(a, b, window) -> float:
    """MAE on the grid points outside window."""
    known = dosmod.window_mask(window)
    return float(np.abs(np.asarray(a, float)[~known] - np.asarray(b, float)[~known]).mean())


def site_rows(index, sites: list[dict], window) -> list[dict]:
    """Per target: the two picks, each scored against the whole DFT curve on and off the window."""
    sl = dosmod.window_slice(window)
    out = []
    for s in sites:
        full = s["target"]
        cut = np.zeros(dosmod.NPTS)
        cut[sl] = full[sl]
        row = {"site": f"{s['material_id']}#{s['site']}", "element": s["element"]}
        for name, w, curve in (("window", window, cut), ("zeros", None, cut), ("whole", None, full)):
            h = index.search(curve, top=1, exclude={s["material_id"]}, per_structure=True, window=w)[0]
            y = index.curves[index.row_of[h.material_id, h.site]]
            row[name] = {"material_id": h.material_id, "site": h.site, "element": h.element,
                         "mae_on_window": dosmod.mae(full, y, window), "mae_outside": outside_mae(full, y, window),
                         "mae_whole": dosmod.mae(full, y), "cosine_whole": dosmod.cosine(full, y),
                         "same_element": h.element == s["element"]}
            if name == "window":
                row["completed_mae_outside"] = outside_mae(full, dosmod.complete(cut, window, y), window)
        out.append(row)
    return out


def summary(rows: list[dict]) -> dict:
    def mean(k, name):
        return float(np.mean([r[name][k] for r in rows]))
    diff = np.array([r["window"]["mae_whole"] - r["zeros"]["mae_whole"] for r in rows])
    boot = np.random.default_rng(0).choice(diff, (2000, len(diff))).mean(1)
    return {"sites": len(rows),
            **{name: {k: mean(k, name) for k in ("mae_on_window", "mae_outside", "mae_whole", "cosine_whole")}
               | {"share_same_element": float(np.mean([r[name]["same_element"] for r in rows]))}
               for name in ("window", "zeros", "whole")},
            "window_minus_zeros_mae_whole": float(diff.mean()),
            "window_minus_zeros_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))],
            "window_better_on": int((diff < -1e-9).sum()), "same_pick_on": int((np.abs(diff) <= 1e-9).sum()),
            "completed_mae_outside": float(np.mean([r["completed_mae_outside"] for r in rows]))}


def run(site_sets=truth.SITE_SETS, n_sites: int = 30, max_atoms: int = 5, db_url: str = DB_URL) -> dict:
    db = open_db(str(db_url))
    index = site_index(db_url)
    sites = [s for k in site_sets for s in truth.set_sites(db, n_sites, max_atoms, k)]
    res = {"command": "python -m benchmarks.window " + " ".join(sys.argv[1:]), "commit": truth.commit(),
           "machine": machine(), "db": str(db_url), "site_sets": list(site_sets),
           "note": "MAE in states/eV against each held-out site's whole DFT curve; 'window' searches on the "
                   "window alone, 'zeros' reads the cut curve as 0 outside it; the target's own material is "
                   "left out of both searches",
           "windows": {}}
    for name, w in WINDOWS.items():
        rows = site_rows(index, sites, w)
        res["windows"][name] = {"window_ev": list(w), **summary(rows), "per_site": rows}
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.window", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    res = run()
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "per_site"} for k, v in res["windows"].items()},
                     indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
