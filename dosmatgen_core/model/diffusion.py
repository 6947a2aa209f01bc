"""Corruption processes and the training loss (DiffCSP-style joint diffusion).

- Lattice L: DDPM with a cosine schedule on L / N^(1/3) (so cells of 1 and 20 atoms share one
  scale), ε-prediction.
- Fractional coordinates X: wrapped normal on the 3-torus, σ geometric from 0.005 to 0.5,
  denoising score matching with the score normalised by its mean square λ(σ).
- Atom types A, one of two (DenoiserConfig.types):
  - "d3pm": absorbing-state discrete diffusion (Austin et al. 2021). At time t each atom's
    element is replaced by MASK with probability 1 − ᾱ_t; the model predicts the clean element
    (logits) and is trained with cross-entropy on the masked atoms. Measured better than the
    continuous variant at recovering the element from a DOS (README, bench types).
  - "continuous": DDPM on the one-hot vector (cosine schedule), ε-prediction.

Per-atom conditioning enters through `cond_mask`. Classifier-free guidance training drops the
whole condition of a crystal with probability p_uncond; unlabelled crystals always take the
null condition, so every structure teaches the unconditional branch.

The reverse steps sit at the end, beside the forward process they undo: coordinates by DiffCSP's
predictor–corrector (reverse SDE on the wrapped normal, Langevin corrector), lattice and
continuous types by ancestral DDPM steps (respaced when fewer steps are asked), D3PM types by
unmasking.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dosmatgen_core.model.denoiser import MASK_TOKEN, N_TYPES

T_STEPS = 1000
SIGMA_MIN, SIGMA_MAX = 0.005, 0.5
TYPE_LOSS_WEIGHT = 20.0      # as DiffCSP: the one-hot MSE is small per dimension
D3PM_LOSS_WEIGHT = 1.0       # cross-entropy in nats is already of the order of the other parts


def cosine_alpha_bar(T: int = T_STEPS, s: float = 0.008) -> torch.Tensor:
    """ᾱ_t for t = 0..T (index 0 is the clean data), Nichol & Dhariwal's cosine schedule."""
    steps = torch.arange(T + 1, dtype=torch.float64)
    f = torch.cos(((steps / T) + s) / (1 + s) * math.pi / 2) ** 2
    ab = f / f[0]
    # clip β_t = 1 - ᾱ_t/ᾱ_{t-1} at 0.999 as usual
    betas = (1 - ab[1:] / ab[:-1]).clamp(max=0.999)
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)]).float()


def sigmas(T: int = T_STEPS) -> torch.Tensor:
    """σ_t for t = 0..T; σ_0 = 0 (clean), then geometric from SIGMA_MIN to SIGMA_MAX."""
    s = torch.exp(torch.linspace(math.log(SIGMA_MIN), math.log(SIGMA_MAX), T))
    return torch.cat([torch.zeros(1), s])


def wrapped_normal_neg_score(d: torch.Tensor, sigma: torch.Tensor, n_images: int = 3) -> torch.Tensor:
    """−∇ log p of the wrapped normal at displacement d (DiffCSP's sign convention)."""
    k = torch.arange(-n_images, n_images + 1, dtype=d.dtype, device=d.device)
    x = d[..., None] + k
    s2 = (sigma ** 2)[..., None]
    logw = -x ** 2 / (2 * s2)
    w = torch.softmax(logw, dim=-1)
    return (w * x).sum(-1) / sigma ** 2


