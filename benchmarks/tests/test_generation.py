"""The generation benchmark's held-out scoring and its DFT check, on the shipped model, predictor
and reference database."""
import json

import numpy as np
import pytest
import torch

from benchmarks import generation as genbench
from dosmatgen_core.training import dataset as data
from dosmatgen_core import dos as dosmod

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def resources():
    return genbench._resources()


def test_heldout_sites_are_validation_sites_one_per_element(resources):
    _, _, db, _ = resources
    sites = genbench.heldout_sites(db)
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
    sites = genbench.heldout_sites(db)[:2]
    res = genbench.heldout_scores(loaded, predictor, db, sites, m=2, steps=20, guidance=1.0, seed=0)
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
    res = genbench.bench_dft(n_sites=1, m=1, steps=20, max_atoms=2, cache=cache, log=lambda m: None)
    assert len(res["sites"]) == 1 and res["sites"][0]["n_atoms"] <= 2
    rows = [json.loads(x) for x in cache.read_text().splitlines()]
    assert len(rows) == 2 and {r["kind"] for r in rows} == {"conditional", "unconditional"}
    for r in rows:
        assert "failed" in r or r["dft_mae"] > 0
    # a second run takes every calculation from the cache: no DFT at all
    import dosmatgen_core.labels.labeller as labelling
    monkeypatch.setattr(labelling, "label_isolated", lambda *a, **k: pytest.fail("recomputed a cached calculation"))
    again = genbench.bench_dft(n_sites=1, m=1, steps=20, max_atoms=2, cache=cache, log=lambda m: None)
    assert again["conditional"] == res["conditional"] and again["unconditional"] == res["unconditional"]


def test_spread_sites_takes_one_site_per_structure_first():
    g = np.zeros(dosmod.NPTS)
    sites = [("a", 2, 0, g, 1), ("a", 2, 1, g, 2), ("b", 3, 0, g, 3), ("b", 3, 1, g, 4), ("c", 1, 0, g, 5)]
    assert [(s[0], s[2]) for s in genbench.spread_sites(sites, 3)] == [("a", 0), ("b", 1), ("c", 0)]
    assert [(s[0], s[2]) for s in genbench.spread_sites(sites, 4)] == [("a", 0), ("b", 1), ("c", 0), ("a", 1)]
    assert genbench.spread_sites([], 3) == []


def test_tuning_sites_never_overlap_the_bench_sites(resources):
    _, _, db, _ = resources
    bench_keys = {(s[0], s[2]) for s in genbench.heldout_sites(db)}
    tune = genbench.tuning_sites(db, 24)
    assert tune and not bench_keys & {(s[0], s[2]) for s in tune}
    assert all(data.is_validation(s[0]) for s in tune)


def test_generate_timing_only_returns_the_wall_time_alone():
    res = genbench.bench_generate(n=2, steps=5, timing_only=True)
    assert res["wall_seconds_masked_4to7"]["candidates"] == 2 and res["wall_seconds_masked_4to7"]["seconds"] > 0
    assert "heldout_sites" not in res and "au3ni_ni_site" not in res


def test_bench_models_scores_each_checkpoint_on_the_chosen_sites(monkeypatch, resources):
    """Two checkpoints on two tuning sites: each gets its own scores, and the sites are the tuning
    ones, not the bench's (monkeypatched to a small count so it runs in seconds)."""
    monkeypatch.setattr(genbench, "_resources", lambda: resources)
    _, _, db, _ = resources
    two = genbench.tuning_sites(db, 2)
    monkeypatch.setattr(genbench, "tuning_sites", lambda db_, n: two)
    res = genbench.bench_models(["assets/denoiser.pt", "assets/denoiser.pt"], n=10, steps=10, on="tuning")
    assert res["sites"] == "tuning" and res["n_sites"] == 2
    (name, r), = res["models"].items()                      # the same file twice: one entry
    assert name == "assets/denoiser.pt" and r["ratio"] == pytest.approx(r["conditional_mae"] / r["unconditional_mae"])
    assert r["ratio_interval"]["low"] <= r["ratio"] <= r["ratio_interval"]["high"]
    with pytest.raises(ValueError, match="bench.*tuning.*all"):
        genbench.bench_models(["assets/denoiser.pt"], on="train")


def _site(mid, c, u, o=0.1):
    return {"material_id": mid, "n_atoms": 2, "site": 0, "element_z": 3, "conditional_mae": c, "unconditional_mae": u,
            "oracle_mae": o, "conditional_mae_vs_predicted_reference": c, "unconditional_mae_vs_predicted_reference": u,
            "share_same_element_conditional": 1.0, "share_same_element_unconditional": 0.0}


