"""benchmarks.strain's reading of checks by their closest contact, on made-up rows."""
from __future__ import annotations

import pytest

from benchmarks import strain


def _row(site, ratio, pred, dft, cos=0.95):
    return {"site_key": site, "ratio": ratio, "pred_mae": pred, "dft_mae": dft, "dft_cosine": cos, "error": abs(pred - dft)}


def test_pressed_cells_go_last_within_a_site_and_bands_count_each_check_once():
    rows = [_row("a#0", 0.5, 0.10, 0.60, 0.3), _row("a#0", 0.9, 0.20, 0.35), _row("a#0", 0.85, 0.25, 0.30),
            _row("a#0", 0.95, 0.30, 0.12), _row("a#0", 0.9, 0.35, 0.40)]
    assert [r["pred_mae"] for r in strain.ranked(rows, 0.7)] == [0.20, 0.25, 0.30, 0.35, 0.10]
    assert [r["pred_mae"] for r in strain.ranked(rows, None)] == [0.10, 0.20, 0.25, 0.30, 0.35]
    out = strain.within_site(rows, 0.7)
    assert out["sites"] == 1 and out["sites_with_a_strained_check"] == 1
    assert out["predicted"]["dft_mae_best_of_3"] == pytest.approx(0.30)      # 0.60, 0.35, 0.30
    assert out["strained_last"]["dft_mae_best_of_3"] == pytest.approx(0.12)  # 0.35, 0.30, 0.12
    assert out["strained_last_minus_predicted"]["mean_change"] == pytest.approx(-0.18)
    bands = strain.band_rows(rows)
    assert sum(b["checks"] for b in bands) == len(rows) and bands[0]["ratio"] == "0-0.6"
    assert bands[-1]["ratio"] == ">=0.8" and bands[-1]["checks"] == 4
