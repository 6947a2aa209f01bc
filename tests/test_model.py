"""The denoiser's symmetries, the training loss, and a tiny overfit."""
import numpy as np
import pytest
import torch

from dosmatgen_core.model.checkpoint import save_model
from dosmatgen_core.model.denoiser import N_TYPES, Denoiser, DenoiserConfig
from dosmatgen_core.model.diffusion import Batch, Schedules, condition_mask, corrupt, masked_one_hot, training_loss
from dosmatgen_core.training import dataset as data
from dosmatgen_core.training.denoiser import warm_start

torch.set_num_threads(1)


def random_batch(seed=0, sizes=(3, 5)):
    g = torch.Generator().manual_seed(seed)
    n = sum(sizes)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    a = torch.randn(n, N_TYPES, generator=g)
    x = torch.rand(n, 3, generator=g)
    l = torch.randn(len(sizes), 3, 3, generator=g) + 4 * torch.eye(3)
    t = torch.rand(len(sizes), generator=g)
    dos = torch.randn(n, 400, generator=g)
    mask = (torch.rand(n, generator=g) < 0.5).float()
    return a, x, l, t, batch, dos, mask


@pytest.fixture(scope="module", params=[False, True], ids=["plain", "cond_context"])
def model(request):
    torch.manual_seed(0)
    m = Denoiser(DenoiserConfig(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32,
                                cond_context=request.param)).eval()
    if request.param:
        # the context path starts at zero; give it weights so the symmetry tests see it work
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.startswith("cond_"):
                    p.normal_(0, 0.1)
    return m


def test_permuting_atoms_permutes_outputs(model):
    a, x, l, t, batch, dos, mask = random_batch()
    pa, px, pl = model(a, x, l, t, batch, dos, mask)
    perm = torch.tensor([2, 0, 1, 7, 3, 6, 4, 5])    # within each crystal
    qa, qx, ql = model(a[perm], x[perm], l, t, batch, dos[perm], mask[perm])
    assert torch.allclose(qa, pa[perm], atol=1e-5)
    assert torch.allclose(qx, px[perm], atol=1e-5)
    assert torch.allclose(ql, pl, atol=1e-5)


def test_rotating_the_lattice_rotates_only_the_lattice_output(model):
    a, x, l, t, batch, dos, mask = random_batch()
    pa, px, pl = model(a, x, l, t, batch, dos, mask)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(3)))
    l_rot = l @ q.T                                  # rows (lattice vectors) rotated
    qa, qx, ql = model(a, x, l_rot, t, batch, dos, mask)
    assert torch.allclose(qa, pa, atol=1e-4)         # types: invariant
    assert torch.allclose(qx, px, atol=1e-4)         # fractional scores: invariant
    assert torch.allclose(ql, pl @ q.T, atol=1e-4)   # lattice noise: rotates with L


def test_translating_all_atoms_changes_nothing(model):
    a, x, l, t, batch, dos, mask = random_batch()
    out1 = model(a, x, l, t, batch, dos, mask)
    out2 = model(a, torch.remainder(x + torch.tensor([0.31, -0.2, 0.77]), 1.0), l, t, batch, dos, mask)
    for u, v in zip(out1, out2):
        assert torch.allclose(u, v, atol=1e-4)


def test_condition_mask_switches_the_dos_off(model):
    a, x, l, t, batch, dos, mask = random_batch()
    off = torch.zeros_like(mask)
    p1 = model(a, x, l, t, batch, dos, off)
    p2 = model(a, x, l, t, batch, torch.randn_like(dos), off)
    for u, v in zip(p1, p2):
        assert torch.allclose(u, v)
    p3 = model(a, x, l, t, batch, dos, torch.ones_like(mask))
    assert not torch.allclose(p1[0], p3[0])


@pytest.mark.parametrize("types", ["d3pm", "continuous"])
def test_tiny_model_overfits_two_structures(seed_lines, types):
    torch.manual_seed(0)
    entries = [data.entry_from_atoms(mid, __import__("dosmatgen_core.structures", fromlist=["x"]).atoms_from_cif(seed_lines[mid]["cif"]),
                                     seed_lines[mid]["site_dos"]) for mid in ("mp-22905", "L12-Au3Ni-chgnet")]
    mean, std = data.dos_stats(entries)
    sch = Schedules.make()
    m = Denoiser(DenoiserConfig(hidden=64, layers=2, n_freqs=8, time_dim=32, dos_hidden=64, types=types))
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    b = data.collate(entries, mean, std)

    # One fixed draw of times and noise: the network must memorise it (the full DSM loss over
    # random draws has an irreducible floor, so it cannot show overfitting).
    def loss():
        return training_loss(m, b, sch, p_uncond=0.0, gen=torch.Generator().manual_seed(7))

    before = loss()["loss"].item()
    for _ in range(400):
        out = loss()
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = loss()["loss"].item()
    assert after < before / 10, (before, after)


def test_d3pm_input_has_a_mask_column_and_the_loss_counts_masked_atoms_only():
    z = torch.tensor([28, 79, 79, 79])
    a = masked_one_hot(z, torch.tensor([True, False, False, True]))
    assert a.shape == (4, N_TYPES + 1)
    assert a[0, N_TYPES] == 1 and a[3, N_TYPES] == 1 and a[1, 78] == 1 and a.sum() == 4
    b = Batch(z, torch.rand(4, 3), 4 * torch.eye(3)[None], torch.zeros(4, dtype=torch.long),
              torch.zeros(4, 400), torch.zeros(4))
    sch = Schedules.make()
    # t = 1: almost nothing masked; t = T: everything masked (ᾱ_T = 0)
    assert corrupt(b, sch, "d3pm", t=torch.tensor([sch.T])).masked.all()
    assert not corrupt(b, sch, "d3pm", gen=torch.Generator().manual_seed(0), t=torch.tensor([1])).masked.any()


