"""A VASP run's site-projected DOS as targets: vasprun.xml → one curve per atom on the model grid.

Most DOS a materials scientist has at hand come from VASP. With LORBIT = 10, 11 or 12 its
vasprun.xml holds each atom's projected DOS; pymatgen's Vasprun reads it, keeping the POSCAR's
atom order (atom i of the file is row i here, as in the labels). Each curve is taken relative to
the run's Fermi level, spins summed (states/eV), and regridded as an uploaded table is. VASP's own
broadening (ISMEAR, SIGMA, NEDOS) stays in the curve; the labels are Gaussian-broadened by 0.2 eV,
so a sharper curve may want the page's extra smearing.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np
from pymatgen.core import Structure

from dosmatgen_core import dos as dosmod

MAX_VASPRUN_BYTES = 100 * 2**20      # the app's upload limit (.streamlit/config.toml): a small cell's run is 1-50 MB


@dataclass(frozen=True)
class VaspSiteDos:
    structure: Structure         # the run's final structure, atoms in the file's order
    site_dos: np.ndarray         # (atoms, NPTS): E − E_F on dosmod.GRID, spins summed, states/eV
    energy: np.ndarray           # the file's own energies, E − E_F (eV), for dosmod.grid_note
    efermi: float                # eV, as VASP wrote it

    def label(self, site: int) -> str:
        return f"atom {site} ({self.structure[site].specie.symbol})"


def is_vasprun(data: bytes) -> bool:
    """Whether an upload is a vasprun.xml (its root element) rather than a text table."""
    head = data[:4096].lstrip()
    return (head.startswith(b"<?xml") and b"<modeling" in head) or head.startswith(b"<modeling")


def read_vasprun(data: bytes) -> VaspSiteDos:
    """The site DOS of a vasprun.xml. Raises ValueError ('what — what to do') for a file that is
    too large, not a readable vasprun.xml, without a DOS, or with the total DOS only."""
    if len(data) > MAX_VASPRUN_BYTES:
        raise ValueError(f"the file is {len(data) / 2**20:.0f} MB; at most {MAX_VASPRUN_BYTES // 2**20} MB is read — "
                         "upload the vasprun.xml of a smaller run, or the atom's DOS as a CSV")
    if not is_vasprun(data):
        raise ValueError("the file is not a vasprun.xml — upload VASP's vasprun.xml, or a CSV of E − E_F and DOS")
    # Vasprun reads a path; the upload is bytes
    fd, path = tempfile.mkstemp(suffix=".xml")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        from pymatgen.io.vasp import Vasprun
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")     # POTCAR and convergence notes: not about the DOS
            try:
                vr = Vasprun(path, parse_potcar_file=False, parse_eigen=False, parse_projected_eigen=False)
            except Exception as exc:        # lxml and pymatgen raise many kinds for a cut or edited file
                raise ValueError(f"the vasprun.xml could not be read ({type(exc).__name__}: {str(exc)[:120]}) — "
                                 "upload the file VASP wrote, whole (a run cut short leaves it unfinished)") from None
    finally:
        os.unlink(path)
    cdos = vr.complete_dos if vr.tdos is not None else None
    if cdos is None:
        raise ValueError("the run holds no DOS — upload the vasprun.xml of a DOS calculation")
    structure = vr.final_structure
    if not cdos.pdos:
        raise ValueError("the run holds the total DOS only, no DOS per atom — rerun VASP with LORBIT = 11 "
                         "(or upload one atom's DOS as a CSV of E − E_F and DOS)")
    efermi = float(cdos.efermi)
    energy = np.asarray(cdos.energies, float) - efermi
    rows = []
    for i, site in enumerate(structure):
        g = np.asarray(cdos.get_site_dos(site).get_densities(), float)       # spins summed
        if not np.all(np.isfinite(g)):
            raise ValueError(f"atom {i} ({site.specie.symbol}) has NaN or infinite DOS values — "
                             "upload the file VASP wrote")
        rows.append(g)
    order = np.argsort(energy, kind="stable")
    e = energy[order]
    if e[0] > 0 or e[-1] < 0:
        raise ValueError(f"the DOS runs from {e[0]:g} to {e[-1]:g} eV around E_F and does not reach it — "
                         "upload a run whose DOS window includes the Fermi level")
    # the tetrahedron method (ISMEAR = -5) dips a little below zero between peaks: a DOS is not negative
    grid = np.stack([dosmod.regrid(e, np.clip(g[order], 0.0, None)) for g in rows])
    return VaspSiteDos(structure=structure, site_dos=grid, energy=e, efermi=efermi)
