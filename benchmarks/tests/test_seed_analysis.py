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


def test_the_oracle_takes_each_sites_best_checked_novel_candidate(monkeypatch):
    """Known candidates (novel False) and unchecked ones do not count; the lookup is compared on
    the same sites."""
    import numpy as np
    from benchmarks import seed_analysis, truth
    t = np.ones(400)
    groups = [({}, [{"target_site": "a", "novel": True, "dft_dos": t * 1.1},      # MAE 0.1
                    {"target_site": "a", "novel": True, "dft_dos": t * 1.5},
                    {"target_site": "a", "novel": False, "dft_dos": t}]),          # known: left out
              ({}, [{"target_site": "b", "novel": True, "dft_dos": t * 2.0}])]     # MAE 1.0
    asked = []
    monkeypatch.setattr(truth, "checked_candidates", lambda methods, generated, dft: asked.append(methods) or groups)
    look = {"a": {"candidates": [{"dft_mae": 0.2, "dft_cosine": 0.95}]},
            "b": {"candidates": [{"dft_mae": 0.5, "dft_cosine": 0.8}]}}
    r = seed_analysis.oracle_best({"a": {"target": t}, "b": {"target": t}}, [], {}, look)
    assert r["sites"] == 2 and r["sites_beating_lookup"] == 1
    assert abs(r["dft_mae_best_checked"] - 0.55) < 1e-9 and abs(r["lookup_dft_mae"] - 0.35) < 1e-9
    assert r["checked_per_site"] == {"median": 1.5, "min": 1, "max": 2} and r["lookup_share_cosine_0.9"] == 0.5
    assert {"seeded_steered", "substituted", "substituted_far"} <= set(asked[0])   # every kind of candidate counts


def test_a_candidate_equal_to_its_seed_is_corrected_exactly():
    """The Δ-correction on the shipped predictor and a real label: a 'candidate' that is its seed
    gets the seed's DFT curve back (MAE 0), while the raw prediction has its own error; a
    candidate the predictor trained on is left out."""
    from benchmarks.seed_analysis import seed_correction
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL, PREDICTOR_PATH
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.settings import PRESET_ID
    from dosmatgen_core.structures import atoms_to_cif
    db = open_db(DB_URL)
    seed = db.get(PRESET_ID)
    c = {"key": "k", "cif": atoms_to_cif(seed.atoms), "site": 0, "dft_dos": seed.site_dos[0],
         "seed": {"material_id": PRESET_ID, "site": 0}}
    r = seed_correction(load_predictor(PREDICTOR_PATH), db, [({}, [c])], trained=set())
    assert r["candidates"] == 1 and r["predictor_mae_seed_corrected"] < 1e-5 < r["predictor_mae_raw"]
    assert seed_correction(load_predictor(PREDICTOR_PATH), db, [({}, [c])], trained={"gen:k"}) == {"candidates": 0}


def test_moves_from_seed_are_per_method_and_measured_against_the_seeds_own_curve():
    import numpy as np
    from benchmarks.seed_analysis import moves_from_seed, seed_curves
    from dosmatgen_core.scoring.search import SiteIndex
    t = np.ones(400)
    index = SiteIndex.from_rows([("mp-s", "NaCl", ["Na", "Cl"], np.stack([t * 0.5, t * 1.2]))])
    curves = seed_curves(index)                                  # the seed's row 1 is the matched site
    assert set(curves) == {("mp-s", 0), ("mp-s", 1)}
    seed = {"material_id": "mp-s", "site": 1, "mae": 0.2, "cosine": 0.99}     # its MAE to the target: |1.2 - 1|
    groups = [({}, [{"method": "near", "target_site": "a", "seed": seed, "dft_dos": t * 1.5},
                    {"method": "far", "target_site": "a", "seed": seed, "dft_dos": t * 1.1},
                    {"method": "far", "target_site": "z", "seed": seed, "dft_dos": t}])]   # not a target: left out
    r = moves_from_seed({"a": {"target": t}}, groups, curves)
    assert set(r) == {"near", "far"} and r["far"]["candidates"] == 1
    assert abs(r["near"]["move_from_seed_mean"] - 0.3) < 1e-6 and abs(r["near"]["excess_over_seed_mean"] - 0.3) < 1e-9
    assert abs(r["far"]["move_from_seed_mean"] - 0.1) < 1e-6 and r["far"]["share_better_than_seed"] == 1.0
    # a flat curve has the target's shape: cosine 1, a gain of 0.01 on the seed's 0.99, under 0.02
    assert abs(r["near"]["cosine_gain_mean"] - 0.01) < 1e-6 and r["near"]["share_cosine_gain_0.02"] == 0.0
