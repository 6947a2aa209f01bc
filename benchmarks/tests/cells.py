"""Small real inputs the bench tests share: a Gaussian curve on the model grid, a four-site cubic cell."""
import numpy as np
from pymatgen.core import Lattice, Structure

from dosmatgen_core import dos


def curve(centre: float, width: float = 1.0) -> np.ndarray:
    return np.exp(-((dos.GRID - centre) / width) ** 2)


def cubic_cif(species, a=4.0) -> str:
    """Four sites of a cubic cell (fcc positions), in the order given."""
    s = Structure(Lattice.cubic(a), species, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return s.to(fmt="cif")
