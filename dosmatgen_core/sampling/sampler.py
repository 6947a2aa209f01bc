"""Reverse diffusion with classifier-free guidance and per-structure constraints.

Each structure in a batch carries its own constraints (see `SampleSpec`): which atoms are
conditioned on which DOS, which atoms have a fixed element, and optionally a template it starts
from (noised to a chosen strength) with some atoms pinned. All constraints are masks over the
flat atom batch, so a mixed batch costs no more than a uniform one.

The loop is `_sample`; its parts live beside it: the reverse steps of each variable in
model/diffusion.py, classifier-free guidance in guidance.py, templates, pinned atoms and fixed
elements in constraints.py, DOS steering in steering.py.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from dosmatgen_core.model.denoiser import N_TYPES
from dosmatgen_core.model.diffusion import (
    LATTICE_X0_RANGE,
    TYPE_X0_RANGE,
    Schedules,
    coord_corrector_step,
    coord_predictor_step,
    ddpm_step,
    lattice_scale,
    step_schedule,
    unmask_step,
)
from dosmatgen_core.sampling.constraints import (
    Constraints,
    allowed_elements,
    check_kept_elements,
)
from dosmatgen_core.sampling.guidance import Guidance
from dosmatgen_core.sampling.steering import Steering, particle_count
from dosmatgen_core.structures import MIN_VOLUME_PER_ATOM, Crystal
from dosmatgen_core.training.dataset import standard_lattice, standardise


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


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


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


def _crystals(specs: list[SampleSpec], l, x, z, scale) -> list[Generated]:
    """Split the flat batch back into one crystal per spec (lattice back in Å)."""
    lat = (l * scale).cpu().numpy()
    x, z = x.cpu().numpy(), z.cpu().numpy()
    out = []
    off = 0
    for i, s in enumerate(specs):
        sl = slice(off, off + s.n_atoms)
        out.append(Generated(Crystal(z[sl].astype(np.int64), np.mod(x[sl], 1.0), _tidy_lattice(lat[i])), i))
        off += s.n_atoms
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
    guide, particles, steer: DOS steering (see steering.py): each structure is drawn as `particles`
    trajectories, resampled by the guide's DOS error with strength `steer`, and the one the guide
    finds closest is returned. Targets p(crystal | condition)·exp(−steer·err₀). steer = 0: no
    resampling, only that final pick. Structures with no conditioned atom are not steered.
    """
    if not cond_type_temperature > 0:
        raise ValueError(f"cond_type_temperature must be > 0, not {cond_type_temperature}")
    check_kept_elements(specs)
    K = particle_count(specs, guide, particles)
    out_specs, specs = specs, [sp for sp in specs for _ in range(K)]   # a structure's particles together
    dev = _device(device)
    model = loaded.model.to(dev).eval()
    d3pm = getattr(model.cfg, "types", "continuous") == "d3pm"
    sch = Schedules.make().to(dev)
    T = sch.T
    g = torch.Generator(device=dev).manual_seed(int(seed))

    n = torch.tensor([s.n_atoms for s in specs], device=dev)
    B, N = len(specs), int(n.sum())
    batch = torch.repeat_interleave(torch.arange(B, device=dev), n)
    scale = lattice_scale(n)[:, None, None]
    cond_mask = torch.tensor(np.concatenate([s.cond_mask for s in specs]), dtype=torch.float32, device=dev)
    dos = torch.tensor(np.concatenate([standardise(s.cond_dos, loaded.dos_mean, loaded.dos_std) for s in specs]),
                       device=dev) * cond_mask[:, None]
    predict = Guidance(model, batch, dos, cond_mask, guidance, lattice_guidance, d3pm)
    cons = Constraints.build(specs, batch, scale, T, d3pm)
    steering = Steering.build(guide, specs, batch, n, cond_mask, K, steer, d3pm) if K > 1 else None
    allowed = allowed_elements(dev)
    type_temp = torch.where(cond_mask > 0, float(cond_type_temperature), 1.0)

    l = torch.randn(B, 3, 3, generator=g, device=dev)
    x = torch.rand(N, 3, generator=g, device=dev)
    a = torch.zeros(N, dtype=torch.long, device=dev) if d3pm else torch.randn(N, N_TYPES, generator=g, device=dev)
    ts = step_schedule(T, steps)
    l, x, a = cons.impose(l, x, a, ts[0], sch, g)
    err = torch.zeros(B, device=dev)
    t0 = time.perf_counter()
    for i, t in enumerate(ts):
        if cancel is not None and cancel():
            raise Cancelled("generation cancelled")
        t_prev = ts[i + 1] if i + 1 < len(ts) else 0
        last = t_prev == 0
        ab, ab_prev = sch.alpha_bar[t], sch.alpha_bar[t_prev]
        if corrector:
            _, px, _ = predict(l, x, a, t / T, types=False)
            x = coord_corrector_step(x, px, sch, t, step_lr, g, last)
        pa, px, pl = predict(l, x, a, t / T)
        x = coord_predictor_step(x, px, sch, t, t_prev, g)
        l = ddpm_step(l, pl, ab, ab_prev, LATTICE_X0_RANGE, g, last)
        if d3pm:
            a = unmask_step(a, pa, ab, ab_prev, allowed, type_temp, g)
        else:
            a = ddpm_step(a, pa, ab, ab_prev, TYPE_X0_RANGE, g, last)
        l, x, a = cons.impose(l, x, a, t_prev, sch, g)
        if steering is not None and steering.due(t, t_prev, T, last):
            l, x, a, err = steering.resample(l, x, a, steering.error(l, x, a, t_prev / T), err, g)
        if progress is not None:
            done, el = (i + 1) / len(ts), time.perf_counter() - t0
            progress(done, el / done - el, f"step {i + 1}/{len(ts)}")

    # D3PM: the last step reveals every atom (ᾱ_0 = 1); continuous: the likeliest allowed element
    z = a if d3pm else torch.where(allowed[None, :], a, torch.full_like(a, -1e9)).argmax(1) + 1
    z = cons.final_types(z)
    if steering is not None:
        l, x, z, scale = steering.keep_best(l, x, z, scale)
    return _crystals(out_specs, l, x, z, scale)
