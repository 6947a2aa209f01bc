"""The predictor's uncertainty: the ensemble members' spread, per site and energy."""
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen_core.paths import PREDICTOR_PATH
from dosmatgen_core.scoring.predictor import Ensemble, LoadedPredictor, load_predictor


def test_spread_is_the_members_standard_deviation():
    pred = load_predictor(PREDICTOR_PATH)
    assert isinstance(pred.model, Ensemble) and len(pred.model.members) > 1
    s = Structure(Lattice.cubic(3.9), ["Ni", "Au", "Au", "Au"], [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [0, .5, .5]])
    crystal = [(np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix)]
    spread = pred.spread(crystal)[0]
    members = [LoadedPredictor(m, pred.card).predict(crystal)[0] for m in pred.model.members]
    assert spread.shape == (4, 400) and np.all(spread >= 0) and spread.max() > 0
    assert np.allclose(spread, np.std(members, axis=0), atol=1e-5)
    assert np.allclose(pred.predict(crystal)[0], np.mean(members, axis=0), atol=1e-4)
    mean, sd = pred.predict_with_spread(crystal)        # one pass gives both
    assert np.allclose(mean[0], pred.predict(crystal)[0]) and np.allclose(sd[0], spread)
    single = LoadedPredictor(pred.model.members[0], pred.card)
    assert not single.spread(crystal)[0].any()


def test_a_skewed_cell_gets_the_same_neighbours_as_its_reduced_twin(monkeypatch):
    """A rough draw (edges of 55 Å, an angle of 179.6°) took ASE's neighbour list 200 s per call and
    stalled a run for minutes: ASE bins a needle-like cell in ~10^6 bins. The cell is reduced first,
    so ASE sees a compact one, and the same crystal keeps the same edges."""
    import ase.neighborlist
    from dosmatgen_core.scoring.predictor import neighbour_graph
    nacl = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    skew = np.array([[1, 0, 0], [9, 1, 0], [-7, 11, 1]])        # unimodular: the same lattice, a needle-like basis
    lat = skew @ nacl.lattice.matrix
    frac = nacl.cart_coords @ np.linalg.inv(lat)
    seen, real = [], ase.neighborlist.neighbor_list
    monkeypatch.setattr(ase.neighborlist, "neighbor_list",
                        lambda what, atoms, cutoff: seen.append(atoms.cell.lengths().max()) or real(what, atoms, cutoff))
    got = neighbour_graph(nacl.atomic_numbers, frac, lat)
    want = neighbour_graph(nacl.atomic_numbers, nacl.frac_coords, nacl.lattice.matrix)
    assert np.linalg.norm(lat, axis=1).max() > 70 and seen[0] == pytest.approx(5.64)   # given 79 Å, binned 5.64

    def edges(g):
        return sorted(zip(g[0].tolist(), g[1].tolist(), np.round(g[2], 4).tolist()))
    assert edges(got) == edges(want) and len(want[2]) > 0


def test_the_band_is_calibrated_as_its_card_says():
    """The raw spread of three members held the DFT curve at 19 % of the energies with states
    (benchmarks.band_calibration), not the 68 % a ±1σ band promises: the card carries the
    calibration the bench fitted, and the band stored with a candidate is scale·spread + floor."""
    import json
    import warnings

    from dosmatgen_core.paths import ROOT
    from dosmatgen_core.scoring.predictor import spread_calibration
    pred = load_predictor(PREDICTOR_PATH)
    record = json.loads((ROOT / "benchmarks" / "results" / "band-calibration.json").read_text())
    k, b = pred.spread_calibration
    # the record refits on every candidate checked to date: the card's fit stays close to it
    assert abs(k - record["spread_scale"]) < 0.05 and abs(b - record["spread_floor"]) < 0.01
    assert record["predictor"].endswith(pred.card["sha256"][:16])          # fitted for this very predictor
    sd = np.array([[0.0, 0.02, 0.1]])
    assert np.allclose(pred.calibrated(sd), k * sd + b)
    # a card without one keeps the raw spread; one edited out of range is refused, and said
    assert spread_calibration({}) is None and LoadedPredictor(pred.model, {}).calibrated(sd) is sd
    for bad in ({"spread_scale": 0.2}, {"spread_scale": "5"}, {"spread_scale": 5.0, "spread_floor": -1},
                {"spread_scale": float("nan")}, {"spread_scale": True}):
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert spread_calibration(bad) is None, bad
        assert "uncalibrated" in str(said[0].message)
