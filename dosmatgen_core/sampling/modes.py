"""What a user asks for, checked, and turned into sampler input.

Four modes, each a function returning validated `SampleSpec`s (one per candidate):
- `masked`: N new atoms; the listed atoms carry target DOS curves, the rest are free.
- `template`: start from an existing structure noised to `strength`; condition some of its atoms,
  optionally pin others (species and positions held to the template).
- `fixed_type`: like masked, and the conditioned atoms (or any listed) keep a chosen element.
- `unconditional`: the baseline.
Every error is a ValueError whose message says what to change; nothing is generated on error.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from dosmatgen_core import dos as dosmod
from dosmatgen_core.sampling.constraints import check_element
from dosmatgen_core.sampling.sampler import SampleSpec
from dosmatgen_core.structures import MAX_ATOMS, Crystal

MIN_ATOMS = 1


def element_number(symbol) -> int:
    """Atomic number of a symbol or number; refused unless the DFT recipe can calculate it."""
    if isinstance(symbol, (int, np.integer)):
        z = int(symbol)
        if not 1 <= z < len(chemical_symbols):
            raise ValueError(f"unknown element number {z}")
        return check_element(z)
    s = str(symbol).strip()
    s = s[:1].upper() + s[1:].lower()
    if s not in atomic_numbers or s == "X":
        raise ValueError(f"unknown element '{symbol}'")
    return check_element(atomic_numbers[s])


def _check_n(n_atoms) -> int:
    if not isinstance(n_atoms, (int, np.integer)) or isinstance(n_atoms, bool):
        raise ValueError(f"number of atoms must be a whole number, got {n_atoms!r}")
    if not MIN_ATOMS <= n_atoms <= MAX_ATOMS:
        raise ValueError(f"number of atoms must be between {MIN_ATOMS} and {MAX_ATOMS}, got {n_atoms}")
    return int(n_atoms)


def _targets(n_atoms: int, targets: Mapping[int, Sequence[float]], require: bool) -> tuple[np.ndarray, np.ndarray]:
    dos = np.zeros((n_atoms, dosmod.NPTS), np.float32)
    mask = np.zeros(n_atoms, bool)
    for i, g in (targets or {}).items():
        if not isinstance(i, (int, np.integer)) or not 0 <= i < n_atoms:
            raise ValueError(f"conditioned atom index {i} is outside 0..{n_atoms - 1}")
        dos[i] = dosmod.validate_on_grid(g, name=f"target DOS of atom {i}")
        mask[i] = True
    if require and not mask.any():
        raise ValueError("no atom carries a target DOS: condition at least one atom (or use unconditional mode)")
    return dos, mask


def _fixed(n_atoms: int, fixed: Mapping[int, str | int]) -> np.ndarray:
    out = np.zeros(n_atoms, np.int64)
    for i, el in (fixed or {}).items():
        if not isinstance(i, (int, np.integer)) or not 0 <= i < n_atoms:
            raise ValueError(f"fixed-type atom index {i} is outside 0..{n_atoms - 1}")
        try:
            out[i] = element_number(el)
        except ValueError as e:
            raise ValueError(f"fixed-type atom {i}: {e}") from None
    return out


def _count(n_candidates) -> int:
    if not isinstance(n_candidates, (int, np.integer)) or not 1 <= n_candidates <= 1000:
        raise ValueError(f"number of candidates must be between 1 and 1000, got {n_candidates!r}")
    return int(n_candidates)


def masked(n_atoms: int, targets: Mapping[int, Sequence[float]], n_candidates: int = 1,
           fixed: Mapping[int, str | int] | None = None) -> list[SampleSpec]:
    n = _check_n(n_atoms)
    dos, mask = _targets(n, targets, require=True)
    fz = _fixed(n, fixed or {})
    return [SampleSpec(n, dos, mask, fz, tag={"mode": "masked"}) for _ in range(_count(n_candidates))]


def fixed_type(n_atoms: int, targets: Mapping[int, Sequence[float]], fixed: Mapping[int, str | int],
               n_candidates: int = 1) -> list[SampleSpec]:
    if not fixed:
        raise ValueError("fixed-type mode needs at least one atom with a chosen element")
    specs = masked(n_atoms, targets, n_candidates, fixed)
    for s in specs:
        s.tag["mode"] = "fixed_type"
    return specs


def unconditional(n_atoms: int, n_candidates: int = 1) -> list[SampleSpec]:
    n = _check_n(n_atoms)
    return [SampleSpec(n, np.zeros((n, dosmod.NPTS), np.float32), np.zeros(n, bool), np.zeros(n, np.int64),
                       tag={"mode": "unconditional"}) for _ in range(_count(n_candidates))]


def template(crystal: Crystal, strength: float, targets: Mapping[int, Sequence[float]],
             pinned: Sequence[int] = (), n_candidates: int = 1) -> list[SampleSpec]:
    n = _check_n(len(crystal.numbers))
    if not isinstance(strength, (int, float)) or not 0 < float(strength) <= 1:
        raise ValueError(f"template strength must be in (0, 1], got {strength!r}")
    dos, mask = _targets(n, targets, require=True)
    pin = np.zeros(n, bool)
    for i in pinned:
        if not 0 <= i < n:
            raise ValueError(f"pinned atom index {i} is outside 0..{n - 1}")
        if mask[i]:
            raise ValueError(f"atom {i} is both conditioned and pinned; a pinned atom cannot change, "
                             "so condition it or pin it, not both")
        pin[i] = True
    for i, z in enumerate(crystal.numbers):
        try:
            element_number(int(z))
        except ValueError as e:
            raise ValueError(f"template atom {i}: {e}") from None
    return [SampleSpec(n, dos, mask, np.zeros(n, np.int64), template=crystal, strength=float(strength),
                       pinned=pin, tag={"mode": "template"}) for _ in range(_count(n_candidates))]
