"""The refinement bench's parts: the first round's picks and their DFT scores come from the truth
bench's cache, the parent keeps its relaxed cell's site order, its swaps leave the matched site
alone, and the summary counts a target as rescued only when a child crosses the bar."""
import numpy as np

from benchmarks import refine, truth
from benchmarks.tests.cells import cubic_cif as _cif, curve as _curve
from dosmatgen_core import dos
from dosmatgen_core.candidates.seeding import substituted_variants
from dosmatgen_core.structures import atoms_from_cif

GRID = dos.GRID



def test_the_first_rounds_picks_are_the_app_defaults_and_scored_on_their_own_site():
    target = _curve(-1.0)
    tag, sk = "t", "mp-1#0"
    parts = {p: {"key": f"{tag}/{p}/{sk}", "seconds": 1.0, "drawn": 8, "valid": 8, "novel": 8,
                 "candidates": [{"cif": f"{p}-{k}", "site": 1, "predicted_mae": 0.1 * k + 0.01 * j}
                                for k in (1, 2, 3)]}
             for j, p in enumerate(truth.MIXED[truth.APP_DEFAULT])}
    generated = {r["key"]: r for r in parts.values()}
    picks = refine.app_picks(generated, tag, sk)
    assert len(picks) == truth.DEPTH.get(truth.APP_DEFAULT, truth.TOP)
    assert refine.app_picks(generated, tag, "mp-2#0") is None                     # not drawn yet
    rows = np.zeros((4, len(GRID)))
    rows[1] = target                                   # the conditioned site (1) matches, site 0 not
    relaxed = {truth.cif_key(c["cif"]): {"key": truth.cif_key(c["cif"]), "site_dos": rows.tolist(), "cif": "x"}
               for c in picks[:-1]}
    assert refine.checked(picks, relaxed, target) is None                        # one still unchecked
    relaxed[truth.cif_key(picks[-1]["cif"])] = {"key": truth.cif_key(picks[-1]["cif"]), "failed": "SCF"}
    got = refine.checked(picks, relaxed, target)
    assert len(got) == len(picks) - 1                                            # a failure has no score
    assert all(c["dft_cosine"] > 0.999 and c["dft_mae"] < 1e-9 for c in got)


def test_the_parent_is_its_relaxed_cell_in_its_own_order_and_its_swaps_keep_the_matched_site():
    cif = _cif(["Au", "Ni", "Au", "Au"])              # the matched Ni is site 1, not first
    parent = {"key": "k", "site": 1, "relaxed_cif": cif, "dft_mae": 0.1, "dft_cosine": 0.88, "cif": cif}
    seed = refine.parent_seed(parent)
    assert seed.crystal.numbers.tolist() == atoms_from_cif(cif).numbers.tolist()
    assert (seed.hit.site, seed.hit.element, seed.hit.material_id) == (1, "Ni", "gen:k")
    variants = substituted_variants(seed, {"Au", "Ag", "Ni", "Pd"})
    assert variants and all(c.numbers[1] == 28 for c, _ in variants)          # Ni stays; Au → Ag
    assert {v["by"] for _, v in variants} == {"Ag"}


def test_a_target_counts_as_rescued_only_when_a_child_crosses_the_bar():
    sites = [{"material_id": "mp-1", "site": 0}, {"material_id": "mp-2", "site": 0}, {"material_id": "mp-3", "site": 0}]
    before = {"mp-1#0": [{"dft_cosine": 0.88, "dft_mae": 0.10}],
              "mp-2#0": [{"dft_cosine": 0.95, "dft_mae": 0.20}],
              "mp-3#0": [{"dft_cosine": 0.80, "dft_mae": 0.30}]}
    after = {"mp-1#0": [{"dft_cosine": 0.91, "dft_mae": 0.12}],
             "mp-3#0": [{"dft_cosine": 0.85, "dft_mae": 0.25}]}
    lookups = {k: {"candidates": [{"dft_mae": 0.15}]} for k in before}
    s = refine.summarise(sites, before, after, lookups)
    assert s["share_cosine_0.9_before"] == 1 / 3 and s["share_cosine_0.9_after"] == 2 / 3
    assert s["rescued"] == ["mp-1#0"] and s["children_better_than_parent"] == 2
    # best of both rounds: mp-1 keeps its parent's 0.10, mp-3 takes its child's 0.25
    assert np.isclose(s["dft_mae_best_after"], (0.10 + 0.20 + 0.25) / 3)
    assert np.isclose(s["dft_mae_best_before"], 0.2) and s["sites_below_bar"] == 2


def test_a_later_round_from_the_same_parent_skips_the_children_already_checked(monkeypatch):
    """Swaps of one parent are the same every round: a second round takes the next ones."""
    cif = _cif(["Au", "Ni", "Au", "Au"])
    parent = {"key": "k", "site": 1, "relaxed_cif": cif, "dft_mae": 0.1, "dft_cosine": 0.88, "cif": cif}

    def fake_generate(method, site, res, seed, n_draw=8, seeds=None, top=truth.TOP):
        assert seeds[0].hit.material_id == "gen:k" and top > refine.CHECKS       # grown from the parent alone
        return {"seconds": 1.0, "drawn": 4, "valid": 4, "novel": 4,
                "candidates": [{"cif": f"{method}-{k}", "predicted_mae": 0.1 * k} for k in range(top)]}
    monkeypatch.setattr(truth, "generate", fake_generate)
    first = refine.children({}, parent, {}, seed=0)
    done = {truth.cif_key(c["cif"]) for c in first["candidates"]}
    second = refine.children({}, parent, {}, seed=1, checked_keys=frozenset(done))
    assert len(first["candidates"]) == len(second["candidates"]) == refine.CHECKS
    assert not done & {truth.cif_key(c["cif"]) for c in second["candidates"]}
