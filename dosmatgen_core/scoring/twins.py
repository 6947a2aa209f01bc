"""Two candidates of one run that relax into one crystal: the second needs no GPAW run of its own.

Uniqueness in a run is judged on the drawn cells, so two draws can both be "unique" and relax into
the same crystal: a walk's RbLiCl2 read P1 and Cmcm as drawn, and the two checks gave DFT MAE 0.141
and 0.138; 12 of the 1051 relaxed checks in the labels were such a twin of an earlier check towards
the same target (at the tolerances below). Once a relaxed cell matches a checked one, that check's rows are its rows, each
site taking the row of the twin's site it sits on.
"""
from __future__ import annotations

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure


# Far tighter than novelty's (evaluate.matcher: 20 % on lengths, volumes scaled away): rows are
# reused only for one crystal, both relaxed by the same potential to the same minimum, and never
# across volumes (CuAu at 3.0 and 3.6 Å matched at novelty's tolerances). Over the labels' 1051
# relaxed checks these find 12 twins, whose own GPAW rows differ by at most 0.029 states/eV
# (mean |Δ|; at 2 % and 0.05: 20 twins, up to 0.074)
LTOL, STOL, ANGLE_TOL, VOLUME_TOL = 0.01, 0.02, 0.5, 0.01


def _matcher() -> StructureMatcher:
    # cells compared as they are (no primitive reduction, no scaling), so that a site map exists
    return StructureMatcher(ltol=LTOL, stol=STOL, angle_tol=ANGLE_TOL, primitive_cell=False, scale=False)


def site_map(cell: Structure, twin: Structure) -> list[int] | None:
    """For each site i of `cell`, the site of `twin` it sits on once the two are overlaid, or None
    when they are not one crystal (within LTOL, STOL, ANGLE_TOL and VOLUME_TOL) in cells of the same
    size and composition (a twin in a supercell is calculated again: its rows would need a map
    across cells)."""
    if len(cell) != len(twin) or cell.composition != twin.composition:
        return None
    if abs(cell.volume / twin.volume - 1) > VOLUME_TOL:
        return None
    sm = _matcher()
    if not sm.fit(cell, twin):
        return None
    m = sm.get_mapping(twin, cell)       # twin.sites[m[i]] lies on cell.sites[i]
    if m is None or sorted(int(j) for j in m) != list(range(len(cell))):
        return None
    if any(twin[int(j)].species != cell[i].species for i, j in enumerate(m)):
        return None
    return [int(j) for j in m]


def find_twin(cell: Structure, checked: list[tuple[int, Structure]]) -> tuple[int, list[int]] | None:
    """(rank, site map) of the first of `checked` (rank, relaxed cell) that `cell` is a twin of."""
    for rank, other in checked:
        if (m := site_map(cell, other)) is not None:
            return rank, m
    return None


def rows_of_twin(site_dos, mapping: list[int]) -> np.ndarray:
    """The twin's DFT rows in the cell's own site order (row i: the twin's row at mapping[i])."""
    return np.asarray(site_dos)[np.asarray(mapping, dtype=int)]