def test_summary_weighs_sites_equally_and_the_interval_resamples_structures():
    per = [_site("a", 0.2, 0.5), _site("a", 0.4, 0.5), _site("b", 0.3, 0.6), _site("c", 0.1, 0.4)]
    s = genbench.summarise_sites(per)
    assert s["n_sites"] == 4 and s["n_structures"] == 3
    assert s["ratio"] == pytest.approx(0.25 / 0.5)
    assert s["share_of_reachable_gain"] == pytest.approx((0.5 - 0.25) / (0.5 - 0.1))
    ci = genbench.bootstrap_ratio(per, n=500)
    assert ci["low"] <= s["ratio"] <= ci["high"] and ci["low"] < ci["high"]
    # every structure alike: no spread to resample
    same = [_site(k, 0.2, 0.4) for k in "abcd"]
    ci = genbench.bootstrap_ratio(same, n=50)
    assert ci["low"] == pytest.approx(0.5) and ci["high"] == pytest.approx(0.5) and ci["share_at_or_below_goal"] == 1.0


def test_by_cell_size_splits_the_summary_by_reference_cell_size():
    per = [_site("a", 0.2, 0.5), _site("b", 0.3, 0.6), {**_site("c", 0.3, 0.4), "n_atoms": 8}]
    s = genbench.by_cell_size(per)
    assert list(s) == ["2", "8"] and s["2"]["n_sites"] == 2 and s["8"]["n_sites"] == 1
    assert s["2"]["ratio"] == pytest.approx(0.25 / 0.55) and s["8"]["ratio"] == pytest.approx(0.75)
    assert s["8"]["share_of_reachable_gain"] == pytest.approx((0.4 - 0.3) / (0.4 - 0.1))


def test_heldout_scores_batches_sites_of_different_sizes_in_order(resources):
    """Sites of different cell sizes in one sampler batch: each site gets its own m candidates of its
    own size, and the unconditional set is drawn once per size."""
    loaded, predictor, db, _ = resources
    sites = genbench.heldout_sites(db, max_sites=10**6)
    by_n = {}
    for s in sites:
        by_n.setdefault(s[1], s)
    pick = list(by_n.values())[:3]
    calls = []
    from dosmatgen_core.sampling import sampler as sampling

    def spy(loaded_, specs, **kw):
        calls.append([s.n_atoms for s in specs])
        return sampling.sample(loaded_, specs, **kw)
    cache: dict = {}
    res = genbench.heldout_scores(loaded, predictor, db, pick, m=2, steps=5, guidance=1.0, seed=0, sample=spy,
                               uncond_cache=cache, m_uncond=3)
    assert calls[0] == [n for _, n, *_ in pick for _ in range(2)]
    assert calls[1] == [n for n in sorted(s[1] for s in pick) for _ in range(3)]
    assert [p["n_atoms"] for p in res["per_site"]] == [s[1] for s in pick]
    assert sorted(k[0] for k in cache) == sorted(s[1] for s in pick)
    # the baseline scores every atom of each unconditional sample (they are exchangeable)
    for (mid, nat, i, g, z), row in zip(pick, res["per_site"]):
        us = cache[(nat, 3, 5, 0)]
        rows = np.concatenate(predictor.predict([(u.crystal.numbers, u.crystal.frac, u.crystal.lattice) for u in us]))
        assert len(rows) == 3 * nat
        assert row["unconditional_mae"] == pytest.approx(np.nanmean([dosmod.mae(g, r) for r in rows]), rel=1e-6)
        zs = [int(x) for u in us for x in u.crystal.numbers]
        assert row["share_same_element_unconditional"] == pytest.approx(np.mean(np.array(zs) == z))
    n_calls = len(calls)
    genbench.heldout_scores(loaded, predictor, db, pick, m=2, steps=5, guidance=2.0, seed=0, sample=spy,
                            uncond_cache=cache, m_uncond=3)
    assert len(calls) == n_calls + 1          # conditional only: the unconditional set came from the cache


def test_dft_check_draws_past_candidates_the_recipe_cannot_calculate():
    from types import SimpleNamespace as NS
    gen = [NS(crystal=NS(numbers=np.array(zs))) for zs in ([3, 8], [57, 8], [28, 13], [92, 1], [26, 26])]
    ok, n = genbench._first_computable(gen, frozenset({"Li", "O", "Ni", "Al", "Fe", "H"}), 3)
    assert [list(g.crystal.numbers) for g in ok] == [[3, 8], [28, 13], [26, 26]] and n == 5
    ok, n = genbench._first_computable(gen, frozenset({"Li", "O"}), 2)
    assert len(ok) == 1 and n == 5                       # ran out of draws: fewer, counted


