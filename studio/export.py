"""A whole run as one zip: structures, DOS tables and plots, DFT results and the run record."""
from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections import OrderedDict

import numpy as np

from dosmatgen_core.candidates import runs as runsmod
from dosmatgen_core.dos import CURVE_UNIT, GRID
from dosmatgen_core.names import formula
from studio.figures import dos_image


SVG_CACHE_SIZE = 512        # a run's cards (≤ ~400 candidates) and some others: ~28 kB each, ~15 MB at most
_svgs: OrderedDict[str, bytes] = OrderedDict()
_svgs_lock = threading.Lock()          # the app's sessions build zips in their own threads


def curves_digest(curves: list[dict], title: str) -> str:
    """A hash of everything a plot draws: each curve's fields, arrays by their bytes."""
    h = hashlib.sha256(title.encode())
    for c in curves:
        for k in sorted(c):
            v = c[k]
            h.update(k.encode())
            try:            # a curve's numbers by their bytes (repr would cut a long array short)
                h.update(np.asarray(v, dtype=float).tobytes() if isinstance(v, (list, tuple, np.ndarray))
                         else repr(v).encode())
            except (TypeError, ValueError):
                h.update(repr(v).encode())
    return h.hexdigest()


def curve_svg(curves: list[dict], title: str) -> bytes:
    """dos_image's SVG, kept by its curves' digest: the zip is built again each time a check
    lands, and redrawing every candidate's plot took ~0.14 s each; only changed ones are redrawn."""
    key = curves_digest(curves, title)
    with _svgs_lock:
        if key in _svgs:
            _svgs.move_to_end(key)
            return _svgs[key]
    svg = dos_image(curves, title)
    with _svgs_lock:
        _svgs[key] = svg
        while len(_svgs) > SVG_CACHE_SIZE:
            _svgs.popitem(last=False)
    return svg


def _dft_csv(result: dict) -> str:
    rows = result["site_dos"]
    head = ["energy_minus_ef_eV"] + [f"dft_site{i}{CURVE_UNIT}" for i in range(len(rows))]
    lines = [",".join(head)]
    for k, e in enumerate(GRID):
        lines.append(",".join([f"{e:.6g}"] + [f"{r[k]:.6g}" for r in rows]))
    return "\n".join(lines) + "\n"


def zip_readme(run: dict) -> str:
    """What each file of the zip holds, and each column of the DOS tables (a walk could not tell
    what the band column meant)."""
    band = ("predicted_band_halfwidth_site<i>: the half-width of the predicted curve's ±1σ band, the "
            "predictor ensemble's spread calibrated on DFT (benchmarks/results/band-calibration.json: "
            "the DFT curve lies within it at about 68 % of the energies with states)"
            if run["settings"].get("spread_calibration") else
            "predicted_sd_site<i>: the predictor ensemble's standard deviation, not calibrated on DFT "
            "(narrower than its error)")
    return "\n".join([
        f"DOSMatGen Studio run {run.get('id')}: {run.get('title') or ''}",
        "",
        "Energies are E - E_F in eV on the fixed grid (-10 to +10 eV, 400 points; column "
        "energy_minus_ef_eV); every DOS is in states/eV, spins summed, and its column name ends in "
        "_states_per_eV. Site <i> is the candidate's own atom order (the CIFs keep it).",
        "",
        "candidates/<rank>_<formula>.cif, .vasp   the candidate as generated (P1), in its own atom order",
        "candidates/<rank>_<formula>_dos.csv      a first line (# ...) naming the run's target, then per "
        "conditioned site:",
        "  target_site<i>: the target curve (empty outside a target's window)",
        "  predicted_site<i>: the site-DOS predictor's curve (a fast proxy, not DFT)",
        f"  {band}",
        "  dft_site<i>: the GPAW DFT curve, once the candidate's check has finished",
        "candidates/<rank>_<formula>_dft_dos.csv  the DFT curve of every site of a checked candidate",
        "candidates/<rank>_<formula>_relaxed.cif  the relaxed cell DFT calculated, in the same atom order",
        "candidates/<rank>_<formula>_dos.svg      the card's plot",
        "run.json   the run: settings, every candidate and its scores",
        "dft.json   each DFT check: status, its curves and its match to the target",
        ""])


def run_zip(run: dict, dft: dict[int, dict] | None = None, curves: dict[int, list[dict]] | None = None) -> bytes:
    """Zip bytes: per candidate a P1 CIF, a POSCAR and its target/predicted DOS CSV (with its DFT
    rows, a DFT DOS CSV of every site, and the relaxed cell's CIF when a check finished), plus
    README.txt (what each file and column holds), run.json and dft.json. curves: rank → the curves of its
    card (results.candidate_curves); each candidate then also gets its plot as an SVG."""
    buf = io.BytesIO()
    targets = run["settings"]["targets"]
    done = {rank: s for rank, s in (dft or {}).items() if s and s.get("status") == "done"}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for c in run["candidates"]:
            stem = f"candidates/{c['rank']:03d}_{formula(c['formula'])}"      # named as its card names it
            z.writestr(f"{stem}.cif", runsmod.cif_file(c["cif"]))
            z.writestr(f"{stem}.vasp", runsmod.to_poscar(runsmod.structure_of(c)))
            res = done[c["rank"]]["result"] if c["rank"] in done else None
            # the card's DOS CSV, its DFT rows beside the target and the prediction once checked
            z.writestr(f"{stem}_dos.csv", runsmod.dos_csv(c, targets, run["settings"].get("window"),
                                                           res["site_dos"] if res else None,
                                                           bool(run["settings"].get("spread_calibration")),
                                                           runsmod.dos_csv_note(run, c)))
            if res:
                z.writestr(f"{stem}_dft_dos.csv", _dft_csv(res))
                if res.get("relaxed") and res.get("cif"):      # the cell DFT calculated, in the candidate's site order
                    z.writestr(f"{stem}_relaxed.cif", runsmod.cif_file(res["cif"]))
            if (curves or {}).get(c["rank"]):
                z.writestr(f"{stem}_dos.svg", curve_svg(curves[c["rank"]], f"candidate #{c['rank']} · {formula(c['formula'])}"))
        z.writestr("README.txt", zip_readme(run))
        z.writestr("run.json", runsmod.run_json(run))
        plain = json.loads(runsmod.dumps({str(k): v for k, v in (dft or {}).items()}))   # numpy → lists
        z.writestr("dft.json", json.dumps(plain, indent=1))
    return buf.getvalue()
