"""Constraints, seeding and guidance of the sampler; validation of task input."""
import numpy as np
import pytest
import torch
from ase.data import atomic_numbers, chemical_symbols

from dosmatgen_core.labels.labeller import supported_elements
from dosmatgen_core.model.checkpoint import LoadedModel
from dosmatgen_core.model.denoiser import Denoiser, DenoiserConfig
from dosmatgen_core.model.diffusion import step_schedule
from dosmatgen_core.sampling import sampler as sampling
from dosmatgen_core.sampling import modes
from dosmatgen_core.structures import Crystal

torch.set_num_threads(1)
DFT_Z = {atomic_numbers[e] for e in supported_elements()}


@pytest.fixture(scope="module")
def shipped_model():
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.paths import MODEL_PATH
    return load_model(MODEL_PATH)


@pytest.fixture(scope="module", params=["d3pm", "continuous"])
def loaded(request):
    """Every sampler test runs for both type diffusions."""
    torch.manual_seed(0)
    m = Denoiser(DenoiserConfig(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32,
                                types=request.param)).eval()
    return LoadedModel(m, np.zeros(400, np.float32), np.ones(400, np.float32), {}, "test", None)


@pytest.fixture(scope="module")
def ni_dos(seed_lines):
    d = seed_lines["L12-Au3Ni-chgnet"]
    from dosmatgen_core.structures import atoms_from_cif
    sym = atoms_from_cif(d["cif"]).get_chemical_symbols()
    return np.array(d["site_dos"][sym.index("Ni")])


@pytest.fixture(scope="module")
def au3ni(seed_lines):
    from dosmatgen_core.structures import atoms_from_cif
    a = atoms_from_cif(seed_lines["L12-Au3Ni-chgnet"]["cif"])
    return Crystal(np.array(a.numbers), a.get_scaled_positions(), a.cell.array)


def test_mixed_batch_keeps_every_constraint(loaded, ni_dos, au3ni):
    specs = (modes.masked(4, {0: ni_dos}, n_candidates=2)
             + modes.fixed_type(6, {1: ni_dos}, {1: "Ni", 4: "Au"}, n_candidates=2)
             + modes.template(au3ni, 0.4, {0: ni_dos}, pinned=[1, 2], n_candidates=2)
             + modes.unconditional(3, n_candidates=1))
    out = sampling.sample(loaded, specs, steps=20, seed=3)
    assert [len(g.crystal.numbers) for g in out] == [4, 4, 6, 6, 4, 4, 3]
    for g in out[2:4]:
        assert g.crystal.numbers[1] == 28 and g.crystal.numbers[4] == 79
    for g in out[4:6]:
        # pinned atoms: template species and positions exactly
        assert list(g.crystal.numbers[[1, 2]]) == list(au3ni.numbers[[1, 2]])
        assert np.allclose(g.crystal.frac[[1, 2]], np.mod(au3ni.frac[[1, 2]], 1.0), atol=1e-6)
    for g in out:
        assert np.all(np.isfinite(g.crystal.frac)) and np.all(np.isfinite(g.crystal.lattice))
        assert np.all((g.crystal.frac >= 0) & (g.crystal.frac < 1))
        assert np.all((g.crystal.numbers >= 1) & (g.crystal.numbers <= 94))


def test_same_seed_same_output_other_seed_differs(loaded, ni_dos):
    specs = modes.masked(5, {0: ni_dos, 2: ni_dos}, n_candidates=3)
    a = sampling.sample(loaded, specs, steps=15, seed=11)
    b = sampling.sample(loaded, specs, steps=15, seed=11)
    c = sampling.sample(loaded, specs, steps=15, seed=12)
    for u, v in zip(a, b):
        assert np.array_equal(u.crystal.numbers, v.crystal.numbers)
        assert np.array_equal(u.crystal.frac, v.crystal.frac)
        assert np.array_equal(u.crystal.lattice, v.crystal.lattice)
    assert not all(np.allclose(u.crystal.frac, w.crystal.frac) for u, w in zip(a, c))


def test_zero_guidance_is_pure_conditional_sampling(loaded, ni_dos, monkeypatch):
    specs = modes.masked(4, {0: ni_dos}, n_candidates=2)
    seen = []
    real = loaded.model.forward

    def spy(a, x, l, t, batch, dos, mask):
        seen.append((l.shape[0], mask.sum().item()))
        return real(a, x, l, t, batch, dos, mask)

    monkeypatch.setattr(loaded.model, "forward", spy)
    out0 = sampling.sample(loaded, specs, steps=5, guidance=0.0, seed=1, corrector=False)
    # w = 0: one conditional pass of the batch per step, the mask as given
    assert seen and all(b == 2 and m == 2 for b, m in seen)
    seen.clear()
    sampling.sample(loaded, specs, steps=5, guidance=2.0, seed=1, corrector=False)
    assert all(b == 4 and m == 2 for b, m in seen)   # cond + uncond in one batch
    assert len(out0) == 2