def test_dft_check_calculates_a_crystal_shared_by_sites_once(tmp_path, monkeypatch, resources):
    """Unconditional crystals depend only on the cell size: two sites of 2-atom cells share them,
    and each is calculated once (the GPAW call is replaced by a recorder; the slow test above runs
    the real one)."""
    import dosmatgen_core.labels.labeller as labelling
    monkeypatch.setattr(genbench, "_resources", lambda: resources)
    _, _, db, _ = resources
    two = [s for s in genbench.heldout_sites(db, max_sites=10**6) if s[1] == 2][:2]
    assert len(two) == 2
    monkeypatch.setattr(genbench, "spread_sites", lambda sites, n: two)
    calls = []

    def record(task, recipe, timeout, cpu=False):
        calls.append(task["cif"])
        return {"site_dos": [[0.1] * dosmod.NPTS] * 2}
    monkeypatch.setattr(labelling, "label_isolated", record)
    res = genbench.bench_dft(n_sites=2, m=2, steps=5, max_atoms=2, cache=tmp_path / "c.jsonl", log=lambda m: None,
                             workers=2)
    assert len(calls) == len(set(calls))
    # two workers append to one cache: one whole JSON line per calculation
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert len(lines) == len(calls) and all("cif_key" in json.loads(x) for x in lines)
    un = [r for r in res["rows"] if r["kind"] == "unconditional"]
    assert len(un) == 4 and len({r["cif_key"] for r in un}) == 2
    # the same DFT DOS scored against each site's own target
    g = {(s[0], s[2]): s[3] for s in two}
    for r in un:
        assert r["dft_mae"] == pytest.approx(dosmod.mae(g[(r["material_id"], r["site"])], np.full(dosmod.NPTS, 0.1)))
    assert res["unconditional"]["drawn"] >= 4


def test_dft_check_of_another_checkpoint_can_leave_out_the_baseline(tmp_path, monkeypatch, resources):
    """bench dft --model PATH --kinds conditional: that checkpoint's conditional candidates only
    (GPAW replaced by a recorder, as above); a bad kind is refused before anything is drawn."""
    import dosmatgen_core.model.checkpoint as checkpoint
    import dosmatgen_core.labels.labeller as labelling
    monkeypatch.setattr(genbench, "_resources", lambda: resources)
    loaded = resources[0]
    asked = []
    monkeypatch.setattr(checkpoint, "load_model", lambda p, **kw: asked.append(p) or loaded)
    monkeypatch.setattr(labelling, "label_isolated", lambda task, recipe, timeout, cpu=False: {"site_dos": [[0.1] * dosmod.NPTS] * 4})
    res = genbench.bench_dft(n_sites=1, m=1, steps=5, max_atoms=2, cache=tmp_path / "c.jsonl", log=lambda m: None,
                          model="other.pt", kinds=("conditional",))
    assert asked == ["other.pt"] and res["kinds"] == ["conditional"]
    assert {r["kind"] for r in res["rows"]} == {"conditional"} and res["unconditional"]["candidates"] == 0
    assert res["ratio"] is None
    with pytest.raises(ValueError, match="kinds"):
        genbench.bench_dft(n_sites=1, m=1, steps=5, cache=tmp_path / "c.jsonl", kinds=("baseline",))


def test_guidance_sweep_crosses_weights_and_temperatures_on_one_unconditional_draw(monkeypatch, resources):
    monkeypatch.setattr(genbench, "_resources", lambda: resources)
    _, _, db, _ = resources
    one = genbench.tuning_sites(db, 1)
    monkeypatch.setattr(genbench, "tuning_sites", lambda db_, n: one)
    res = genbench.bench_guidance(weights=(0.0, 1.0), type_temperatures=(1.0, 0.5), m=2, steps=5, log=lambda m: None)
    rows = res["settings"]
    assert [(r["guidance"], r["cond_type_temperature"]) for r in rows] == [(0.0, 1.0), (1.0, 1.0), (0.0, 0.5), (1.0, 0.5)]
    assert len({r["unconditional_mae"] for r in rows}) == 1


