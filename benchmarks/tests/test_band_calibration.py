"""The band calibration: its fit recovers a known band, and the shipped calibration holds the DFT
curve about as often as ±1σ promises on candidates the predictor never trained on."""
import numpy as np

from benchmarks import band_calibration as bc
from benchmarks.predictor_check import generated_lines
from dosmatgen_core.paths import PREDICTOR_PATH
from dosmatgen_core.scoring.predictor import load_predictor


def test_the_fit_recovers_a_band_of_scale_and_floor():
    """Errors drawn with σ = 2·spread + 0.05: a factor alone leaves the narrowest bands far too
    narrow; the fit finds the floor and holds 68 % in every quartile of the spread."""
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.0, 0.2, 200_000)
    err = np.abs(rng.normal(0.0, 2.0 * sd + 0.05))
    k, floor = bc.fit_affine(err, sd)
    assert abs(k - 2.0) < 0.15 and abs(floor - 0.05) < 0.011
    assert all(abs(c - bc.ONE_SIGMA) < 0.02 for c in bc.quartile_coverage(err, sd, k, floor))
    alone = bc.fit_scale(err, sd)
    assert bc.quartile_coverage(err, sd, alone, 0.0)[0] < 0.5         # the narrowest bands miss
    assert bc.in_fit_half("gen:abc") == bc.in_fit_half("gen:abc")        # a fixed split


def test_the_shipped_band_holds_the_dft_curve_as_one_sigma_promises():
    """Forty DFT-checked candidates the shipped predictor never trained on, from the test half:
    the raw spread holds their DFT curves at a fraction of the energies with states; the calibrated
    band near 68 %."""
    pred = load_predictor(PREDICTOR_PATH)
    lines = [d for d in generated_lines(pred.card.get("label_shards", [])) if not bc.in_fit_half(d["material_id"])]
    pts = bc.point_errors(pred, lines[:40])
    occ = pts["occupied"]
    e, s = pts["err"][occ], pts["sd"][occ]
    k, floor = pred.spread_calibration
    assert occ.sum() > 10_000
    assert bc.coverage(e, s, 1.0) < 0.35
    assert 0.55 < bc.coverage(e, s, k, floor) < 0.82


def test_the_drawn_cell_band_is_measured_per_cell_and_per_half_of_the_targets():
    """drawn_cell_summary: coverage around each cell's prediction, over energies with states only,
    and on each half given by `first_half` (drawn_cell_points sets it by target, not by candidate id)."""
    n = 1000
    err = np.r_[np.full(n // 2, 0.05), np.full(n // 2, 0.5)]            # inside, then outside a 0.1 band
    pts = {"err_drawn": err, "sd_drawn": np.zeros(n), "err_relaxed": np.zeros(n), "sd_relaxed": np.zeros(n),
           "occupied": np.r_[np.ones(n - 100, bool), np.zeros(100, bool)],
           "first_half": np.r_[np.ones(n // 2, bool), np.zeros(n // 2, bool)]}
    out = bc.drawn_cell_summary(pts, 1.0, 0.1, 7)
    assert out["checks"] == 7 and out["points_occupied"] == n - 100
    assert out["all"]["drawn"]["one_sigma"] == 500 / 900 and out["all"]["relaxed"]["one_sigma"] == 1.0
    assert out["first_half_of_targets"]["drawn"]["one_sigma"] == 1.0
    assert out["second_half_of_targets"]["drawn"]["one_sigma"] == 0.0
    assert out["all"]["drawn"]["two_sigma"] == 500 / 900          # 0.5 > 2·0.1