def sigma_norms(sig: torch.Tensor, n: int = 20000, n_knots: int = 64, seed: int = 0) -> torch.Tensor:
    """λ(σ) = E|score|² for each σ, to normalise the coordinate target.

    Monte Carlo at n_knots log-spaced σ, interpolated in log-log space (λ is smooth: ≈ 1/σ² for
    small σ, flattening as the wrapped normal approaches uniform).
    """
    g = torch.Generator().manual_seed(seed)
    pos = sig[sig > 0]
    knots = torch.exp(torch.linspace(math.log(pos.min()), math.log(pos.max()), n_knots))
    d = torch.randn(n_knots, n, generator=g, dtype=torch.float64) * knots[:, None].double()
    d = d - torch.round(d)
    lam = (wrapped_normal_neg_score(d, knots[:, None].double().expand_as(d)) ** 2).mean(1)
    out = torch.ones_like(sig)
    x = torch.log(pos.double())
    xp, fp = torch.log(knots.double()), torch.log(lam)
    idx = torch.searchsorted(xp, x).clamp(1, n_knots - 1)
    w = (x - xp[idx - 1]) / (xp[idx] - xp[idx - 1])
    out[sig > 0] = torch.exp(fp[idx - 1] * (1 - w) + fp[idx] * w).float()
    return out


@dataclass
class Schedules:
    alpha_bar: torch.Tensor     # (T+1,)
    sigma: torch.Tensor         # (T+1,)
    sigma_norm: torch.Tensor    # (T+1,)
    T: int = T_STEPS

    @classmethod
    def make(cls, T: int = T_STEPS) -> "Schedules":
        sig = sigmas(T)
        return cls(cosine_alpha_bar(T), sig, sigma_norms(sig), T)

    def to(self, device) -> "Schedules":
        return Schedules(self.alpha_bar.to(device), self.sigma.to(device), self.sigma_norm.to(device), self.T)


def lattice_scale(counts: torch.Tensor) -> torch.Tensor:
    """N^(1/3) per crystal: the lattice is diffused in units of that."""
    return counts.to(torch.float32).clamp(min=1) ** (1.0 / 3.0)


def one_hot(z: torch.Tensor) -> torch.Tensor:
    """Atomic numbers 1..100 → one-hot rows."""
    return F.one_hot(z - 1, N_TYPES).float()


def masked_one_hot(z: torch.Tensor, masked: torch.Tensor) -> torch.Tensor:
    """D3PM input: one-hot over the 100 elements + MASK; masked atoms are MASK."""
    tok = torch.where(masked, torch.full_like(z, MASK_TOKEN + 1), z) - 1
    return F.one_hot(tok, N_TYPES + 1).float()


@dataclass
class Batch:
    """A flat batch of crystals (see data.collate)."""
    z: torch.Tensor          # (N,) atomic numbers
    frac: torch.Tensor       # (N, 3)
    lattice: torch.Tensor    # (B, 3, 3) Å, rows a, b, c
    batch: torch.Tensor      # (N,) crystal index of each atom
    dos: torch.Tensor        # (N, 400) standardised DOS (zeros where unknown)
    has_dos: torch.Tensor    # (N,) 1 where the atom has a DFT label

    @property
    def n_crystals(self) -> int:
        return self.lattice.shape[0]

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, f).to(device) for f in ("z", "frac", "lattice", "batch", "dos", "has_dos")))


def condition_mask(b: Batch, p_uncond: float, p_atom: float, gen: torch.Generator | None = None,
                   p_single: float = 0.0) -> torch.Tensor:
    """Which atoms see their DOS in this training step.

    Labelled atoms are kept with probability p_atom (so the model learns to condition a subset,
    as masked mode asks), at least one per labelled crystal. With probability p_single a labelled
    crystal instead keeps exactly one labelled atom: the commonest use (one target site, the rest
    free) is otherwise rare in larger cells (an 8-atom cell gets it 4 % of the time at p_atom 0.5).
    (Measured at 0.5: no change on the held-out sites; see README.) Then whole crystals are
    dropped with p_uncond for classifier-free guidance.
    """
    dev = b.z.device
    keep = (torch.rand(b.z.shape[0], generator=gen, device=dev) < p_atom).float() * b.has_dos
    B = b.n_crystals
    labelled = torch.zeros(B, device=dev).index_add_(0, b.batch, b.has_dos) > 0
    if p_single > 0:    # no draw at 0: runs started before p_single existed resume bit for bit
        single = labelled & (torch.rand(B, generator=gen, device=dev) < p_single)
        keep = keep * (~single[b.batch]).float()
    # one conditioned atom in each labelled crystal that has none (all of the single ones)
    n_keep = torch.zeros(B, device=dev).index_add_(0, b.batch, keep)
    need = labelled & (n_keep == 0)
    if need.any():
        score = torch.rand(b.z.shape[0], generator=gen, device=dev) * b.has_dos
        for c in torch.nonzero(need).flatten().tolist():
            idx = torch.nonzero(b.batch == c).flatten()
            keep[idx[score[idx].argmax()]] = 1.0
    drop = torch.rand(B, generator=gen, device=dev) < p_uncond
    return keep * (~drop[b.batch]).float()


