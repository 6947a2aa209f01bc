"""Stability of candidates with CHGNet: relaxation, then energy above an ML convex hull.

The hull of a chemical system is built from CHGNet energies of (i) every structure of the shared
MP tables inside that system (static energies: they are DFT-relaxed already), (ii) the reference
database rows inside it (their CHGNet energies are computed once by `build-db` and stored in
the row), and (iii) CHGNet-relaxed elemental references for every element (ASE's reference
states, and the ground states ASE's `bulk` cannot build written out below), since the tables hold
elemental structures for only 27 elements. Energies of (i) and (iii) are computed once and cached
in an ASE database. This is an ML hull, not the Materials Project hull.
"""
from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, Structure

RELAX_STEPS = 100
RELAX_FMAX = 0.1      # eV/Å: capped relaxation, enough to take a candidate to its basin


@lru_cache(maxsize=1)
def chgnet():
    """The pretrained CHGNet shipped inside the chgnet wheel (no download)."""
    import contextlib
    import io
    # CHGNet.load prints its banner even with verbose=False: keep stdout clean for JSON output
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet
        return CHGNet.load(verbose=False)


def relax(s: Structure, steps: int = RELAX_STEPS, fmax: float = RELAX_FMAX, relax_cell: bool = True) -> dict:
    """Positions (and cell) relaxed with CHGNet (FIRE, capped steps); energy per atom in eV."""
    from chgnet.model import StructOptimizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = StructOptimizer(model=chgnet()).relax(s, steps=steps, fmax=fmax, relax_cell=relax_cell, verbose=False)
    traj = r["trajectory"]
    final = r["final_structure"]
    return {"structure": final, "energy_per_atom": float(traj.energies[-1]) / len(final),
            "steps": len(traj.energies), "converged": len(traj.energies) < steps}


def static_energy(s: Structure) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(chgnet().predict_structure(s)["e"])      # eV/atom


# Ground states that ase.build.bulk cannot build (it lacks their atomic basis), from the
# experimental structures: (space group, lattice, Wyckoff representatives). S (α-S8, 128 atoms)
# is left to the MP tables, which hold a sulfur structure.
_CRYSTAL_REFS = {
    "Ga": ("Cmce", ("orthorhombic", 4.5197, 7.6633, 4.5260), [0.0, 0.1549, 0.0810]),     # α-Ga
    "P": ("Cmce", ("orthorhombic", 3.3136, 10.478, 4.3763), [0.0, 0.10168, 0.08056]),    # black P
    "I": ("Cmce", ("orthorhombic", 7.18, 4.71, 9.81), [0.0, 0.1543, 0.1174]),            # solid I2
    "Se": ("P3_121", ("hexagonal", 4.3662, 4.9536), [0.2254, 0.0, 1 / 3]),              # trigonal Se
    "Te": ("P3_121", ("hexagonal", 4.4572, 5.929), [0.2636, 0.0, 1 / 3]),               # trigonal Te
    "Mn": ("Fm-3m", ("cubic", 3.62), [0.0, 0.0, 0.0]),   # γ-Mn: α-Mn has 58 atoms; ~0.07 eV/atom above it
    "B": ("R-3m", ("hexagonal", 4.908, 12.567), [0.11886, 0.88114, 0.89133], [0.19686, 0.80314, 0.02432]),  # α-B
}
# Gases: the molecule in a 12 Å box, positions relaxed at fixed cell (Å bond lengths); He and Rn,
# which ASE has no crystal for, as a lone atom (CHGNet sees no neighbour there: a rough value).
# Ne, Ar, Kr and Xe take ASE's fcc crystals.
_MOLECULE_REFS = {"H": 0.741, "N": 1.098, "O": 1.208, "F": 1.412, "Cl": 1.988, "Br": 2.281,
                  "He": None, "Rn": None}


def elemental_reference(el: str) -> tuple[Structure, bool] | None:
    """(structure, relax the cell?) of an element's reference state, or None if unknown."""
    from pymatgen.core import Lattice
    if el in _MOLECULE_REFS:
        d = _MOLECULE_REFS[el]
        coords = [[0, 0, 0]] if d is None else [[0, 0, 0], [0, 0, d]]
        return Structure(Lattice.cubic(12.0), [el] * len(coords), coords, coords_are_cartesian=True), False
    if el in _CRYSTAL_REFS:
        sg, (kind, *par), *sites = _CRYSTAL_REFS[el]
        lat = getattr(Lattice, kind)(*par)
        return Structure.from_spacegroup(sg, lat, [el] * len(sites), sites).get_primitive_structure(), True
    from ase.build import bulk
    from pymatgen.io.ase import AseAtomsAdaptor
    try:
        return AseAtomsAdaptor.get_structure(bulk(el)), True
    except Exception:
        return None