def test_progress_and_cancel(loaded, ni_dos):
    specs = modes.masked(3, {0: ni_dos})
    calls = []
    sampling.sample(loaded, specs, steps=10, progress=lambda f, eta, msg: calls.append(f))
    assert calls[-1] == pytest.approx(1.0) and len(calls) == 10
    with pytest.raises(sampling.Cancelled):
        sampling.sample(loaded, specs, steps=10, cancel=lambda: True)


def test_d3pm_reveals_every_atom_and_never_proposes_an_element_dft_cannot_calculate(ni_dos):
    """An untrained D3PM model still ends with every atom revealed as an element the DFT recipe
    can calculate, and guidance acts on log-probabilities (finite results at large w)."""
    torch.manual_seed(1)
    m = Denoiser(DenoiserConfig(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32, types="d3pm")).eval()
    excluded = [z for z in range(1, 101) if z not in DFT_Z]
    with torch.no_grad():
        m.type_out.bias[[z - 1 for z in excluded]] += 50.0    # the network prefers them: they must be excluded
    ld = LoadedModel(m, np.zeros(400, np.float32), np.ones(400, np.float32), {}, "test", None)
    out = sampling.sample(ld, modes.masked(5, {0: ni_dos}, n_candidates=4), steps=12, guidance=4.0, seed=0)
    for g in out:
        assert set(g.crystal.numbers.tolist()) <= DFT_Z


def test_shipped_model_never_proposes_an_element_dft_cannot_calculate(shipped_model):
    """64 unconditional 4-atom candidates at 20 steps (before the fix about a quarter of their
    atoms were lanthanides, actinides or Tc) hold only elements the labeller supports."""
    out = sampling.sample(shipped_model, modes.unconditional(4, 64), steps=20, seed=0, device="cpu")
    got = {chemical_symbols[z] for g in out for z in g.crystal.numbers}
    assert got <= supported_elements(), got - supported_elements()
    assert len(got) > 5          # still a spread of elements, not one safe choice


@pytest.mark.parametrize("el", ["Th", "Pu", "Pm", "La", "Tc", 90])
def test_an_element_dft_cannot_calculate_is_refused_by_name(ni_dos, au3ni, el):
    sym = chemical_symbols[el] if isinstance(el, int) else el
    with pytest.raises(ValueError, match=f"element {sym} cannot be used: the DFT recipe cannot calculate it"):
        modes.fixed_type(4, {0: ni_dos}, {1: el})
    bad = Crystal(np.r_[au3ni.numbers[:3], atomic_numbers[sym]], au3ni.frac, au3ni.lattice)
    with pytest.raises(ValueError, match=f"template atom 3: element {sym}"):
        modes.template(bad, 0.5, {0: ni_dos})
    # a spec built by hand is refused by the sampler too, before anything is drawn
    spec = modes.masked(4, {0: ni_dos})[0]
    spec.fixed_z[2] = atomic_numbers[sym]
    with pytest.raises(ValueError, match=f"element {sym} cannot be used"):
        sampling.sample(None, [spec], steps=2)


def test_reduced_step_schedule():
    ts = step_schedule(1000, 100)
    assert ts[0] == 1000 and ts[-1] == 1 and len(ts) == 100 and ts == sorted(ts, reverse=True)


@pytest.mark.parametrize("call, words", [
    (lambda d: modes.masked(0, {0: d}), "between 1 and 20"),
    (lambda d: modes.masked(21, {0: d}), "between 1 and 20"),
    (lambda d: modes.masked(4, {0: d[:399]}), "400"),
    (lambda d: modes.masked(4, {}), "at least one atom"),
    (lambda d: modes.masked(4, {5: d}), "outside"),
    (lambda d: modes.masked(4, {0: np.r_[d[:399], np.nan]}), "NaN"),
    (lambda d: modes.fixed_type(4, {0: d}, {0: "Qx"}), "unknown element"),
    (lambda d: modes.fixed_type(4, {0: d}, {}), "at least one atom"),
])
def test_bad_task_input_is_rejected_clearly(ni_dos, call, words):
    with pytest.raises(ValueError, match=words):
        call(ni_dos)