@dataclass
class Corrupted:
    """One forward-process draw of a batch at per-crystal times t, with the denoiser's targets."""
    t: torch.Tensor            # (B,) integer times 1..T
    l_t: torch.Tensor          # (B, 3, 3) noisy lattice / N^(1/3)
    eps_l: torch.Tensor
    x_t: torch.Tensor          # (N, 3)
    target_x: torch.Tensor     # normalised score target
    a_t: torch.Tensor          # (N, 100) continuous or (N, 101) D3PM input
    eps_a: torch.Tensor | None  # continuous target
    masked: torch.Tensor | None  # D3PM: which atoms are MASK (their element is the target)


def corrupt(b: Batch, sch: Schedules, types: str = "continuous", gen: torch.Generator | None = None,
            t: torch.Tensor | None = None) -> Corrupted:
    """Draw t (unless given) and noise all three parts of the batch."""
    dev = b.z.device
    B = b.n_crystals
    counts = torch.bincount(b.batch, minlength=B)
    if t is None:
        t = torch.randint(1, sch.T + 1, (B,), generator=gen, device=dev)
    ab = sch.alpha_bar[t]
    # lattice
    l0 = b.lattice / lattice_scale(counts)[:, None, None]
    eps_l = torch.randn(l0.shape, generator=gen, device=dev)
    lt = ab.sqrt()[:, None, None] * l0 + (1 - ab).sqrt()[:, None, None] * eps_l
    # coordinates
    sig = sch.sigma[t][b.batch]
    noise_x = torch.randn(b.frac.shape, generator=gen, device=dev) * sig[:, None]
    xt = torch.remainder(b.frac + noise_x, 1.0)
    target_x = wrapped_normal_neg_score(noise_x, sig[:, None].expand_as(noise_x)) / sch.sigma_norm[t][b.batch, None].sqrt()
    # types
    aba = ab[b.batch]
    if types == "d3pm":
        masked = torch.rand(b.z.shape[0], generator=gen, device=dev) < (1 - aba)
        return Corrupted(t, lt, eps_l, xt, target_x, masked_one_hot(b.z, masked), None, masked)
    a0 = one_hot(b.z)
    eps_a = torch.randn(a0.shape, generator=gen, device=dev)
    at = aba.sqrt()[:, None] * a0 + (1 - aba).sqrt()[:, None] * eps_a
    return Corrupted(t, lt, eps_l, xt, target_x, at, eps_a, None)


def training_loss(model, b: Batch, sch: Schedules, *, p_uncond: float = 0.2, p_atom: float = 0.5,
                  gen: torch.Generator | None = None, t: torch.Tensor | None = None,
                  p_single: float = 0.0) -> dict[str, torch.Tensor]:
    """One denoising loss evaluation on a batch (all three parts)."""
    types = model.cfg.types
    c = corrupt(b, sch, types, gen, t)
    mask = condition_mask(b, p_uncond, p_atom, gen, p_single)
    pred_a, pred_x, pred_l = model(c.a_t, c.x_t, c.l_t, c.t.float() / sch.T, b.batch, b.dos, mask)
    loss_l = F.mse_loss(pred_l, c.eps_l)
    loss_x = F.mse_loss(pred_x, c.target_x)
    if types == "d3pm":
        # cross-entropy on the masked atoms only (the others are given); 0 if none is masked
        ce = F.cross_entropy(pred_a, b.z - 1, reduction="none")
        loss_a = (ce * c.masked).sum() / c.masked.sum().clamp(min=1)
        loss = loss_l + loss_x + D3PM_LOSS_WEIGHT * loss_a
    else:
        loss_a = F.mse_loss(pred_a, c.eps_a)
        loss = loss_l + loss_x + TYPE_LOSS_WEIGHT * loss_a
    return {"loss": loss, "lattice": loss_l.detach(), "coord": loss_x.detach(), "type": loss_a.detach()}


