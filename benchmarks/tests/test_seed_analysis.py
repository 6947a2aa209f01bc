"""The seed analysis compares groups within sites: a hard site with only one group's candidates
must not make that group look worse."""
from benchmarks.seed_analysis import within_sites


def test_groups_are_compared_on_sites_that_have_both():
    rows = [{"site": "easy", "g": True, "mae": 0.10}, {"site": "easy", "g": False, "mae": 0.12},
            {"site": "hard", "g": True, "mae": 0.50}, {"site": "hard", "g": False, "mae": 0.54},
            {"site": "hardest", "g": True, "mae": 0.90}]          # only one group: left out
    r = within_sites(rows, "g")
    assert r["sites"] == 2 and r["sites_true_lower"] == 2
    assert abs(r["mean_true"] - 0.30) < 1e-12 and abs(r["mean_false"] - 0.33) < 1e-12


def test_no_site_with_both_groups_says_so():
    assert within_sites([{"site": "a", "g": True, "mae": 0.1}], "g") == {"sites": 0}
