"""DOS steering (Feynman–Kac / sequential Monte Carlo) on top of classifier-free guidance.

Each structure is drawn as K parallel trajectories (particles, adjacent in the batch). At the
fractions STEER_AT of T the noise-aware DOS guide (training.guide.LoadedGuide) reads every
particle's noisy state, and a structure's particles are resampled with weights exp(−steer·Δerr),
err being the guide's squared error (standardised DOS) summed over the conditioned atoms and Δ
its change since the last resampling. At t = 0 the particle the guide finds closest is kept.
Structures with no conditioned atom are carried along but never resampled.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dosmatgen_core.model.diffusion import type_input
from dosmatgen_core.training.dataset import standardise

# Fractions of T after which steered particles are resampled: none early (the guide cannot read a
# DOS from near-noise), denser towards the end where the environment settles.
STEER_AT = (0.7, 0.5, 0.35, 0.25, 0.15, 0.08, 0.04)


def particle_count(specs, guide, particles) -> int:
    """Particles per structure (checked); 1 when no structure has a conditioned atom."""
    K = int(particles)
    if K < 1:
        raise ValueError(f"particles must be >= 1, not {particles}")
    if K > 1 and guide is None:
        raise ValueError("steering with particles > 1 needs a DOS guide (assets/guide.pt)")
    if not any(sp.cond_mask.any() for sp in specs):
        return 1                                         # nothing to steer: plain sampling
    return K


@dataclass
class Steering:
    model: torch.nn.Module    # the guide network
    target: torch.Tensor      # (N, 400) target DOS standardised as the guide was trained
    batch: torch.Tensor       # (N,) crystal (particle) index of each atom
    n: torch.Tensor           # (B,) atoms per particle
    cond_mask: torch.Tensor   # (N,) float
    K: int                    # particles per structure
    steer: float              # resampling strength; 0 = only the final pick
    steered: torch.Tensor     # (B // K,) bool: the structure has a conditioned atom

    @classmethod
    def build(cls, guide, specs, batch, n, cond_mask, K: int, steer: float, d3pm: bool) -> Steering:
        """specs: already repeated K times (a structure's particles together)."""
        if not d3pm:
            raise ValueError("DOS steering reads D3PM type tokens: it needs a d3pm denoiser")
        dev = batch.device
        target = torch.tensor(np.concatenate([standardise(s.cond_dos, guide.dos_mean, guide.dos_std)
                                              for s in specs]), device=dev)
        B = len(specs)
        steered = (torch.zeros(B, device=dev).index_add_(0, batch, cond_mask) > 0).view(-1, K)[:, 0]
        return cls(guide.model.to(dev).eval(), target, batch, n, cond_mask, K, float(steer), steered)

    def due(self, t: int, t_prev: int, T: int, last: bool) -> bool:
        """Whether to resample after the step t → t_prev."""
        return self.steer > 0 and not last and any(t_prev <= f * T < t for f in STEER_AT)

    def error(self, l, x, a, t_frac: float) -> torch.Tensor:
        """Per particle: the guide's squared DOS error summed over its conditioned atoms."""
        B = l.shape[0]
        pred = self.model(type_input(a, True), x, l, torch.full((B,), t_frac, device=l.device), self.batch)
        e = ((pred - self.target) ** 2).mean(-1) * self.cond_mask
        return torch.zeros(B, device=l.device).index_add_(0, self.batch, e)

    def _atoms_of(self, idx: torch.Tensor) -> torch.Tensor:
        """Atom rows of particles idx, in order (a structure's particles have equal atom counts)."""
        offsets = torch.cumsum(self.n, 0) - self.n
        return torch.repeat_interleave(offsets[idx] - offsets, self.n) + torch.arange(self.batch.shape[0],
                                                                                         device=idx.device)

    def _first(self, choice: torch.Tensor) -> torch.Tensor:
        """Particle indices from a per-structure choice (B // K, k) within its K particles."""
        return choice + self.K * torch.arange(self.steered.shape[0], device=choice.device)[:, None]

    def resample(self, l, x, a, err, prev, gen: torch.Generator):
        """Multinomial resampling of each structure's particles by exp(−steer·(err − prev));
        returns the new state and the errors it carries."""
        K = self.K
        w = torch.softmax((-self.steer * (err - prev)).view(-1, K), dim=1)
        pick = torch.multinomial(w, K, replacement=True, generator=gen)
        pick = torch.where(self.steered[:, None], pick, torch.arange(K, device=w.device))
        idx = self._first(pick).flatten()
        rows = self._atoms_of(idx)
        return l[idx], x[rows], a[rows], err[idx]

    def keep_best(self, l, x, z, scale):
        """At t = 0: each structure's particle the guide finds closest (the first if unsteered)."""
        best = self.error(l, x, z, 0.0).view(-1, self.K).argmin(1)
        keep = torch.zeros(l.shape[0], dtype=torch.bool, device=l.device)
        keep[self._first(torch.where(self.steered, best, torch.zeros_like(best))[:, None]).flatten()] = True
        return l[keep], x[keep[self.batch]], z[keep[self.batch]], scale[keep]
