"""Stability of candidates with a universal ML potential: relaxation, then energy above an ML hull.

Two potentials, both shipped inside their wheels (no download): SevenNet-l3i5 (the default, F1
0.76 on Matbench Discovery) and CHGNet (F1 0.61, the option). The hull of a chemical system is
built with ONE potential from (i) every structure of the shared MP tables inside that system
(static energies: they are DFT-relaxed already), (ii) the reference database rows inside it, and
(iii) relaxed elemental references for every element (scoring/elements.py), since the tables hold elemental structures
for only 27 elements. SevenNet's energies are raw PBE and CHGNet's are MP2020-corrected, so the
two are never mixed: each potential has its own cache file (its name in the file name, and in
the database's metadata, checked on opening). This is an ML hull, not the Materials Project hull.
"""
from __future__ import annotations

import contextlib
import io
import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from ase.db import connect
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE
from chgnet.model import CHGNet
from chgnet.model.dynamics import CHGNetCalculator
from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
from pymatgen.core import Composition, Structure
from pymatgen.io.ase import AseAtomsAdaptor
from sevenn import _const as sevenn_const
from sevenn.calculator import SevenNetCalculator

from dosmatgen_core.scoring.elements import elemental_reference
from dosmatgen_core.structures import to_structure
from dosmatgen_core.training.dataset import mp_structures

RELAX_STEPS = 100
RELAX_FMAX = 0.1      # eV/Å: capped relaxation, enough to take a candidate to its basin

POTENTIALS = {"sevennet": "SevenNet-l3i5", "chgnet": "CHGNet"}     # name -> label in notes
DEFAULT_POTENTIAL = "sevennet"


def check_potential(potential: str) -> str:
    if potential not in POTENTIALS:
        raise ValueError(f"unknown stability potential {potential!r}: choose one of {', '.join(POTENTIALS)}")
    return potential


@lru_cache(maxsize=1)
def chgnet():
    """The pretrained CHGNet shipped inside the chgnet wheel (no download)."""
    # CHGNet.load prints its banner even with verbose=False: keep stdout clean for JSON output
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return CHGNet.load(verbose=False)


