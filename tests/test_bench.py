"""The generation benchmark's held-out scoring and its DFT check, on the shipped model, predictor
and reference database."""
import json

import numpy as np
import pytest
import torch

from dosmatgen_core import bench, data
from dosmatgen_core import dos as dosmod

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resources():
    return bench._resources()


def test_heldout_sites_are_validation_sites_one_per_element(resources):
    _, _, db, _ = resources
    sites = bench.heldout_sites(db)
    assert 0 < len(sites) <= 16
    for mid, nat, i, g, z in sites:
        assert data.is_validation(mid) and nat <= 20
        assert db.get(mid).atoms.numbers[i] == z and g.shape == (dosmod.NPTS,)
    per_structure = {}
    for mid, _, _, _, z in sites:
        per_structure.setdefault(mid, []).append(z)
    assert all(len(zs) == len(set(zs)) for zs in per_structure.values())


def test_heldout_scores_report_the_predictor_floor(resources):
    loaded, predictor, db, _ = resources
    sites = bench.heldout_sites(db)[:2]
    res = bench.heldout_scores(loaded, predictor, db, sites, m=2, steps=20, guidance=1.0, seed=0)
    assert res["n_sites"] == 2 and res["candidates_per_site"] == 2
    # the oracle is the reference crystal itself, scored like a candidate
    mid, _, i, g, _ = sites[0]
    a = db.get(mid).atoms
    p = predictor.predict([(a.numbers, a.get_scaled_positions(), np.asarray(a.cell))])[0][i]
    assert res["per_site"][0]["oracle_mae"] == pytest.approx(dosmod.mae(g, p))
    c, u, o = res["conditional_mae"], res["unconditional_mae"], res["oracle_mae"]
    assert res["ratio"] == pytest.approx(c / u)
    if u > o:
        assert res["share_of_reachable_gain"] == pytest.approx((u - c) / (u - o))
    vs = res["vs_predicted_reference"]
    assert vs["ratio"] == pytest.approx(vs["conditional_mae"] / vs["unconditional_mae"])
    assert all(0 <= s["share_same_element_conditional"] <= 1 for s in res["per_site"])


@pytest.mark.slow
def test_dft_check_runs_gpaw_on_candidates_and_resumes_from_its_cache(tmp_path, monkeypatch):
    cache = tmp_path / "dft.jsonl"
    res = bench.bench_dft(n_sites=1, m=1, steps=20, max_atoms=2, cache=cache, log=lambda m: None)
    assert len(res["sites"]) == 1 and res["sites"][0]["n_atoms"] <= 2
    rows = [json.loads(x) for x in cache.read_text().splitlines()]
    assert len(rows) == 2 and {r["kind"] for r in rows} == {"conditional", "unconditional"}
    for r in rows:
        assert "failed" in r or r["dft_mae"] > 0
    # a second run takes every calculation from the cache: no DFT at all
    import dosmatgen_core.labelling as labelling
    monkeypatch.setattr(labelling, "label_isolated", lambda *a, **k: pytest.fail("recomputed a cached calculation"))
    again = bench.bench_dft(n_sites=1, m=1, steps=20, max_atoms=2, cache=cache, log=lambda m: None)
    assert again["conditional"] == res["conditional"] and again["unconditional"] == res["unconditional"]


def test_spread_sites_takes_one_site_per_structure_first():
    g = np.zeros(dosmod.NPTS)
    sites = [("a", 2, 0, g, 1), ("a", 2, 1, g, 2), ("b", 3, 0, g, 3), ("b", 3, 1, g, 4), ("c", 1, 0, g, 5)]
    assert [(s[0], s[2]) for s in bench.spread_sites(sites, 3)] == [("a", 0), ("b", 1), ("c", 0)]
    assert [(s[0], s[2]) for s in bench.spread_sites(sites, 4)] == [("a", 0), ("b", 1), ("c", 0), ("a", 1)]
    assert bench.spread_sites([], 3) == []


def test_tuning_sites_never_overlap_the_bench_sites(resources):
    _, _, db, _ = resources
    bench_keys = {(s[0], s[2]) for s in bench.heldout_sites(db)}
    tune = bench.tuning_sites(db, 24)
    assert tune and not bench_keys & {(s[0], s[2]) for s in tune}
    assert all(data.is_validation(s[0]) for s in tune)


def test_generate_timing_only_returns_the_wall_time_alone():
    res = bench.bench_generate(n=2, steps=5, timing_only=True)
    assert res["wall_seconds_masked_4to7"]["candidates"] == 2 and res["wall_seconds_masked_4to7"]["seconds"] > 0
    assert "heldout_sites" not in res and "au3ni_ni_site" not in res


def test_bench_models_scores_each_checkpoint_on_the_chosen_sites(monkeypatch, resources):
    """Two checkpoints on two tuning sites: each gets its own scores, and the sites are the tuning
    ones, not the bench's (monkeypatched to a small count so it runs in seconds)."""
    monkeypatch.setattr(bench, "_resources", lambda: resources)
    _, _, db, _ = resources
    two = bench.tuning_sites(db, 2)
    monkeypatch.setattr(bench, "tuning_sites", lambda db_, n: two)
    res = bench.bench_models(["assets/denoiser.pt", "assets/denoiser.pt"], n=10, steps=10, on="tuning")
    assert res["sites"] == "tuning" and res["n_sites"] == 2
    (name, r), = res["models"].items()                      # the same file twice: one entry
    assert name == "assets/denoiser.pt" and r["ratio"] == pytest.approx(r["conditional_mae"] / r["unconditional_mae"])
    with pytest.raises(ValueError, match="bench.*tuning"):
        bench.bench_models(["assets/denoiser.pt"], on="train")
