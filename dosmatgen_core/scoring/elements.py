"""Each element's reference state: its known crystal (ASE's reference states, and the ground
states ASE's `bulk` cannot build written out below) or, for gases, its molecule. The stability
hull relaxes them as its elemental corners; novelty counts the crystals as known structures (the
MP tables hold only 32 elements' crystals)."""
from __future__ import annotations

from ase.build import bulk
from ase.data import chemical_symbols
from pymatgen.core import Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

ELEMENT_PREFIX = "element:"      # a known-structure id: 'element:Au' (the known-sites tables name it)

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
# which ASE has no crystal for, as a lone atom (the potential sees no neighbour there: a rough value).
# Ne, Ar, Kr and Xe take ASE's fcc crystals.
_MOLECULE_REFS = {"H": 0.741, "N": 1.098, "O": 1.208, "F": 1.412, "Cl": 1.988, "Br": 2.281,
                  "He": None, "Rn": None}


def elemental_reference(el: str) -> tuple[Structure, bool] | None:
    """(structure, relax the cell?) of an element's reference state, or None if unknown."""
    if el in _MOLECULE_REFS:
        d = _MOLECULE_REFS[el]
        coords = [[0, 0, 0]] if d is None else [[0, 0, 0], [0, 0, d]]
        return Structure(Lattice.cubic(12.0), [el] * len(coords), coords, coords_are_cartesian=True), False
    if el in _CRYSTAL_REFS:
        sg, (kind, *par), *sites = _CRYSTAL_REFS[el]
        lat = getattr(Lattice, kind)(*par)
        return Structure.from_spacegroup(sg, lat, [el] * len(sites), sites).get_primitive_structure(), True
    try:
        return AseAtomsAdaptor.get_structure(bulk(el)), True
    except Exception:
        return None


def element_crystals() -> tuple[tuple[str, Structure], ...]:
    """(id 'element:Au', crystal) of every element whose reference state is a crystal (gases and
    the lone atoms left out), for the novelty check."""
    out = []
    for el in chemical_symbols[1:]:
        if el in _MOLECULE_REFS or (ref := elemental_reference(el)) is None:
            continue
        out.append((f"{ELEMENT_PREFIX}{el}", ref[0]))
    return tuple(out)
