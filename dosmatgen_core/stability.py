"""Stability of candidates with CHGNet: relaxation, then energy above an ML convex hull.

The hull of a chemical system is built from CHGNet energies of (i) every structure of the shared
MP tables inside that system (static energies: they are DFT-relaxed already), (ii) the reference
database rows inside it, and (iii) CHGNet-relaxed elemental reference crystals (ASE's reference
states), since the tables hold elemental structures for only 27 elements. Energies are computed
once and cached in an ASE database. This is an ML hull, not the Materials Project hull.
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from chgnet.model import CHGNet
        return CHGNet.load(verbose=False)


def relax(s: Structure, steps: int = RELAX_STEPS, fmax: float = RELAX_FMAX) -> dict:
    """Positions and cell relaxed with CHGNet (FIRE, capped steps); energy per atom in eV."""
    from chgnet.model import StructOptimizer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = StructOptimizer(model=chgnet()).relax(s, steps=steps, fmax=fmax, relax_cell=True, verbose=False)
    traj = r["trajectory"]
    final = r["final_structure"]
    return {"structure": final, "energy_per_atom": float(traj.energies[-1]) / len(final),
            "steps": len(traj.energies), "converged": len(traj.energies) < steps}


def static_energy(s: Structure) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(chgnet().predict_structure(s)["e"])      # eV/atom


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

    def _energy(self, key: str, s: Structure, relax_it: bool = False) -> float:
        e = self._cached(key)
        if e is None:
            e = relax(s)["energy_per_atom"] if relax_it else static_energy(s)
            from pymatgen.io.ase import AseAtomsAdaptor
            with self._lock:
                self.db.write(AseAtomsAdaptor.get_atoms(s), key=key, e_per_atom=float(e), relaxed=relax_it)
        return e

    def _known(self, elements: set[str]) -> list[tuple[str, Structure]]:
        out = []
        for mid, els, s in _mp_index():
            if els <= elements:
                out.append((mid, s))
        if self.db_url:
            from .store import open_db
            from .structures import to_structure
            for row in open_db(self.db_url).db.select():
                if set(row.symbols) <= elements:
                    out.append((row.material_id, to_structure(row.toatoms())))
        return out

    def entries(self, elements: set[str]):
        """PDEntries of the chemical system (elements' references included)."""
        from ase.build import bulk
        from pymatgen.analysis.phase_diagram import PDEntry
        from pymatgen.io.ase import AseAtomsAdaptor
        ents = []
        for el in sorted(elements):
            try:
                s = AseAtomsAdaptor.get_structure(bulk(el))
            except Exception:
                continue     # no reference state in ASE; the MP tables may still hold one
            e = self._energy(f"element:{el}", s, relax_it=True)
            ents.append(PDEntry(s.composition, e * len(s), name=f"{el} (ASE reference, CHGNet-relaxed)"))
        for mid, s in self._known(elements):
            e = self._energy(f"mp:{mid}", s)
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
    from .data import mp_structures
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
