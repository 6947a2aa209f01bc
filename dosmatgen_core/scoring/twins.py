"""Two candidates of one run that relax into one crystal: the second needs no GPAW run of its own.

Uniqueness in a run is judged on the drawn cells, so two draws can both be "unique" and relax into
the same crystal: a walk's RbLiCl2 read P1 and Cmcm as drawn, and the two checks gave DFT MAE 0.141
and 0.138; 22 of the 1051 relaxed checks in the labels were such a twin of an earlier check towards
the same target. Once a relaxed cell matches a checked one, that check's rows are its rows, each
site taking the row of the twin's site it sits on.
"""
from __future__ import annotations

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure


def _matcher() -> StructureMatcher:
    # novelty's tolerances (evaluate.matcher); cells compared as they are, so that a site map exists
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5, primitive_cell=False)


def site_map(cell: Structure, twin: Structure) -> list[int] | None:
    """For each site i of `cell`, the site of `twin` it sits on once the two are overlaid, or None
    when they are not one crystal in cells of the same size and composition (a twin in a supercell
    is calculated again: its rows would need a map across cells)."""
    if len(cell) != len(twin) or cell.composition != twin.composition:
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
