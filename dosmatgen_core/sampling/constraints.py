"""Per-structure constraints of a sampling batch, as masks over the flat atom batch.

- template: a structure starts from a known crystal noised to level t_start = strength·T; until
  then its state is re-drawn from the forward process of the template at every step;
- pinned atoms: template atoms whose position (and element) is held to the template throughout;
- fixed elements: atoms whose element is chosen (held known in D3PM, noised one-hot otherwise).

A batch without any of them makes no random draws here, so plain sampling is unaffected.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from ase.data import atomic_numbers, chemical_symbols

from dosmatgen_core.labels.labeller import supported_elements
from dosmatgen_core.model.denoiser import N_TYPES
from dosmatgen_core.model.diffusion import Schedules, one_hot
from dosmatgen_core.structures import ACTINIDES, LANTHANIDES
from dosmatgen_core.training.dataset import standard_lattice


@lru_cache(maxsize=1)
def dft_elements() -> frozenset[int]:
    """Atomic numbers the DFT recipe can calculate (the labeller's supported elements): the only
    ones the sampler proposes, since a candidate with any other could never be DFT-checked."""
    return frozenset(atomic_numbers[s] for s in supported_elements())


def check_element(z: int) -> int:
    """z, or a ValueError naming the element and why the DFT recipe cannot calculate it."""
    if z in dft_elements():
        return z
    sym = chemical_symbols[z] if 0 < z < len(chemical_symbols) else f"Z={z}"
    if sym in LANTHANIDES or sym in ACTINIDES:
        why = "lanthanides and actinides are left out: plain PBE is poor for f electrons"
    else:
        why = "gpaw-data has no PBE setup with a dzp basis for it"
    raise ValueError(f"element {sym} cannot be used: the DFT recipe cannot calculate it ({why}), so a candidate "
                     "with it could never be checked; choose another element")


def check_kept_elements(specs) -> None:
    """Refuse specs whose fixed or template elements (kept into the output) the DFT recipe cannot
    calculate; modes.py refuses them first, this catches specs built by hand."""
    for s in specs:
        kept = [s.fixed_z[s.fixed_z > 0]] + ([s.template.numbers] if s.template is not None else [])
        for z in np.unique(np.concatenate(kept)).tolist():
            check_element(int(z))


def allowed_elements(device) -> torch.Tensor:
    """(N_TYPES,) bool over Z − 1: the elements the sampler may propose."""
    allowed = torch.zeros(N_TYPES, dtype=torch.bool, device=device)
    allowed[[z - 1 for z in sorted(dft_elements())]] = True
    return allowed


@dataclass
class Constraints:
    batch: torch.Tensor       # (N,) crystal index of each atom
    d3pm: bool                # types are tokens (0 = MASK), not one-hot vectors
    fixed_z: torch.Tensor     # (N,) chosen element, 0 = free
    has_tpl: torch.Tensor     # (B,) the crystal starts from a template
    t_start: torch.Tensor     # (B,) step from which a template crystal is released (T if none)
    tpl_l: torch.Tensor       # (B, 3, 3) clean template lattice / N^(1/3)
    tpl_x: torch.Tensor       # (N, 3) clean template coordinates
    tpl_a: torch.Tensor       # (N, N_TYPES) clean template one-hot types
    pinned: torch.Tensor      # (N,) bool

    @classmethod
    def build(cls, specs, batch: torch.Tensor, scale: torch.Tensor, T: int, d3pm: bool) -> Constraints:
        """From SampleSpecs (one per crystal of the batch); scale is (B, 1, 1) N^(1/3)."""
        dev = batch.device
        B, N = len(specs), batch.shape[0]
        fixed_z = torch.tensor(np.concatenate([s.fixed_z for s in specs]), dtype=torch.long, device=dev)
        has_tpl = torch.tensor([s.template is not None for s in specs], device=dev)
        t_start = torch.tensor([int(round(s.strength * T)) if s.template is not None else T for s in specs],
                               device=dev)
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
        return cls(batch, d3pm, fixed_z, has_tpl, t_start, tpl_l, tpl_x, tpl_a, pinned)

    @property
    def fixed(self) -> torch.Tensor:
        return self.fixed_z > 0

    @property
    def active(self) -> bool:
        return bool(self.has_tpl.any() or self.pinned.any() or self.fixed.any())

    def noised_template(self, t: int, sch: Schedules, gen: torch.Generator):
        """Forward-process draw at level t of the template (and of the fixed elements)."""
        dev = self.batch.device
        B, N = self.tpl_l.shape[0], self.tpl_x.shape[0]
        ab = sch.alpha_bar[t]
        l = ab.sqrt() * self.tpl_l + (1 - ab).sqrt() * torch.randn(B, 3, 3, generator=gen, device=dev)
        x = torch.remainder(self.tpl_x + sch.sigma[t] * torch.randn(N, 3, generator=gen, device=dev), 1.0)
        if self.d3pm:
            # absorbing process: masked with probability 1 − ᾱ_t; fixed elements stay known
            tpl_z = self.tpl_a.argmax(1) + 1
            keep = torch.rand(N, generator=gen, device=dev) < ab
            return l, x, torch.where(keep, tpl_z, torch.zeros_like(tpl_z)), self.fixed_z
        a = ab.sqrt() * self.tpl_a + (1 - ab).sqrt() * torch.randn(N, N_TYPES, generator=gen, device=dev)
        a_fixed = one_hot(self.fixed_z.clamp(min=1))
        af = ab.sqrt() * a_fixed + (1 - ab).sqrt() * torch.randn(N, N_TYPES, generator=gen, device=dev)
        return l, x, a, af

    def impose(self, l, x, a, t: int, sch: Schedules, gen: torch.Generator):
        """Re-impose templates before their start time, pinned atoms, and fixed elements."""
        if not self.active:
            return l, x, a
        tl, tx, ta, af = self.noised_template(t, sch, gen)
        waiting = self.has_tpl & (t >= self.t_start)          # template crystals not yet released
        l = torch.where(waiting[:, None, None], tl, l)
        atom_wait = waiting[self.batch] | self.pinned
        x = torch.where(atom_wait[:, None], tx, x)
        if self.d3pm:
            # pinned atoms keep their element as a known (unmasked) token
            a = torch.where(waiting[self.batch], ta, a)
            a = torch.where(self.pinned, self.tpl_a.argmax(1) + 1, a)
            return l, x, torch.where(self.fixed, af, a)
        a = torch.where(atom_wait[:, None], ta, a)
        a = torch.where(self.fixed[:, None], af, a)
        return l, x, a

    def final_types(self, z: torch.Tensor) -> torch.Tensor:
        """Atomic numbers at t = 0 with the fixed elements set exactly."""
        return torch.where(self.fixed, self.fixed_z, z)
