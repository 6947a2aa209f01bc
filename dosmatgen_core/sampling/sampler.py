"""Reverse diffusion with classifier-free guidance and per-structure constraints.

Each structure in a batch carries its own constraints (see `SampleSpec`): which atoms are
conditioned on which DOS, which atoms have a fixed element, and optionally a template it starts
from (noised to a chosen strength) with some atoms pinned. All constraints are masks over the
flat atom batch, so a mixed batch costs no more than a uniform one.

Coordinates use DiffCSP's predictor–corrector (Langevin corrector, reverse-SDE predictor on the
wrapped normal); the lattice uses ancestral DDPM steps, respaced when fewer steps are asked.
Types follow the model: D3PM models unmask atoms (each masked atom is revealed between t and s
with probability (ᾱ_s − ᾱ_t)/(1 − ᾱ_t), its element drawn from the predicted distribution;
revealed atoms stay), continuous models take ancestral DDPM steps on the one-hot vector.
Guidance: ε = (1 + w)·ε_cond − w·ε_uncond for lattice and coordinates, and the same on the
log-probabilities of the elements (D3PM), both passes in one batch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from dosmatgen_core.training.dataset import standard_lattice, standardise
from dosmatgen_core.model.denoiser import N_TYPES
from dosmatgen_core.model.diffusion import Schedules, lattice_scale, masked_one_hot, one_hot
from dosmatgen_core.scoring.predictor import MIN_VOLUME_PER_ATOM
from dosmatgen_core.structures import Crystal

MAX_Z = 94            # no element past Pu is proposed


# Fractions of T after which steered particles are resampled: none early (the guide cannot read a
# DOS from near-noise), denser towards the end where the environment settles.
STEER_AT = (0.7, 0.5, 0.35, 0.25, 0.15, 0.08, 0.04)


class Cancelled(Exception):
    """Raised when the cancel flag is set; nothing partial is returned."""


@dataclass
class SampleSpec:
    """One structure to generate. Arrays have one row per atom of the structure."""
    n_atoms: int
    cond_dos: np.ndarray                 # (n, 400) raw DOS (states/eV) for conditioned atoms
    cond_mask: np.ndarray                # (n,) bool
    fixed_z: np.ndarray                  # (n,) int, 0 = free
    template: Crystal | None = None      # start point (template mode)
    strength: float = 1.0                # t_start = strength · T (1 = pure noise)
    pinned: np.ndarray | None = None     # (n,) bool: template atoms re-imposed every step
    tag: dict = field(default_factory=dict)


@dataclass
class Generated:
    crystal: Crystal
    spec_index: int


def step_schedule(T: int, steps: int) -> list[int]:
    """Descending time indices T … 1 (`steps` of them), evenly spaced."""
    steps = max(1, min(int(steps), T))
    ts = np.unique(np.round(np.linspace(1, T, steps)).astype(int))[::-1]
    return ts.tolist()


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# Clean-sample ranges for the DDPM steps: near t = T, x̂0 = (x_t − √(1−ᾱ)ε̂)/√ᾱ divides by a tiny
# √ᾱ, and an imperfect ε̂ would blow up; clipping x̂0 (as image DDPMs clip to [-1, 1]) keeps the
# posterior mean in range without changing steps where the prediction is sane.
LATTICE_X0_RANGE = (-20.0, 20.0)   # Å / N^(1/3), standard orientation
TYPE_X0_RANGE = (-1.0, 2.0)        # one-hot entries


def _ddpm_step(x, eps, ab, ab_prev, x0_range, randn, last: bool):
    """Posterior q(x_prev | x_t, x̂0) mean (+ noise unless last) with a clipped x̂0."""
    alpha = ab / ab_prev
    beta = 1 - alpha
    x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(*x0_range)
    mean = (ab_prev.sqrt() * beta / (1 - ab)) * x0 + (alpha.sqrt() * (1 - ab_prev) / (1 - ab)) * x
    if last:
        return mean
    var = beta * (1 - ab_prev) / (1 - ab)
    return mean + var.sqrt() * randn(*x.shape)


def _tidy_lattice(m: np.ndarray) -> np.ndarray:
    """Standard orientation (right-handed, a along x); a degenerate cell is returned as it is,
    for the validity checks to reject."""
    try:
        out = standard_lattice(m)
    except Exception:
        return m
    return out if np.all(np.isfinite(out)) and abs(np.linalg.det(out)) > 1e-6 else m


def collapsed(c: Crystal) -> bool:
    """A cell the reverse process shrank to (nearly) nothing: no crystal has under
    MIN_VOLUME_PER_ATOM Å³ per atom, and the predictor refuses such cells."""
    v = abs(float(np.linalg.det(c.lattice)))
    return not np.isfinite(v) or v / max(len(c.numbers), 1) < MIN_VOLUME_PER_ATOM


def sample(loaded, specs: list[SampleSpec], *, seed: int = 0, redraws: int = 0,
           progress: Callable[[float, float, str], None] | None = None,
           cancel: Callable[[], bool] | None = None, **settings) -> list[Generated]:
    """Generate one crystal per spec. Same seed, specs and settings → the same crystals.

    redraws: how many times a collapsed cell (see `collapsed`) is drawn again, with a seed derived
    from `seed`, before it is returned as it is (rare: about 1 in 1,000 at 250 steps). 0 keeps the
    raw sampler, which the benchmarks measure. Other settings: see `_sample`.
    """
    out = _sample(loaded, specs, seed=seed, progress=progress, cancel=cancel, **settings)
    for k in range(1, redraws + 1):
        bad = [i for i, g in enumerate(out) if collapsed(g.crystal)]
        if not bad:
            break
        again = _sample(loaded, [specs[i] for i in bad], seed=seed + 7919 * k, cancel=cancel, **settings)
        for i, g in zip(bad, again):
            out[i] = Generated(g.crystal, i)
    return out


@torch.no_grad()
def _sample(loaded, specs: list[SampleSpec], *, steps: int = 1000, guidance: float = 1.0, seed: int = 0,
            device: str = "auto", corrector: bool = True, step_lr: float = 1e-5,
            lattice_guidance: float | None = None, cond_type_temperature: float = 1.0,
            guide=None, particles: int = 1, steer: float = 10.0,
            progress: Callable[[float, float, str], None] | None = None,
            cancel: Callable[[], bool] | None = None) -> list[Generated]:
    """One reverse-diffusion pass over all specs.

    lattice_guidance: the guidance weight of the lattice output (None: the same w as the rest).
    cond_type_temperature: temperature of the element draw of conditioned atoms (D3PM; free atoms
    keep 1): below 1 the DOS-conditioned atom takes the model's likelier elements, near 0 the
    likeliest; the free atoms, and so unconditional sampling, keep their diversity.
    guide, particles, steer: DOS steering (Feynman–Kac / sequential Monte Carlo) on top of
    classifier-free guidance. Each structure is drawn as `particles` parallel trajectories; at
    STEER_AT the noise-aware DOS guide (guide_training.LoadedGuide) reads every particle's noisy
    state, and the particles of a structure are resampled with weights exp(−steer·Δerr), err being
    the guide's mean squared error (standardised DOS) over the conditioned atoms and Δ its change
    since the last resampling; at t = 0 the particle the guide finds closest is returned. Targets
    p(crystal | condition)·exp(−steer·err₀). steer = 0: no resampling, only that final pick (best of
    `particles` by the guide). Structures with no conditioned atom are not steered.
    """
    if not cond_type_temperature > 0:
        raise ValueError(f"cond_type_temperature must be > 0, not {cond_type_temperature}")
    K = int(particles)
    if K < 1:
        raise ValueError(f"particles must be >= 1, not {particles}")
    if K > 1 and guide is None:
        raise ValueError("steering with particles > 1 needs a DOS guide (assets/guide.pt)")
    if not any(sp.cond_mask.any() for sp in specs):
        K = 1                                            # nothing to steer: plain sampling
    out_specs = specs
    specs = [sp for sp in specs for _ in range(K)]       # a structure's particles sit together
    dev = _device(device)
    model = loaded.model.to(dev).eval()
    sch = Schedules.make().to(dev)
    T = sch.T
    g = torch.Generator(device=dev).manual_seed(int(seed))

    n = torch.tensor([s.n_atoms for s in specs], device=dev)
    B = len(specs)
    batch = torch.repeat_interleave(torch.arange(B, device=dev), n)
    N = int(n.sum())
    scale = lattice_scale(n)[:, None, None]
    cond_mask = torch.tensor(np.concatenate([s.cond_mask for s in specs]), dtype=torch.float32, device=dev)
    dos = torch.tensor(np.concatenate([standardise(s.cond_dos, loaded.dos_mean, loaded.dos_std) for s in specs]),
                       device=dev)
    dos = dos * cond_mask[:, None]
    fixed_z = torch.tensor(np.concatenate([s.fixed_z for s in specs]), dtype=torch.long, device=dev)
    fixed = fixed_z > 0
    a_fixed = one_hot(fixed_z.clamp(min=1))
    # templates: clean (t = 0) values and where they apply
    has_tpl = torch.tensor([s.template is not None for s in specs], device=dev)
    t_start = torch.tensor([int(round(s.strength * T)) if s.template is not None else T for s in specs], device=dev)
    tpl_l = torch.zeros(B, 3, 3, device=dev)
    tpl_x = torch.zeros(N, 3, device=dev)
    tpl_a = torch.zeros(N, N_TYPES, device=dev)
    pinned = torch.zeros(N, dtype=torch.bool, device=dev)
    off = 0
    for i, s in enumerate(specs):
        if s.template is not None:
            tpl_l[i] = torch.tensor(standard_lattice(s.template.lattice), dtype=torch.float32) / scale[i, 0, 0].cpu()
            tpl_x[off:off + s.n_atoms] = torch.tensor(s.template.frac, dtype=torch.float32)
            tpl_a[off:off + s.n_atoms] = one_hot(torch.tensor(s.template.numbers))
            if s.pinned is not None:
                pinned[off:off + s.n_atoms] = torch.tensor(s.pinned, dtype=torch.bool)
        off += s.n_atoms
    allowed = torch.zeros(N_TYPES, dtype=torch.bool, device=dev)
    allowed[:MAX_Z] = True
    d3pm = getattr(model.cfg, "types", "continuous") == "d3pm"
    tpl_z = tpl_a.argmax(1) + 1            # template elements (D3PM keeps types as tokens)

    def randn(*shape):
        return torch.randn(*shape, generator=g, device=dev)

    def type_input(a):
        # D3PM state: atomic numbers with 0 = MASK
        return masked_one_hot(a.clamp(min=1), a == 0) if d3pm else a

    def noised_template(t: int):
        """Forward-process draw at level t of the template (and of the fixed elements)."""
        ab = sch.alpha_bar[t]
        l = ab.sqrt() * tpl_l + (1 - ab).sqrt() * randn(B, 3, 3)
        x = torch.remainder(tpl_x + sch.sigma[t] * randn(N, 3), 1.0)
        if d3pm:
            # absorbing process: masked with probability 1 − ᾱ_t; fixed elements stay known
            keep = torch.rand(N, generator=g, device=dev) < ab
            return l, x, torch.where(keep, tpl_z, torch.zeros_like(tpl_z)), fixed_z
        a = ab.sqrt() * tpl_a + (1 - ab).sqrt() * randn(N, N_TYPES)
        af = ab.sqrt() * a_fixed + (1 - ab).sqrt() * randn(N, N_TYPES)
        return l, x, a, af

    constrained = bool(has_tpl.any() or pinned.any() or fixed.any())

    def impose(l, x, a, t: int):
        """Re-impose templates before their start time, pinned atoms, and fixed elements."""
        if not constrained:
            return l, x, a
        tl, tx, ta, af = noised_template(t)
        waiting = has_tpl & (t >= t_start)          # template crystals not yet released
        l = torch.where(waiting[:, None, None], tl, l)
        atom_wait = waiting[batch] | pinned
        x = torch.where(atom_wait[:, None], tx, x)
        if d3pm:
            # pinned atoms keep their element as a known (unmasked) token
            a = torch.where(waiting[batch], ta, a)
            a = torch.where(pinned, tpl_z, a)
            return l, x, torch.where(fixed, af, a)
        a = torch.where(atom_wait[:, None], ta, a)
        a = torch.where(fixed[:, None], af, a)
        return l, x, a

    conditioned = bool(cond_mask.any())
    steering = K > 1 and conditioned
    if steering and not d3pm:
        raise ValueError("DOS steering reads D3PM type tokens: it needs a d3pm denoiser")
    if steering:
        gmodel = guide.model.to(dev).eval()
        g_target = torch.tensor(np.concatenate([standardise(s.cond_dos, guide.dos_mean, guide.dos_std)
                                                for s in specs]), device=dev)
        offsets = torch.cumsum(n, 0) - n
        steered = (torch.zeros(B, device=dev).index_add_(0, batch, cond_mask) > 0).view(-1, K)[:, 0]
    type_temp = torch.where(cond_mask > 0, float(cond_type_temperature), 1.0)

    def predict(l, x, a, t: int, types: bool = True):
        """Guided (types, coordinate score, lattice ε); types=False: the corrector, which needs
        only the coordinates, skips the type log-probabilities."""
        tt = torch.full((B,), t / T, device=dev)
        norm_types = d3pm and types
        a = type_input(a)
        if guidance == 0 or not conditioned:
            # w = 0 is pure conditional sampling; with no conditioned atom the two passes agree
            pa, px, pl = model(a, x, l, tt, batch, dos, cond_mask)
            return (pa.log_softmax(-1) if norm_types else pa), px, pl
        # conditional and unconditional passes in one batch of 2B crystals
        out = model(torch.cat([a, a]), torch.cat([x, x]), torch.cat([l, l]), torch.cat([tt, tt]),
                    torch.cat([batch, batch + B]), torch.cat([dos, dos]),
                    torch.cat([cond_mask, torch.zeros_like(cond_mask)]))
        w = guidance
        pa, px, pl = out
        if norm_types:
            pa = pa.log_softmax(-1)
        wl = w if lattice_guidance is None else lattice_guidance
        return ((1 + w) * pa[:N] - w * pa[N:], (1 + w) * px[:N] - w * px[N:], (1 + wl) * pl[:B] - wl * pl[B:])

    def guide_error(l, x, a, t: int):
        """Per crystal: the guide's squared DOS error summed over its conditioned atoms, at time t."""
        pred = gmodel(type_input(a), x, l, torch.full((B,), t / T, device=dev), batch)
        e = ((pred - g_target) ** 2).mean(-1) * cond_mask
        return torch.zeros(B, device=dev).index_add_(0, batch, e)

    def chosen_atoms(idx):
        """Atom rows of crystals idx, in order (a structure's particles have equal atom counts)."""
        return torch.repeat_interleave(offsets[idx] - offsets, n) + torch.arange(N, device=dev)

    def resample(l, x, a, err, prev):
        """Multinomial resampling of each structure's particles by exp(−steer·(err − prev))."""
        w = torch.softmax((-steer * (err - prev)).view(-1, K), dim=1)
        pick = torch.multinomial(w, K, replacement=True, generator=g)
        pick = torch.where(steered[:, None], pick, torch.arange(K, device=dev))
        idx = (pick + K * torch.arange(B // K, device=dev)[:, None]).flatten()
        rows = chosen_atoms(idx)
        return l[idx], x[rows], a[rows], err[idx]

    def unmask(a, logp, ab, ab_prev):
        """D3PM reverse step: reveal each masked atom with probability (ᾱ_s − ᾱ_t)/(1 − ᾱ_t)."""
        p_reveal = ((ab_prev - ab) / (1 - ab)).clamp(0, 1)
        reveal = (a == 0) & (torch.rand(N, generator=g, device=dev) < p_reveal)
        logp = torch.where(allowed[None, :], logp, torch.full_like(logp, -1e9))
        gumbel = -torch.log(-torch.log(torch.rand(logp.shape, generator=g, device=dev).clamp(1e-12, 1 - 1e-12)))
        draw = (logp / type_temp[:, None] + gumbel).argmax(1) + 1
        return torch.where(reveal, draw, a)

    l = randn(B, 3, 3)
    x = torch.rand(N, 3, generator=g, device=dev)
    a = torch.zeros(N, dtype=torch.long, device=dev) if d3pm else randn(N, N_TYPES)
    ts = step_schedule(T, steps)
    l, x, a = impose(l, x, a, ts[0])
    prev_err = torch.zeros(B, device=dev)
    t0 = time.perf_counter()
    for i, t in enumerate(ts):
        if cancel is not None and cancel():
            raise Cancelled("generation cancelled")
        t_prev = ts[i + 1] if i + 1 < len(ts) else 0
        sig, sig_prev = sch.sigma[t], sch.sigma[t_prev]
        norm = sch.sigma_norm[t].sqrt()
        last = t_prev == 0
        if corrector:
            _, px, _ = predict(l, x, a, t, types=False)
            step = step_lr * (sig / sch.sigma[1]) ** 2
            x = torch.remainder(x - step * px * norm + (2 * step).sqrt() * randn(N, 3) * (0 if last else 1), 1.0)
        pa, px, pl = predict(l, x, a, t)
        # coordinates: reverse SDE from σ_t to σ_prev
        step = sig ** 2 - sig_prev ** 2
        std = (sig_prev ** 2 * step / sig ** 2).sqrt()
        x = torch.remainder(x - step * px * norm + std * randn(N, 3), 1.0)
        # lattice and types: ancestral DDPM step t → t_prev (respaced)
        l = _ddpm_step(l, pl, sch.alpha_bar[t], sch.alpha_bar[t_prev], LATTICE_X0_RANGE, randn, last)
        if d3pm:
            a = unmask(a, pa, sch.alpha_bar[t], sch.alpha_bar[t_prev])
        else:
            a = _ddpm_step(a, pa, sch.alpha_bar[t], sch.alpha_bar[t_prev], TYPE_X0_RANGE, randn, last)
        l, x, a = impose(l, x, a, t_prev)
        if steering and steer > 0 and not last and any(t_prev <= f * T < t for f in STEER_AT):
            err = guide_error(l, x, a, t_prev)
            l, x, a, prev_err = resample(l, x, a, err, prev_err)
        if progress is not None:
            done = (i + 1) / len(ts)
            el = time.perf_counter() - t0
            progress(done, el / done - el, f"step {i + 1}/{len(ts)}")

    if d3pm:
        z = a          # the last step reveals every atom (ᾱ_0 = 1)
    else:
        z = torch.where(allowed[None, :], a, torch.full_like(a, -1e9)).argmax(1) + 1
    z = torch.where(fixed, fixed_z, z)
    if steering:        # each structure's particle that the guide finds closest (the first if unsteered)
        best = guide_error(l, x, z, 0).view(-1, K).argmin(1)
        keep = torch.zeros(B, dtype=torch.bool, device=dev)
        keep[torch.where(steered, best, torch.zeros_like(best)) + K * torch.arange(B // K, device=dev)] = True
        l, x, z, scale = l[keep], x[keep[batch]], z[keep[batch]], scale[keep]
    specs = out_specs
    lat = (l * scale).cpu().numpy()
    x, z = x.cpu().numpy(), z.cpu().numpy()
    out = []
    off = 0
    for i, s in enumerate(specs):
        sl = slice(off, off + s.n_atoms)
        out.append(Generated(Crystal(z[sl].astype(np.int64), np.mod(x[sl], 1.0), _tidy_lattice(lat[i])), i))
        off += s.n_atoms
    return out