def test_template_validation(au3ni, ni_dos):
    with pytest.raises(ValueError, match="strength"):
        modes.template(au3ni, 0.0, {0: ni_dos})
    with pytest.raises(ValueError, match="both conditioned and pinned"):
        modes.template(au3ni, 0.5, {0: ni_dos}, pinned=[0])


def test_condition_mask_is_respected_per_structure_in_a_mixed_batch(loaded, ni_dos, au3ni, monkeypatch):
    specs = (modes.masked(4, {1: ni_dos})                       # atom 1 conditioned
             + modes.unconditional(3)                           # nothing conditioned
             + modes.template(au3ni, 0.5, {2: ni_dos, 3: ni_dos}))
    seen = []
    real = loaded.model.forward

    def spy(a, x, l, t, batch, dos, mask):
        seen.append((mask.clone(), dos.clone()))
        return real(a, x, l, t, batch, dos, mask)

    monkeypatch.setattr(loaded.model, "forward", spy)
    sampling.sample(loaded, specs, steps=3, guidance=1.0, seed=0, corrector=False)
    mask, dos = seen[0]
    n = 4 + 3 + 4
    want = torch.zeros(n)
    want[[1, 7 + 2, 7 + 3]] = 1
    assert torch.equal(mask[:n], want)           # conditional half: exactly the requested atoms
    assert torch.equal(mask[n:], torch.zeros(n))  # unconditional half of the CFG batch
    assert torch.all(dos[:n][want == 0] == 0)     # free atoms carry no DOS at all


def test_conditioned_type_temperature_leaves_free_atoms_alone(loaded, ni_dos):
    """The temperature acts on the element draw of conditioned atoms only: unconditional sampling
    is the same at any temperature, and a non-positive one is refused."""
    specs = modes.unconditional(3, 3)
    a = sampling.sample(loaded, specs, steps=8, seed=3)
    b = sampling.sample(loaded, specs, steps=8, seed=3, cond_type_temperature=0.1)
    for x, y in zip(a, b):
        assert np.array_equal(x.crystal.numbers, y.crystal.numbers) and np.allclose(x.crystal.frac, y.crystal.frac)
    c = sampling.sample(loaded, modes.masked(3, {0: ni_dos}, 2), steps=8, seed=3, cond_type_temperature=1.0)
    d = sampling.sample(loaded, modes.masked(3, {0: ni_dos}, 2), steps=8, seed=3)
    assert all(np.array_equal(x.crystal.numbers, y.crystal.numbers) for x, y in zip(c, d))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature"):
            sampling.sample(loaded, specs, steps=4, cond_type_temperature=bad)


def test_collapsed_cells_are_redrawn_and_the_rest_kept(loaded, ni_dos, monkeypatch):
    specs = modes.masked(4, {0: ni_dos}, n_candidates=6)
    raw = sampling.sample(loaded, specs, steps=6, seed=5)
    vpa = [abs(np.linalg.det(g.crystal.lattice)) / 4 for g in raw]
    # call every cell below the median volume "collapsed": half the batch must be drawn again
    monkeypatch.setattr(sampling, "MIN_VOLUME_PER_ATOM", float(np.median(vpa)))
    flagged = [i for i, g in enumerate(raw) if sampling.collapsed(g.crystal)]
    assert 0 < len(flagged) < len(raw)
    a = sampling.sample(loaded, specs, steps=6, seed=5, redraws=2)
    b = sampling.sample(loaded, specs, steps=6, seed=5, redraws=2)
    for i, (r, x, y) in enumerate(zip(raw, a, b)):
        assert x.spec_index == i and np.array_equal(x.crystal.frac, y.crystal.frac)   # reproducible
        if i in flagged:
            assert not np.array_equal(x.crystal.frac, r.crystal.frac)
            assert x.crystal.numbers[0] > 0 and len(x.crystal.numbers) == 4
        else:
            assert np.array_equal(x.crystal.frac, r.crystal.frac)
    # redraws=0 is the raw sampler
    c = sampling.sample(loaded, specs, steps=6, seed=5, redraws=0)
    assert all(np.array_equal(x.crystal.frac, r.crystal.frac) for x, r in zip(c, raw))


def test_collapsed_detects_a_shrunken_cell():
    c = Crystal(np.array([28, 79]), np.array([[0, 0, 0], [0.5, 0.5, 0.5]]), np.eye(3) * 1.2)
    assert sampling.collapsed(c)
    assert not sampling.collapsed(Crystal(c.numbers, c.frac, np.eye(3) * 3.6))
    assert sampling.collapsed(Crystal(c.numbers, c.frac, np.full((3, 3), np.nan)))
