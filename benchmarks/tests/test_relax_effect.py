"""The predictor-on-relaxed-cells check: errors against each cell's own DFT, and the pick."""
import numpy as np
from pymatgen.core import Lattice, Structure

from benchmarks.relax_effect import predictor_on_relaxed
from dosmatgen_core.structures import to_atoms, atoms_to_cif


class ByVolume:
    """A stand-in predictor whose curve is 1 for the drawn (larger) cell and 2 for the relaxed one:
    the check must pair each prediction with its own cell's DFT row."""

    def predict(self, cells):
        return [np.full((len(n), 400), 1.0 if abs(np.linalg.det(lat)) > 40 else 2.0) for n, _, lat in cells]


def _cif(a):
    return atoms_to_cif(to_atoms(Structure(Lattice.cubic(a), ["Cu", "Au"], [[0, 0, 0], [.5, .5, .5]])))


def test_errors_pair_each_prediction_with_its_own_cells_dft_and_the_pick_uses_the_relaxed_dft():
    target = np.full(400, 2.0)
    cands = [{"key": k, "cif": _cif(3.6), "site": 0, "target_site": "t#0", "dft_dos": np.full(400, 1.5)}
             for k in ("a", "b")]
    cache = {"a": {"site_dos": [np.full(400, 2.0).tolist()] * 2}, "b": {"site_dos": [np.full(400, 3.0).tolist()] * 2}}
    cifs = {"a": _cif(3.3), "b": _cif(3.3)}
    out = predictor_on_relaxed(ByVolume(), cands, cache, cifs, {"t#0": target}, trained={"gen:b"})
    assert out["candidates"] == 1                                     # b trained the predictor: left out
    assert np.isclose(out["predictor_mae_vs_dft_drawn_cells"], 0.5)   # 1 against 1.5
    assert np.isclose(out["predictor_mae_vs_dft_relaxed_cells"], 0.0)  # 2 against 2
    both = predictor_on_relaxed(ByVolume(), cands, cache, cifs, {"t#0": target}, trained=set())
    assert both["top1_of_checked_relaxed_dft_mae"]["sites"] == 1
    # equal predictions: the first candidate (a) is picked, whose relaxed DFT is the target itself
    assert both["top1_of_checked_relaxed_dft_mae"]["picked_on_relaxed"] == 0.0
