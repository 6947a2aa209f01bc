"""Classifier-free guidance: the denoiser's outputs mixed as ε = (1 + w)·ε_cond − w·ε_uncond.

Both passes run in one batch of 2B crystals (the second half with no atom conditioned). The mix
applies to the coordinate score and the lattice ε (the lattice may take its own weight), and for
D3PM models to the log-probabilities of the elements; continuous types mix their ε the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from dosmatgen_core.model.diffusion import type_input


@dataclass
class Guidance:
    model: torch.nn.Module
    batch: torch.Tensor       # (N,) crystal index of each atom
    dos: torch.Tensor         # (N, 400) standardised target DOS, zero on free atoms
    cond_mask: torch.Tensor   # (N,) float, 1 on conditioned atoms
    w: float                  # guidance weight; 0 = pure conditional sampling
    w_lattice: float | None   # weight of the lattice output (None: w)
    d3pm: bool

    def __call__(self, l, x, a, t_frac: float, types: bool = True):
        """Guided (types, coordinate score, lattice ε) at time t_frac = t/T. types=False (the
        corrector, which needs only the coordinates) skips normalising the type outputs."""
        B, N = l.shape[0], x.shape[0]
        tt = torch.full((B,), t_frac, device=l.device)
        log_probs = self.d3pm and types
        a = type_input(a, self.d3pm)
        if self.w == 0 or not bool(self.cond_mask.any()):
            # w = 0 is pure conditional sampling; with no conditioned atom the two passes agree
            pa, px, pl = self.model(a, x, l, tt, self.batch, self.dos, self.cond_mask)
            return (pa.log_softmax(-1) if log_probs else pa), px, pl
        # conditional and unconditional passes in one batch of 2B crystals
        pa, px, pl = self.model(torch.cat([a, a]), torch.cat([x, x]), torch.cat([l, l]), torch.cat([tt, tt]),
                                torch.cat([self.batch, self.batch + B]), torch.cat([self.dos, self.dos]),
                                torch.cat([self.cond_mask, torch.zeros_like(self.cond_mask)]))
        if log_probs:
            pa = pa.log_softmax(-1)
        w = self.w
        wl = w if self.w_lattice is None else self.w_lattice
        return ((1 + w) * pa[:N] - w * pa[N:], (1 + w) * px[:N] - w * px[N:], (1 + wl) * pl[:B] - wl * pl[B:])