def test_collapsed_cells_are_counted_not_scored(resources):
    """A generated cell collapsed far below any crystal's density gets no predicted DOS (its
    neighbour lists would blow up); the bench counts it and averages over the rest."""
    from types import SimpleNamespace as NS

    from dosmatgen_core.structures import Crystal
    _, predictor, _, _ = resources
    rng = np.random.default_rng(0)
    good = Crystal(np.array([28, 13]), rng.random((2, 3)), np.eye(3) * 2.6)
    flat = Crystal(np.array([28, 13]), rng.random((2, 3)), np.diag([2.6, 2.6, 0.3]))   # 1 Å³ per atom
    p_good, p_flat = predictor.predict([(c.numbers, c.frac, c.lattice) for c in (good, flat)])
    assert np.isfinite(p_good).all() and p_good.shape == (2, dosmod.NPTS)
    assert p_flat.shape == (2, dosmod.NPTS) and np.isnan(p_flat).all()
    g = np.full(dosmod.NPTS, 0.2)
    (maes,), _ = genbench._score([NS(crystal=good), NS(crystal=flat)], predictor, 0, g)
    assert np.isfinite(maes[0]) and np.isnan(maes[1])
    assert genbench._mean(maes) == pytest.approx(maes[0]) and np.isnan(genbench._mean([float("nan")]))
    per = [_site("a", 0.2, 0.5), {**_site("b", float("nan"), 0.4), "unscored_conditional": 10}]
    s = genbench.summarise_sites(per)
    assert s["conditional_mae"] == pytest.approx(0.2) and s["unscored_candidates"]["conditional"] == 10


@pytest.mark.parametrize("what,argv,key,expected", [
    ("models", ["--on", "tuning"], "n_sites", 24),        # the tuning set is 24 sites unless told
    ("guidance", [], "n_sites", 24),
    ("dft", [], "n_sites", 4),                            # DFT is dear: 4 sites unless told
    ("models", ["--on", "tuning", "--sites", "6"], "n_sites", 6),
])
def test_bench_site_counts_default_per_bench(tmp_path, monkeypatch, what, argv, key, expected):
    import inspect

    from benchmarks import cli
    seen = {}
    fn = {"models": "bench_models", "guidance": "bench_guidance", "dft": "bench_dft"}[what]
    real = inspect.signature(getattr(genbench, fn))

    def record(*a, **k):      # the arguments the bench would run with, its own defaults included
        bound = real.bind(*a, **k)
        bound.apply_defaults()
        seen.update(bound.arguments)
        return {"ok": True}
    monkeypatch.setattr(genbench, fn, record)
    assert cli.main([what, *argv, "--out", str(tmp_path / "b.json")]) == 0
    assert seen[key] == expected


def test_paired_change_matches_sites_by_structure_and_site():
    base = [_site("a", 0.2, 0.5), _site("b", 0.3, 0.6), _site("c", 0.4, 0.6)]
    new = [_site("b", 0.25, 0.6), _site("a", 0.3, 0.5), _site("d", 0.1, 0.6)]   # d: not in the base
    r = genbench.paired_change(base, new)
    assert r["n_sites"] == 2 and r["sites_better"] == 1 and r["sites_worse"] == 1
    assert r["mean_change"] == pytest.approx((0.1 - 0.05) / 2)
    assert r["standard_error"] == pytest.approx(np.std([0.1, -0.05], ddof=1) / np.sqrt(2))
    with pytest.raises(ValueError, match="share no site"):
        genbench.paired_change(base, [_site("z", 0.1, 0.2)])


def test_baseline_sites_read_generate_and_models_files(tmp_path):
    per = [_site("a", 0.2, 0.5)]
    gen = tmp_path / "generate.json"
    gen.write_text(json.dumps({"all_heldout_sites": {"per_site": per}}))
    assert genbench.baseline_sites(str(gen)) == per
    two = tmp_path / "models.json"
    two.write_text(json.dumps({"models": {"x.pt": {"per_site": per}, "y.pt": {"per_site": []}}}))
    assert genbench.baseline_sites(f"{two}#x.pt") == per
    with pytest.raises(ValueError, match="holds 2 models"):
        genbench.baseline_sites(str(two))
    with pytest.raises(ValueError, match="no model 'z.pt'"):
        genbench.baseline_sites(f"{two}#z.pt")
    with pytest.raises(ValueError, match="cannot read"):
        genbench.baseline_sites(str(tmp_path / "missing.json"))


def test_cli_reports_a_bad_baseline_in_one_line_before_any_sampling(tmp_path, capsys):
    from benchmarks import cli
    out = tmp_path / "b.json"
    assert cli.main(["models", "--baseline", str(tmp_path / "none.json"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "benchmarks: error: baseline" in err and "Traceback" not in err
    assert not out.exists()
