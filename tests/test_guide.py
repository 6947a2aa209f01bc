"""The noise-aware DOS guide (symmetries, overfit, training run, shipped file) and DOS steering in
the sampler (constraints, seeding, errors, and that it brings the conditioned atom closer)."""
import json

import numpy as np
import pytest
import torch

from dosmatgen_core import dos as dosmod
from dosmatgen_core.candidates.pipeline import Request, run_generation
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import SHIPPED_SHA256, LoadedModel, load_model, save_model
from dosmatgen_core.model.denoiser import Denoiser, DenoiserConfig
from dosmatgen_core.model.diffusion import Schedules, masked_one_hot
from dosmatgen_core.model.guide import DOSGuide, LoadedGuide, guide_loss, load_guide
from dosmatgen_core.sampling import sampler as sampling
from dosmatgen_core.sampling import modes
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.structures import Crystal, atoms_from_cif
from dosmatgen_core.training import dataset as data
from dosmatgen_core.training.guide import GuideTrainConfig, export_guide, train_guide
from studio import shared as studio

torch.set_num_threads(1)
TINY = dict(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32, types="d3pm")
LABELLED = ("mp-22905", "L12-Au3Ni-chgnet", "mp-522", "mp-1941")


def entries(seed_lines, ids=LABELLED):
    return [data.entry_from_atoms(mid, atoms_from_cif(seed_lines[mid]["cif"]), seed_lines[mid]["site_dos"])
            for mid in ids]


@pytest.fixture(scope="module")
def guide():
    torch.manual_seed(0)
    return DOSGuide(DenoiserConfig(**TINY)).eval()


def state(seed=0, sizes=(3, 5)):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    z = torch.randint(1, 90, (n,), generator=g)
    a = masked_one_hot(z, torch.rand(n, generator=g) < 0.3)
    return a, torch.rand(n, 3, generator=g), torch.randn(len(sizes), 3, 3, generator=g) + 4 * torch.eye(3), \
        torch.rand(len(sizes), generator=g), batch


def test_guide_is_permutation_equivariant_and_rotation_translation_invariant(guide):
    a, x, l, t, batch = state()
    p = guide(a, x, l, t, batch)
    assert p.shape == (8, 400)
    perm = torch.tensor([2, 0, 1, 7, 3, 6, 4, 5])
    assert torch.allclose(guide(a[perm], x[perm], l, t, batch), p[perm], atol=1e-5)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    assert torch.allclose(guide(a, x, l @ q.T, t, batch), p, atol=1e-4)
    assert torch.allclose(guide(a, torch.remainder(x + torch.tensor([0.3, -0.2, 0.7]), 1.0), l, t, batch), p, atol=1e-4)


def test_guide_needs_a_d3pm_config():
    with pytest.raises(ValueError, match="D3PM"):
        DOSGuide(DenoiserConfig(**{**TINY, "types": "continuous"}))


