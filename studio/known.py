"""A candidate that is a known, labelled structure already has a DFT answer: the stored label of
the matching site. This finds that site."""
from __future__ import annotations

import numpy as np
from pymatgen.core import Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dosmatgen_core.scoring.evaluate import corresponding_site

N_NEIGHBOURS = 12


def _fingerprint(s: Structure, i: int) -> np.ndarray:
    """Distances to the nearest neighbours of site i (element-blind), in units of the cell's
    length per atom, so a uniformly strained copy still matches."""
    scale = (s.volume / len(s)) ** (1 / 3)
    r = 3.0 * scale
    while True:
        d = sorted(n.nn_distance for n in s.get_neighbors(s[i], r))
        if len(d) >= N_NEIGHBOURS or r > 12 * scale:
            break
        r *= 1.5
    d = (d + [r] * N_NEIGHBOURS)[:N_NEIGHBOURS]
    return np.asarray(d) / scale


def matching_site(candidate: Structure, site: int, known: Structure) -> int | None:
    """The site of `known` (a structure the candidate matches) that plays the role of the
    candidate's `site`: same element; where it has several symmetry-distinct ones, the site laid on
    it when the matcher lays one cell on the other (evaluate.corresponding_site: by elements and
    positions), else the one with the most similar neighbour distances. Distances alone took one of
    YMg3's two Mg sites for the other. None when `known` has no atom of that element."""
    el = candidate[site].specie.symbol
    same = [j for j, s in enumerate(known) if s.specie.symbol == el]
    if not same:
        return None
    try:
        classes = SpacegroupAnalyzer(known, symprec=0.1).get_symmetrized_structure().equivalent_indices
        reps = [c[0] for c in classes if c[0] in same]
    except Exception:
        reps = same
    if len(reps) == 1:
        return reps[0]
    j = corresponding_site(candidate, site, known)
    if j is not None:
        return j
    want = _fingerprint(candidate, site)
    return min(reps, key=lambda j: (float(np.abs(_fingerprint(known, j) - want).sum()), j))