class Hull:
    """CHGNet energies of known structures, cached in an ASE SQLite database."""

    def __init__(self, cache_path: str | Path, db_url: str | None = None):
        from ase.db import connect
        self.cache_path = Path(cache_path)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(str(self.cache_path))
        self.db_url = db_url
        self._lock = threading.Lock()

    def _cached(self, key: str):
        rows = list(self.db.select(key=key))
        return rows[0].e_per_atom if rows else None

    def _energy(self, key: str, s: Structure, relax_it: bool = False, relax_cell: bool = True) -> float:
        e = self._cached(key)
        if e is None:
            e = relax(s, steps=300, relax_cell=relax_cell)["energy_per_atom"] if relax_it else static_energy(s)
            from pymatgen.io.ase import AseAtomsAdaptor
            with self._lock:
                self.db.write(AseAtomsAdaptor.get_atoms(s), key=key, e_per_atom=float(e), relaxed=relax_it)
        return e

    def _known(self, elements: set[str]) -> list[tuple[str, Structure, float | None]]:
        """(id, structure, stored CHGNet eV/atom or None) of known structures in the system."""
        out = []
        for mid, els, s in _mp_index():
            if els <= elements:
                out.append((mid, s, None))
        if self.db_url:
            from dosmatgen_core.labels.reference_db import open_db
            from dosmatgen_core.structures import to_structure
            for row in open_db(self.db_url).db.select():
                if set(row.symbols) <= elements:
                    out.append((row.material_id, to_structure(row.toatoms()), row.get("chgnet_energy")))
        return out

    def entries(self, elements: set[str]):
        """PDEntries of the chemical system (elements' references included)."""
        from pymatgen.analysis.phase_diagram import PDEntry
        ents = []
        for el in sorted(elements):
            ref = elemental_reference(el)
            if ref is None:
                continue     # no reference state known; the MP tables may still hold one
            s, cell = ref
            e = self._energy(f"element:{el}", s, relax_it=True, relax_cell=cell)
            ents.append(PDEntry(s.composition, e * len(s), name=f"{el} (reference state, CHGNet-relaxed)"))
        for mid, s, stored in self._known(elements):
            e = stored if stored is not None else self._energy(f"mp:{mid}", s)
            ents.append(PDEntry(s.composition, e * len(s), name=mid))
        return ents

    def e_above_hull(self, composition: Composition, energy_per_atom: float) -> tuple[float | None, str]:
        """eV/atom above the CHGNet hull of the known structures (negative: below it)."""
        els = {e.symbol for e in composition.elements}
        ents = self.entries(els)
        have = {e.symbol for ent in ents for e in ent.composition.elements if ent.composition.is_element}
        missing = els - have
        if missing:
            return None, f"no elemental reference for {', '.join(sorted(missing))}"
        return energy_above_hull(ents, composition, energy_per_atom), f"CHGNet hull of {len(ents)} known entries"


@lru_cache(maxsize=1)
def _mp_index():
    """(id, element set, structure) of the MP tables, for subsystem look-ups."""
    from dosmatgen_core.training.dataset import mp_structures
    return [(mid, {el.symbol for el in s.composition.elements}, s) for mid, s in mp_structures()]


def energy_above_hull(entries, composition: Composition, energy_per_atom: float) -> float:
    """eV/atom of a composition at this energy above the hull of `entries` (negative: below)."""
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    pd = PhaseDiagram(entries)
    cand = PDEntry(Composition(composition), energy_per_atom * Composition(composition).num_atoms)
    _, e = pd.get_decomp_and_e_above_hull(cand, allow_negative=True)
    return float(e)


def assess(s: Structure, hull: Hull, steps: int = RELAX_STEPS) -> dict:
    """Relax, then place on the hull. Never raises: failures come back as a reason."""
    try:
        r = relax(s, steps=steps)
        e_hull, note = hull.e_above_hull(r["structure"].composition, r["energy_per_atom"])
        return {"relaxed_cif": r["structure"].to(fmt="cif"), "chgnet_energy_per_atom": r["energy_per_atom"],
                "relax_steps": r["steps"], "relax_converged": r["converged"], "e_above_hull": e_hull,
                "hull_note": note, "stable_0.1": (e_hull is not None and e_hull <= 0.1)}
    except Exception as exc:
        return {"e_above_hull": None, "hull_note": f"stability check failed: {type(exc).__name__}: {exc}"[:300],
                "stable_0.1": None}
