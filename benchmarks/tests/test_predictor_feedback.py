"""The retraining bench compares predictors per candidate: a candidate's sites move together, so
they are resampled as one, and the sign says which predictor is closer to DFT."""
import numpy as np

from benchmarks.predictor_feedback import paired


def test_paired_change_is_per_candidate_and_signed():
    a = [[0.3, 0.3], [0.2], [0.4, 0.4, 0.4]]
    b = [[0.2, 0.2], [0.1], [0.5, 0.5, 0.5]]          # two candidates better, one worse
    r = paired(a, b, n_boot=500)
    assert np.isclose(r["mean_change"], np.mean([-0.1, -0.1, 0.1]))
    assert r["candidates_better"] == 2 and r["candidates"] == 3
    assert r["ci95"][0] <= r["mean_change"] <= r["ci95"][1]


def test_a_candidate_without_predictions_is_left_out():
    r = paired([[0.3], []], [[0.1], [0.2]], n_boot=10)
    assert r["candidates"] == 1 and np.isclose(r["mean_change"], -0.2)
