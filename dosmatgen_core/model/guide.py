"""Noise-aware site-DOS predictor for classifier guidance.

Classifier-free guidance alone leaves the conditioned atom's DOS short of its target (README:
seven retrains, all at a predictor-scored ratio of 0.53-0.58). Classifier guidance adds
s·∇ log p(g | A_t, X_t, L_t) to the score, which needs a DOS predictor that reads the *noisy*
state at time t (the shipped site-DOS predictor reads clean crystals through CHGNet and is not
differentiable in positions). This one is the denoiser's trunk (same invariant message passing,
same inputs: D3PM type tokens, fractional coordinates, lattice, t) with a per-atom DOS head,
warm-started from the shipped denoiser so it begins with the crystal chemistry learnt from every
structure, then fitted to the DFT labels at noise levels biased towards clean.

It is a separate network from the scorer (assets/predictor.pt): guidance that only fooled one
predictor would show up as a gap between the two and in the DFT check.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dosmatgen_core.model.checkpoint import building, read_checkpoint
from dosmatgen_core.model.denoiser import DOS_POINTS, Denoiser, DenoiserConfig, mlp
from dosmatgen_core.model.diffusion import Batch, Schedules, corrupt


class DOSGuide(nn.Module):
    def __init__(self, cfg: DenoiserConfig):
        super().__init__()
        if cfg.types != "d3pm":
            raise ValueError("the DOS guide reads D3PM type tokens: build it from a d3pm denoiser config")
        self.cfg = cfg
        self.trunk = Denoiser(cfg)
        self.head = mlp(cfg.hidden, cfg.hidden, DOS_POINTS)

    def forward(self, a_t, x_t, l_t, t, batch) -> torch.Tensor:
        """Standardised site DOS of every atom (N, 400) from the noisy state at time t ∈ [0, 1]."""
        h, _ = self.trunk.encode(a_t, x_t, l_t, t, batch)
        return self.head(h)


def draw_times(B: int, sch: Schedules, gen: torch.Generator | None, device, power: float = 2.0) -> torch.Tensor:
    """t = ⌈T·u^power⌉: biased towards low noise, where a DOS can be read off the structure and
    where guidance decides the final environment (median T/4 at power 2)."""
    u = torch.rand(B, generator=gen, device=device)
    return (u ** power * sch.T).ceil().long().clamp(1, sch.T)


def guide_loss(guide: DOSGuide, b: Batch, sch: Schedules, gen: torch.Generator | None = None,
               t: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error of the standardised DOS over the labelled atoms of a noised batch."""
    if t is None:
        t = draw_times(b.n_crystals, sch, gen, b.z.device)
    c = corrupt(b, sch, "d3pm", gen, t)
    pred = guide(c.a_t, c.x_t, c.l_t, c.t.float() / sch.T, b.batch)
    err = F.mse_loss(pred, b.dos, reduction="none").mean(-1)
    return (err * b.has_dos).sum() / b.has_dos.sum().clamp(min=1)


@dataclass
class LoadedGuide:
    model: DOSGuide
    dos_mean: np.ndarray
    dos_std: np.ndarray
    card: dict
    path: Path


def load_guide(path: str | Path, device: str = "cpu", trust: bool = False) -> LoadedGuide:
    """Load a DOS guide: a shipped one, or with trust=True any file whose card matches it."""
    blob, card, _ = read_checkpoint(path, trust, device, kind="DOS guide", train_verb="train-guide")
    with building(path, "DOS guide"):
        guide = DOSGuide(DenoiserConfig(**blob["config"])).to(device)
        guide.load_state_dict(blob["state_dict"])
        mean, std = blob["dos_mean"].numpy(), blob["dos_std"].numpy()
    guide.eval()
    return LoadedGuide(guide, mean, std, card, Path(path))
