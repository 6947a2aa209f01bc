"""The relaxed-cell ranking check: each candidate once, and the picks of each ordering scored by DFT."""
import numpy as np

from benchmarks import truth
from benchmarks.relaxed_prediction import checked_candidates, summarise
from benchmarks.tests.cells import cubic_cif


def test_a_check_counts_once_per_site_and_only_with_its_relaxed_dft():
    a, b = cubic_cif(["Ni", "Au", "Au", "Au"]), cubic_cif(["Cu", "Au", "Au", "Au"])
    relaxed = {truth.cif_key(a): {"site_dos": np.full((4, 400), 0.5).tolist(), "cif": a, "volume_ratio": 1.01},
               truth.cif_key(b): {"failed": "GPAW"}}
    generated = [{"key": "t/seeded_steered/mp-1#0", "candidates": [{"cif": a, "site": 0}, {"cif": b, "site": 0}]},
                 {"key": "t/substituted/mp-1#0", "candidates": [{"cif": a, "site": 0}]},
                 {"key": "t/substituted/mp-2#1", "candidates": [{"cif": a, "site": 0}]}]
    got = checked_candidates(generated, relaxed)
    assert [c["site_key"] for c in got] == ["mp-1#0", "mp-2#1"]       # a's twin pick of mp-1#0 counted once
    assert np.allclose(got[0]["dft"], 0.5) and got[0]["volume_ratio"] == 1.01


def test_each_ordering_is_scored_by_the_dft_of_what_it_picks():
    # one site, four checks: the drawn-cell prediction ranks the worst DFT first, the relaxed one the best
    rows = [{"site_key": "s", "error_drawn": 0.2, "error_relaxed": 0.1, "pred_mae_drawn": k, "pred_mae_relaxed": 3 - k,
             "dft_mae": 0.1 * (4 - k), "dft_cosine": 0.95 if k == 3 else 0.5} for k in range(4)]
    out = summarise(rows)
    w = out["within_site"]
    assert w["sites"] == 1 and np.isclose(w["top1_drawn"]["dft_mae"], 0.4) and np.isclose(w["top1_relaxed"]["dft_mae"], 0.1)
    assert w["top1_relaxed"]["share_cosine_0.9"] == 1.0 and w["top1_drawn"]["share_cosine_0.9"] == 0.0
    assert np.isclose(w["top3_drawn"]["dft_mae"], 0.2) and np.isclose(w["oracle_best_check"], 0.1)
    assert np.isclose(out["error_against_dft"]["relaxed_minus_drawn"]["mean_change"], -0.1)
    # a site with too few checks to choose among is not ranked
    assert summarise(rows[:3])["within_site"]["sites"] == 0