def test_tiny_guide_overfits_two_labelled_structures(seed_lines):
    ents = entries(seed_lines, LABELLED[:2])
    mean, std = data.dos_stats(ents)
    b = data.collate(ents, mean, std)
    torch.manual_seed(0)
    g = DOSGuide(DenoiserConfig(**{**TINY, "hidden": 64}))
    sch = Schedules.make()
    t = torch.tensor([5, 5])
    opt = torch.optim.Adam(g.parameters(), lr=3e-3)
    first = guide_loss(g, b, sch, torch.Generator().manual_seed(0), t).item()
    for k in range(300):
        loss = guide_loss(g, b, sch, torch.Generator().manual_seed(k), t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert guide_loss(g, b, sch, torch.Generator().manual_seed(0), t).item() < first / 10


def test_guide_run_warm_starts_resumes_exports_and_the_file_is_checked(tmp_path, seed_lines):
    ents = entries(seed_lines)
    val_id = next(f"mp-{k}" for k in range(10**6) if data.is_validation(f"mp-{k}"))
    ents.append(data.Entry(val_id, ents[0].z, ents[0].frac, ents[0].lattice, ents[0].site_dos))
    pack = data.save_pack(tmp_path / "pack.npz", ents, [], {"label_shards": ["labels-0000.jsonl.gz"]})
    torch.manual_seed(0)
    src = Denoiser(DenoiserConfig(**TINY))
    save_model(tmp_path / "src.pt", src, np.zeros(400), np.ones(400), {})
    cfg = GuideTrainConfig(run_dir=str(tmp_path / "run"), pack=str(pack), init_from=str(tmp_path / "src.pt"),
                           epochs=1, batch_size=2, threads=1)
    logs = []
    train_guide(cfg, log=logs.append)
    assert any("4 training / 1 validation" in m for m in logs)
    cfg.epochs = 2
    train_guide(cfg, log=logs.append)
    assert any("resumed at epoch 1" in m for m in logs)
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and all(np.isfinite(float(v)) for v in rows[-1].split(",")[2:6])
    card = export_guide(tmp_path / "run", tmp_path / "guide.pt")
    assert card["n_train"] == 4 and card["label_shards"] == ["labels-0000.jsonl.gz"]
    assert card["warm_start"]["sha256"] == json.loads((tmp_path / "src.card.json").read_text())["sha256"]
    with pytest.raises(ValueError, match="not a shipped checkpoint"):
        load_guide(tmp_path / "guide.pt")                  # a new file loads only when trusted
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):
        loaded = load_guide(tmp_path / "guide.pt", trust=True)
    # the trunk starts as the denoiser it will guide
    blob = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert blob["config"] == src.cfg.to_dict() and isinstance(loaded, LoadedGuide)
    (tmp_path / "guide.pt").write_bytes((tmp_path / "guide.pt").read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"), pytest.warns(UserWarning):
        load_guide(tmp_path / "guide.pt", trust=True)
    with pytest.raises(FileNotFoundError, match="train-guide"):
        load_guide(tmp_path / "missing.pt")


def test_a_pack_without_validation_labels_is_refused(tmp_path, seed_lines):
    pack = data.save_pack(tmp_path / "pack.npz", entries(seed_lines), [], {})
    with pytest.raises(ValueError, match="validation"):
        train_guide(GuideTrainConfig(run_dir=str(tmp_path / "run"), pack=str(pack)))


# ---- steering in the sampler -------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny(guide):
    torch.manual_seed(1)
    m = Denoiser(DenoiserConfig(**TINY)).eval()
    z = np.zeros(400, np.float32)
    return LoadedModel(m, z, np.ones(400, np.float32), {}, "test", None), LoadedGuide(guide, z, np.ones(400, np.float32), {}, None)


@pytest.fixture(scope="module")
def ni(seed_lines):
    d = seed_lines["L12-Au3Ni-chgnet"]
    a = atoms_from_cif(d["cif"])
    return np.array(d["site_dos"][a.get_chemical_symbols().index("Ni")]), \
        Crystal(np.array(a.numbers), a.get_scaled_positions(), a.cell.array)


def test_steered_mixed_batch_keeps_every_constraint_and_its_seed(tiny, ni):
    loaded, g = tiny
    dos, au3ni = ni
    specs = (modes.masked(4, {0: dos}, n_candidates=2)
             + modes.fixed_type(6, {1: dos}, {1: "Ni", 4: "Au"}, n_candidates=2)
             + modes.template(au3ni, 0.4, {0: dos}, pinned=[1, 2], n_candidates=2)
             + modes.unconditional(3, n_candidates=1))
    out = sampling.sample(loaded, specs, steps=30, seed=3, guide=g, particles=3, steer=10.0)
    assert [len(o.crystal.numbers) for o in out] == [4, 4, 6, 6, 4, 4, 3]
    assert [o.spec_index for o in out] == list(range(7))
    for o in out[2:4]:
        assert o.crystal.numbers[1] == 28 and o.crystal.numbers[4] == 79
    for o in out[4:6]:
        assert list(o.crystal.numbers[[1, 2]]) == list(au3ni.numbers[[1, 2]])
        assert np.allclose(o.crystal.frac[[1, 2]], np.mod(au3ni.frac[[1, 2]], 1.0), atol=1e-6)
    again = sampling.sample(loaded, specs, steps=30, seed=3, guide=g, particles=3, steer=10.0)
    for u, v in zip(out, again):
        assert np.array_equal(u.crystal.numbers, v.crystal.numbers) and np.array_equal(u.crystal.frac, v.crystal.frac)


def test_one_particle_or_nothing_conditioned_is_plain_sampling(tiny, ni):
    loaded, g = tiny
    for specs, k in ((modes.masked(5, {0: ni[0]}, n_candidates=3), 1), (modes.unconditional(4, 3), 4)):
        a = sampling.sample(loaded, specs, steps=15, seed=2)
        b = sampling.sample(loaded, specs, steps=15, seed=2, guide=g, particles=k)
        for u, v in zip(a, b):
            assert np.array_equal(u.crystal.frac, v.crystal.frac) and np.array_equal(u.crystal.numbers, v.crystal.numbers)


def test_steering_returns_the_particle_the_guide_finds_closest(tiny, ni):
    """steer = 0: no resampling, so the final pick alone decides: the returned crystal must have
    the lowest clean-state guide error of its structure's particles, drawn as plain samples."""
    loaded, g = tiny
    specs = modes.masked(4, {0: ni[0]}, n_candidates=2)
    out = sampling.sample(loaded, specs, steps=20, seed=5, guide=g, particles=4, steer=0.0)
    target = torch.tensor(data.standardise(ni[0], g.dos_mean, g.dos_std))

    def err(c):
        n = len(c.numbers)
        p = g.model(masked_one_hot(torch.tensor(c.numbers), torch.zeros(n, dtype=torch.bool)),
                    torch.tensor(c.frac, dtype=torch.float32),
                    torch.tensor(c.lattice, dtype=torch.float32)[None] / n ** (1 / 3),
                    torch.zeros(1), torch.zeros(n, dtype=torch.long))
        return float(((p[0] - target) ** 2).mean())

    with torch.no_grad():
        steered = sampling.sample(loaded, specs, steps=20, seed=5, guide=g, particles=4, steer=0.0)
        plain = sampling.sample(loaded, [s for s in specs for _ in range(4)], steps=20, seed=5)
        for k, o in enumerate(steered):
            errs = [err(p.crystal) for p in plain[4 * k:4 * k + 4]]
            assert err(o.crystal) == pytest.approx(min(errs), rel=1e-4, abs=1e-5)
            assert min(errs) < max(errs)                 # there was a choice to make
    assert out  # the resampled run above also returned one crystal per structure


def test_steering_needs_a_guide_and_a_d3pm_model(tiny, ni):
    loaded, g = tiny
    specs = modes.masked(4, {0: ni[0]})
    with pytest.raises(ValueError, match="guide"):
        sampling.sample(loaded, specs, steps=5, particles=2)
    with pytest.raises(ValueError, match="particles"):
        sampling.sample(loaded, specs, steps=5, guide=g, particles=0)
    cont = LoadedModel(Denoiser(DenoiserConfig(**{**TINY, "types": "continuous"})).eval(),
                       np.zeros(400, np.float32), np.ones(400, np.float32), {}, "test", None)
    with pytest.raises(ValueError, match="d3pm"):
        sampling.sample(cont, specs, steps=5, guide=g, particles=2)


# ---- the shipped guide and the generation pipeline ------------------------------------------------

@pytest.fixture(scope="module")
def shipped(seed_lines):
    ref = open_db(studio.DB_URL).get(studio.PRESET_ID)
    return (load_model(studio.MODEL_PATH), load_guide(studio.GUIDE_PATH), load_predictor(studio.PREDICTOR_PATH),
            ref.site_dos[ref.symbols.index("Ni")])


def test_shipped_guide_steers_the_conditioned_atom_closer_to_its_target(shipped):
    """Au3Ni's Ni site as the target, 4-atom cells: steered candidates are closer to it than plain
    ones by the guide and by the separate site-DOS predictor that scores every candidate."""
    loaded, g, predictor, target = shipped
    specs = modes.masked(4, {0: target}, n_candidates=8)
    plain = sampling.sample(loaded, specs, steps=50, seed=0)
    steered = sampling.sample(loaded, specs, steps=50, seed=0, guide=g, particles=4, steer=10.0)

    def scores(gen):
        pred = predictor.predict([(c.crystal.numbers, c.crystal.frac, c.crystal.lattice) for c in gen])
        return np.mean([dosmod.mae(target, p[0]) for p in pred])
    # the guide reads the generator's noisy D3PM states; it was warm-started from an earlier
    # generator of the same architecture (its own DOS scale travels with it)
    assert g.card["n_train"] > 2000 and g.card["config"]["types"] == loaded.card["type_diffusion"] == "d3pm"
    assert scores(steered) < scores(plain)


def test_pipeline_runs_steered_candidates_beside_a_plain_baseline(shipped, tmp_path):
    loaded, g, predictor, target = shipped
    req = Request(mode="masked", n_atoms=4, targets=[target.tolist()], cond_sites=[0], n_candidates=2, steps=5,
                  particles=3)
    # no guide given: the shipped one steers
    own = run_generation(req, loaded, predictor, check_novelty=False)
    assert own["settings"]["guide_sha256"] == SHIPPED_SHA256["assets/guide.pt"]
    run = run_generation(req, loaded, predictor, guide=g, store=RunStore(tmp_path / "runs.db"), check_novelty=False)
    assert len(run["candidates"]) == 2 and len(run["baseline"]) == 2
    assert run["settings"]["particles"] == 3
    for bad, words in ((0, "1 to 16"), (17, "1 to 16")):
        with pytest.raises(ValueError, match=words):
            Request(mode="masked", n_atoms=4, targets=[target.tolist()], cond_sites=[0], particles=bad).specs()
    assert Request(mode="unconditional", n_atoms=4, particles=2).particles == 1   # nothing to steer towards