# ---- reverse steps (sampling) -----------------------------------------------------------------

# Clean-sample ranges for the DDPM steps: near t = T, x̂0 = (x_t − √(1−ᾱ)ε̂)/√ᾱ divides by a tiny
# √ᾱ, and an imperfect ε̂ would blow up; clipping x̂0 (as image DDPMs clip to [-1, 1]) keeps the
# posterior mean in range without changing steps where the prediction is sane.
LATTICE_X0_RANGE = (-20.0, 20.0)   # Å / N^(1/3), standard orientation
TYPE_X0_RANGE = (-1.0, 2.0)        # one-hot entries


def step_schedule(T: int, steps: int) -> list[int]:
    """Descending time indices T … 1 (`steps` of them), evenly spaced."""
    steps = max(1, min(int(steps), T))
    ts = np.unique(np.round(np.linspace(1, T, steps)).astype(int))[::-1]
    return ts.tolist()


def type_input(a: torch.Tensor, d3pm: bool) -> torch.Tensor:
    """The denoiser's type input: D3PM states are atomic numbers with 0 = MASK, continuous
    states are the one-hot vectors themselves."""
    return masked_one_hot(a.clamp(min=1), a == 0) if d3pm else a


def _randn(shape, gen: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(*shape, generator=gen, device=like.device)


def ddpm_step(x, eps, ab, ab_prev, x0_range, gen: torch.Generator, last: bool):
    """Posterior q(x_prev | x_t, x̂0) mean (+ noise unless last) with a clipped x̂0."""
    alpha = ab / ab_prev
    beta = 1 - alpha
    x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(*x0_range)
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + (alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x
    if last:
        return mean
    var = beta * (1 - ab_prev) / (1 - ab)
    return mean + var.sqrt() * _randn(x.shape, gen, x)


def coord_corrector_step(x, score, sch: Schedules, t: int, step_lr: float, gen: torch.Generator, last: bool):
    """Langevin corrector at σ_t on the torus (no noise on the last step; the draw is made anyway)."""
    step = step_lr * (sch.sigma[t] / sch.sigma[1]) ** 2
    noise = (2 * step).sqrt() * _randn(x.shape, gen, x) * (0 if last else 1)
    return torch.remainder(x - step * score * sch.sigma_norm[t].sqrt() + noise, 1.0)


def coord_predictor_step(x, score, sch: Schedules, t: int, t_prev: int, gen: torch.Generator):
    """Reverse SDE on the wrapped normal from σ_t to σ_prev."""
    sig, sig_prev = sch.sigma[t], sch.sigma[t_prev]
    step = sig ** 2 - sig_prev ** 2
    std = (sig_prev ** 2 * step / sig ** 2).sqrt()
    return torch.remainder(x - step * score * sch.sigma_norm[t].sqrt() + std * _randn(x.shape, gen, x), 1.0)


def unmask_step(a, logp, ab, ab_prev, allowed, temperature, gen: torch.Generator):
    """D3PM reverse step: reveal each masked atom with probability (ᾱ_s − ᾱ_t)/(1 − ᾱ_t), its
    element drawn (Gumbel-max at `temperature` per atom) among the `allowed` elements; revealed
    atoms stay."""
    p_reveal = ((ab_prev - ab) / (1 - ab)).clamp(0, 1)
    reveal = (a == 0) & (torch.rand(a.shape[0], generator=gen, device=a.device) < p_reveal)
    logp = torch.where(allowed[None, :], logp, torch.full_like(logp, -1e9))
    gumbel = -torch.log(-torch.log(torch.rand(logp.shape, generator=gen, device=a.device).clamp(1e-12, 1 - 1e-12)))
    draw = (logp / temperature[:, None] + gumbel).argmax(1) + 1
    return torch.where(reveal, draw, a)