def test_warm_start_keeps_every_weight_that_fits(tmp_path):
    """continuous → D3PM: all but the type head carry over; the MASK column starts at zero."""
    torch.manual_seed(0)
    cfg = dict(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32)
    src = Denoiser(DenoiserConfig(**cfg))
    save_model(tmp_path / "m.pt", src, np.zeros(400), np.ones(400), {})
    dst = Denoiser(DenoiserConfig(**cfg, types="d3pm"))
    _, _, fresh = warm_start(dst, tmp_path / "m.pt")
    assert sorted(fresh) == ["type_out.bias", "type_out.weight"]
    assert torch.equal(dst.type_in.weight[:, :N_TYPES], src.type_in.weight)
    assert torch.all(dst.type_in.weight[:, N_TYPES] == 0)
    assert torch.equal(dst.layers[1].node[0].weight, src.layers[1].node[0].weight)


def test_p_single_trains_labelled_crystals_with_exactly_one_conditioned_atom():
    # three crystals of 4, 6 and 5 atoms: all atoms of the first two labelled, the third unlabelled
    sizes = [4, 6, 5]
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    has = torch.cat([torch.ones(10), torch.zeros(5)])
    b = Batch(torch.full((15,), 28), torch.rand(15, 3), 4 * torch.eye(3).repeat(3, 1, 1), batch,
              torch.zeros(15, 400), has)
    per = lambda m: torch.zeros(3).index_add_(0, batch, m).tolist()
    assert per(condition_mask(b, 0.0, 1.0)) == [4, 6, 0]            # default: every labelled atom
    for k in range(20):
        m = condition_mask(b, 0.0, 1.0, torch.Generator().manual_seed(k), p_single=1.0)
        assert per(m) == [1, 1, 0] and (m <= has).all()
    # p_single = 0.5: both regimes occur, and the dropout for guidance still empties whole crystals
    counts = {tuple(per(condition_mask(b, 0.0, 1.0, torch.Generator().manual_seed(k), p_single=0.5)))
              for k in range(40)}
    assert (1.0, 1.0, 0.0) in counts and (4.0, 6.0, 0.0) in counts and (1.0, 6.0, 0.0) in counts
    assert per(condition_mask(b, 1.0, 1.0, p_single=1.0)) == [0, 0, 0]


def test_condition_context_starts_as_its_warm_start_source(tmp_path):
    """The zero-initialised context path: a warm-started model gives its source's outputs
    exactly, and once its weights move, a free atom feels the condition of another atom."""
    torch.manual_seed(0)
    cfg = dict(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32, types="d3pm")
    src = Denoiser(DenoiserConfig(**cfg)).eval()
    save_model(tmp_path / "m.pt", src, np.zeros(400), np.ones(400), {})
    dst = Denoiser(DenoiserConfig(**cfg, cond_context=True)).eval()
    _, _, fresh = warm_start(dst, tmp_path / "m.pt")
    assert fresh and all(k.startswith("cond_") for k in fresh)
    g = torch.Generator().manual_seed(1)
    sizes = (3, 6)
    n = sum(sizes)
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    a = torch.nn.functional.one_hot(torch.randint(1, N_TYPES, (n,), generator=g), N_TYPES + 1).float()
    x, l = torch.rand(n, 3, generator=g), torch.randn(2, 3, 3, generator=g) + 4 * torch.eye(3)
    t, dos = torch.rand(2, generator=g), torch.randn(n, 400, generator=g)
    mask = torch.zeros(n)
    mask[[0, 3]] = 1.0
    with torch.no_grad():
        for u, v in zip(src(a, x, l, t, batch, dos, mask), dst(a, x, l, t, batch, dos, mask)):
            assert torch.equal(u, v)
        for name, p in dst.named_parameters():
            if name.startswith("cond_crystal"):
                p.normal_(0, 0.1)
        dos2 = dos.clone()
        dos2[3] = torch.randn(400, generator=g)          # another DOS on atom 3 (second crystal)
        pa1, _, pl1 = dst(a, x, l, t, batch, dos, mask)
        pa2, _, pl2 = dst(a, x, l, t, batch, dos2, mask)
    assert not torch.allclose(pa1[4:], pa2[4:])          # the free atoms of that crystal see it
    assert torch.equal(pa1[:3], pa2[:3]) and torch.equal(pl1[0], pl2[0])   # the other crystal does not


def test_condition_mask_draws_no_single_coin_at_p_single_zero():
    """p_single = 0 uses the random stream exactly as before the option existed."""
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor([3, 2]))
    b = Batch(torch.full((5,), 28), torch.rand(5, 3), 4 * torch.eye(3).repeat(2, 1, 1), batch,
              torch.zeros(5, 400), torch.ones(5))
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    condition_mask(b, 0.2, 1.0, g1)          # p_atom 1: no crystal needs an extra atom drawn
    torch.rand(5, generator=g2), torch.rand(2, generator=g2)       # the atom and the dropout draws
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
