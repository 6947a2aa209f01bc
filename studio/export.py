"""A whole run as one zip: structures, DOS tables and plots, DFT results and the run record."""
from __future__ import annotations

import io
import json
import zipfile

from dosmatgen_core.candidates import runs as runsmod
from dosmatgen_core.dos import CURVE_UNIT, GRID
from studio.figures import dos_image


def _dft_csv(result: dict) -> str:
    rows = result["site_dos"]
    head = ["energy_minus_ef_eV"] + [f"dft_site{i}{CURVE_UNIT}" for i in range(len(rows))]
    lines = [",".join(head)]
    for k, e in enumerate(GRID):
        lines.append(",".join([f"{e:.6g}"] + [f"{r[k]:.6g}" for r in rows]))
    return "\n".join(lines) + "\n"


def run_zip(run: dict, dft: dict[int, dict] | None = None, curves: dict[int, list[dict]] | None = None) -> bytes:
    """Zip bytes: per candidate a P1 CIF, a POSCAR and its target/predicted DOS CSV (with its DFT
    rows, a DFT DOS CSV of every site, and the relaxed cell's CIF when a check finished), plus
    run.json and dft.json. curves: rank → the curves of its
    card (results.candidate_curves); each candidate then also gets its plot as an SVG."""
    buf = io.BytesIO()
    targets = run["settings"]["targets"]
    done = {rank: s for rank, s in (dft or {}).items() if s and s.get("status") == "done"}
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for c in run["candidates"]:
            stem = f"candidates/{c['rank']:03d}_{c['formula']}"
            z.writestr(f"{stem}.cif", runsmod.cif_file(c["cif"]))
            z.writestr(f"{stem}.vasp", runsmod.to_poscar(runsmod.structure_of(c)))
            res = done[c["rank"]]["result"] if c["rank"] in done else None
            # the card's DOS CSV, its DFT rows beside the target and the prediction once checked
            z.writestr(f"{stem}_dos.csv", runsmod.dos_csv(c, targets, run["settings"].get("window"),
                                                           res["site_dos"] if res else None))
            if res:
                z.writestr(f"{stem}_dft_dos.csv", _dft_csv(res))
                if res.get("relaxed") and res.get("cif"):      # the cell DFT calculated, in the candidate's site order
                    z.writestr(f"{stem}_relaxed.cif", runsmod.cif_file(res["cif"]))
            if (curves or {}).get(c["rank"]):
                z.writestr(f"{stem}_dos.svg", dos_image(curves[c["rank"]], f"candidate #{c['rank']} · {c['formula']}"))
        z.writestr("run.json", runsmod.run_json(run))
        plain = json.loads(runsmod.dumps({str(k): v for k, v in (dft or {}).items()}))   # numpy → lists
        z.writestr("dft.json", json.dumps(plain, indent=1))
    return buf.getvalue()
