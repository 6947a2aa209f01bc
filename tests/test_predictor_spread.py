"""The predictor's uncertainty: the ensemble members' spread, per site and energy."""
import numpy as np
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
