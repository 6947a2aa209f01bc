"""The window bench on real held-out sites: each search minimises what it should, and the numbers
it writes are those of the picks it names."""
import numpy as np
import pytest

from benchmarks import truth, window
from dosmatgen_core import dos
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL
from dosmatgen_core.scoring.search import site_index


def test_the_window_pick_is_closest_on_the_window_and_scored_against_the_whole_curve():
    db, index = open_db(DB_URL), site_index(DB_URL)
    sites = truth.set_sites(db, 30, 5, "c")[:4]
    w = window.WINDOWS["occupied"]
    rows = window.site_rows(index, sites, w)
    for s, r in zip(sites, rows):
        assert r["window"]["mae_on_window"] <= r["zeros"]["mae_on_window"] + 1e-9
        for name in ("window", "zeros"):
            y = db.get(r[name]["material_id"]).site_dos[r[name]["site"]]
            assert r[name]["mae_whole"] == pytest.approx(dos.mae(s["target"], y), abs=1e-5)
            assert r[name]["material_id"] != s["material_id"]
            assert r[name]["mae_outside"] == pytest.approx(window.outside_mae(s["target"], y, w), abs=1e-5)
    out = window.summary(rows)
    assert out["sites"] == 4 and out["window_better_on"] + out["same_pick_on"] <= 4
    assert out["window_minus_zeros_mae_whole"] == pytest.approx(
        np.mean([r["window"]["mae_whole"] - r["zeros"]["mae_whole"] for r in rows]))