@lru_cache(maxsize=1)
def sevennet():
    """The SevenNet-l3i5 network shipped inside the sevenn wheel. Loaded from the wheel's file
    path, never by model name: a missing file must fail here, not start a download."""
    path = Path(sevenn_const.SEVENNET_l3i5)
    if not path.is_file():
        raise FileNotFoundError(f"SevenNet-l3i5 weights not found at {path} (they ship in the sevenn wheel)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # "no tensor-product accelerator": expected on CPU
        return SevenNetCalculator(model=str(path), device="cpu").model


def _loader(potential: str):
    return sevennet if check_potential(potential) == "sevennet" else chgnet


def load_potential(potential: str = DEFAULT_POTENTIAL):
    """The potential's network, loaded once per process."""
    return _loader(potential)()


def potential_loaded(potential: str = DEFAULT_POTENTIAL) -> bool:
    """Whether this process has loaded the potential's network (its first relaxation does)."""
    return _loader(potential).cache_info().currsize > 0


def calculator(potential: str = DEFAULT_POTENTIAL):
    """A fresh ASE calculator around the shared network (calculators hold per-call state, so
    threads never share one; the network itself is loaded once)."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        model = load_potential(potential)
        if potential == "sevennet":
            return SevenNetCalculator(model=model, file_type="model_instance", device="cpu")
        return CHGNetCalculator(model=model)


def _atoms(s: Structure, potential: str):
    atoms = AseAtomsAdaptor.get_atoms(s)
    atoms.calc = calculator(potential)
    return atoms


def relax(s: Structure, steps: int = RELAX_STEPS, fmax: float = RELAX_FMAX, relax_cell: bool = True,
          potential: str = DEFAULT_POTENTIAL) -> dict:
    """Positions (and cell) relaxed with the potential (FIRE, cell through ASE's Fréchet filter,
    capped steps); energy per atom in eV."""
    atoms = _atoms(s, potential)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        opt = FIRE(FrechetCellFilter(atoms) if relax_cell else atoms, logfile=None)
        converged = bool(opt.run(fmax=fmax, steps=steps))
        e = float(atoms.get_potential_energy())
    atoms.calc = None     # the structure carries no calculator results
    return {"structure": AseAtomsAdaptor.get_structure(atoms), "energy_per_atom": e / len(atoms),
            "steps": int(opt.nsteps), "converged": converged, "potential": potential}


def static_energy(s: Structure, potential: str = DEFAULT_POTENTIAL) -> float:
    """eV/atom of the structure as it is."""
    atoms = _atoms(s, potential)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(atoms.get_potential_energy()) / len(atoms)


def hull_cache_path(base: str | Path, potential: str) -> Path:
    """The cache file of one potential beside `base`: hull.db -> hull-sevennet.db."""
    base = Path(base)
    return base.with_name(f"{base.stem}-{check_potential(potential)}{base.suffix or '.db'}")


class Hull:
    """Energies of known structures with one potential, cached in an ASE SQLite database.

    cache_path: the base name; the file used is `hull_cache_path(cache_path, potential)`.
    """

    def __init__(self, cache_path: str | Path, db_url: str | None = None, potential: str = DEFAULT_POTENTIAL):
        self.potential = check_potential(potential)
        self.label = POTENTIALS[potential]
        self.cache_path = hull_cache_path(cache_path, potential)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = connect(str(self.cache_path))
        # the metadata names the potential: a renamed or copied file is refused, not mixed in
        meta = self.db.metadata
        if meta.get("potential", potential) != potential:
            raise ValueError(f"{self.cache_path} holds {meta['potential']} energies, not {potential}")
        if "potential" not in meta:
            self.db.metadata = {**meta, "potential": potential}
        self.db_url = db_url
        self._lock = threading.Lock()

    def _cached(self, key: str):
        rows = list(self.db.select(key=key))
        return rows[0].e_per_atom if rows else None

    def _energy(self, key: str, s: Structure, relax_it: bool = False, relax_cell: bool = True) -> float:
        e = self._cached(key)
        if e is None:
            e = (relax(s, steps=300, relax_cell=relax_cell, potential=self.potential)["energy_per_atom"]
                 if relax_it else static_energy(s, self.potential))
            with self._lock:
                self.db.write(AseAtomsAdaptor.get_atoms(s), key=key, e_per_atom=float(e), relaxed=relax_it)
        return e

    def _known(self, elements: set[str]) -> list[tuple[str, str, Structure, float | None]]:
        """(cache key, id, structure, stored eV/atom or None) of known structures in the system.
        Only CHGNet energies are stored in the reference db rows; SevenNet's are computed here."""
        out = []
        for mid, els, s in _mp_index():
            if els <= elements:
                out.append((f"mp:{mid}", mid, s, None))
        if self.db_url:
            # read with ASE directly: reference_db imports this module (it stores CHGNet energies)
            for row in connect(self.db_url).select():
                if set(row.symbols) <= elements:
                    stored = row.get("chgnet_energy") if self.potential == "chgnet" else None
                    out.append((f"db:{row.material_id}", row.material_id, to_structure(row.toatoms()), stored))
        return out

    def entries(self, elements: set[str]) -> list[PDEntry]:
        """PDEntries of the chemical system (elements' references included)."""
        ents = []
        for el in sorted(elements):
            ref = elemental_reference(el)
            if ref is None:
                continue     # no reference state known; the MP tables may still hold one
            s, cell = ref
            e = self._energy(f"element:{el}", s, relax_it=True, relax_cell=cell)
            ents.append(PDEntry(s.composition, e * len(s), name=f"{el} (reference state, {self.label}-relaxed)"))
        for key, mid, s, stored in self._known(elements):
            e = stored if stored is not None else self._energy(key, s)
            ents.append(PDEntry(s.composition, e * len(s), name=mid))
        return ents

    def e_above_hull(self, composition: Composition, energy_per_atom: float,
                     exclude: tuple[str, ...] = ()) -> tuple[float | None, str]:
        """eV/atom above this potential's hull of the known structures (negative: below it).
        exclude: entry names left out (a known structure measured against the others)."""
        els = {e.symbol for e in composition.elements}
        ents = [e for e in self.entries(els) if e.name not in exclude]
        have = {e.symbol for ent in ents for e in ent.composition.elements if ent.composition.is_element}
        missing = els - have
        if missing:
            return None, f"no elemental reference for {', '.join(sorted(missing))}"
        return energy_above_hull(ents, composition, energy_per_atom), f"{self.label} hull of {len(ents)} known entries"


@lru_cache(maxsize=1)
def _mp_index():
    """(id, element set, structure) of the MP tables, for subsystem look-ups."""
    return [(mid, {el.symbol for el in s.composition.elements}, s) for mid, s in mp_structures()]


def energy_above_hull(entries, composition: Composition, energy_per_atom: float) -> float:
    """eV/atom of a composition at this energy above the hull of `entries` (negative: below)."""
    pd = PhaseDiagram(entries)
    cand = PDEntry(Composition(composition), energy_per_atom * Composition(composition).num_atoms)
    _, e = pd.get_decomp_and_e_above_hull(cand, allow_negative=True)
    return float(np.asarray(e))


def assess(s: Structure, hull: Hull, steps: int = RELAX_STEPS) -> dict:
    """Relax with the hull's potential, then place on that hull. Never raises: failures come
    back as a reason."""
    try:
        r = relax(s, steps=steps, potential=hull.potential)
        e_hull, note = hull.e_above_hull(r["structure"].composition, r["energy_per_atom"])
        return {"relaxed_cif": r["structure"].to(fmt="cif"), "energy_per_atom": r["energy_per_atom"],
                "potential": hull.potential, "relax_steps": r["steps"], "relax_converged": r["converged"],
                "e_above_hull": e_hull, "hull_note": note, "stable_0.1": (e_hull is not None and e_hull <= 0.1)}
    except Exception as exc:
        return {"e_above_hull": None, "potential": hull.potential,
                "hull_note": f"stability check failed: {type(exc).__name__}: {exc}"[:300], "stable_0.1": None}
