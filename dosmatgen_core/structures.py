"""Reading, validating and converting crystal structures.

pymatgen `Structure` is the domain object; ASE `Atoms` is what GPAW and the ASE database take;
(A, X, L) arrays are what the model takes. Every conversion lives here.
"""
from __future__ import annotations

import csv
import difflib
import gzip
import io
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from ase import Atoms
from ase.build import niggli_reduce
from ase.data import atomic_numbers, chemical_symbols
from ase.io import read, write
from pymatgen.core import Element, Lattice, Structure
from pymatgen.io.ase import AseAtomsAdaptor

LANTHANIDES = frozenset(chemical_symbols[57:72])   # La..Lu: PBE without U is poor for 4f
ACTINIDES = frozenset(chemical_symbols[89:104])    # Ac..Lr: no PAW/basis data
MAX_ATOMS = 20
MAX_UPLOAD_BYTES = 2 * 2**20    # a structure file larger than this is refused before it is parsed
MAX_UPLOAD_ATOMS = 500          # ... and a cell with more atoms after it is
# Å³ per atom: well below any crystal (diamond 5.7). A generated cell collapsed under it has
# hundreds of atoms per atom within the cutoff, and CHGNet's angle graph grows with the square of
# that (a 4-atom cell at 0.4 Å³/atom already takes 1.4 GB and 11 s): such cells are not scored,
# and the sampler draws them again.
MIN_VOLUME_PER_ATOM = 2.0


class StructureError(ValueError):
    """A structure that cannot be used; the message says why and what to do."""


def _check_ordered_known(s: Structure, source: str) -> Structure:
    if len(s) == 0:
        raise StructureError(f"{source}: the structure has no atoms")
    if not s.is_ordered:
        bad = next(site for site in s if not site.is_ordered)
        raise StructureError(
            f"{source}: partial occupancy at a {bad.species} site; only ordered structures "
            "(every site fully occupied by one element) can be used")
    for site in s:
        sp = site.specie
        if not isinstance(sp, Element) and not hasattr(sp, "element"):
            # pymatgen's placeholder species print as 'Qq0+': the user wrote 'Qq'
            raise StructureError(f"{source}: unknown element '{getattr(sp, 'symbol', sp)}'")
        sym = getattr(sp, "symbol", str(sp))
        if sym not in atomic_numbers or sym == "X":
            raise StructureError(f"{source}: unknown element '{sym}'")
    if s.volume <= 1e-6:
        raise StructureError(f"{source}: the lattice has zero volume")
    return s


CIF_CELL_TAGS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
                 "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")


def poscar_short(text: str) -> str:
    """What a cut-short POSCAR lacks ('declares 4 atoms (3 + 1) but gives 3 positions'), or "" when
    its header cannot be read this far (pymatgen then says what it can) or nothing is missing.
    pymatgen's reader fails on such a file with 'list index out of range'."""
    lines = [ln.split() for ln in text.splitlines()]
    try:
        k = 5 + (not lines[5][0].lstrip("+-").isdigit())       # VASP 5: a line of element symbols first
        counts = [int(x) for x in lines[k]]
        k += 1 + (lines[k + 1][0][0] in "sS")                   # Selective dynamics
        if lines[k][0][0] not in "dDcCkK":                      # Direct / Cartesian
            return ""
    except (IndexError, ValueError):
        return ""
    given = sum(1 for ln in lines[k + 1:k + 1 + sum(counts)] if len(ln) >= 3)
    if given >= sum(counts):
        return ""
    return (f"declares {sum(counts)} atoms ({' + '.join(map(str, counts))}) but gives {given} position"
            f"{'s' * (given != 1)}")


def cif_tags(text: str) -> set[str]:
    """The tags a CIF's lines start with, in lower case."""
    return {w.lower() for line in text.splitlines() for w in line.split()[:1] if w.startswith("_")}


def cif_missing_tags(text: str) -> list[str]:
    """The CIF tags a crystal needs that the text lacks: the six cell parameters, and the atoms'
    positions (fractional or Cartesian) with their element (type symbol or label). pymatgen's
    reader fails on such a file with whatever broke inside it ('integer modulo by zero')."""
    tags = cif_tags(text)
    missing = [t for t in CIF_CELL_TAGS if t not in tags]
    for axis in "xyz":
        if f"_atom_site_fract_{axis}" not in tags and f"_atom_site_cartn_{axis}" not in tags:
            missing.append(f"_atom_site_fract_{axis}")
    if not tags & {"_atom_site_type_symbol", "_atom_site_label"}:
        missing.append("_atom_site_type_symbol")
    return missing


def cif_unknown_symbols(text: str) -> list[str]:
    """The file's `_atom_site_type_symbol` entries that name no element ('Sx'; an oxidation state
    as in 'Sr2+' or 'O2-' is allowed). pymatgen's reader takes the first letter of a symbol it does
    not know ('Sx' became S, silently), and ASE's then fails, so the file's atom order was lost too."""
    try:
        from ase.io.cif import parse_cif
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            symbols = [str(x) for block in parse_cif(io.StringIO(text)) for x in (block.get("_atom_site_type_symbol") or [])]
    except Exception:       # a file ASE cannot parse is the readers' business below
        return []
    def known(sym: str) -> bool:
        # the letters before a charge ('Fe3+', 'Fe+3', 'O-2'), as the periodic table writes them: the
        # two readers part on 'FE' (ASE: F, pymatgen: Fe) and on CIF's unknown '?' (pymatgen drops
        # the atom); D and T are hydrogen to both
        m = re.match(r"\s*([A-Za-z]+)", sym)
        return m is not None and (m[1] in atomic_numbers and m[1] != "X" or m[1] in ("D", "T"))
    return list(dict.fromkeys(sym for sym in symbols if not known(sym)))


def read_structure(text: str, fmt: str = "cif", source: str = "input", strict_order: bool = False) -> Structure:
    """Parse CIF or POSCAR text into an ordered pymatgen Structure, or raise StructureError.
    strict_order: a CIF whose file order cannot be kept (in_file_order) is refused (files people give)."""
    if not isinstance(text, str) or not text.strip():
        raise StructureError(f"{source}: the file is empty")
    if len(text) > MAX_UPLOAD_BYTES:
        raise StructureError(f"{source}: {len(text) / 2**20:.1f} MB of text; structure files of at most "
                             f"{MAX_UPLOAD_BYTES // 2**20} MB are read")
    fmt = fmt.lower()
    if fmt not in ("cif", "poscar"):
        raise StructureError(f"{source}: unsupported format '{fmt}' (use CIF or POSCAR)")
    if fmt == "cif" and (missing := cif_missing_tags(text)):
        if len(missing) == len(CIF_CELL_TAGS) + 4:      # not one tag a crystal needs
            raise StructureError(f"{source}: could not read the CIF file: it has no cell or atom-site tags, "
                                 "so it is not a CIF")
        tags = cif_tags(text)
        # a tag the file has that is close to a missing one, and is no tag a crystal needs itself
        spare = tags - set(CIF_CELL_TAGS) - {f"_atom_site_{k}" for k in
                                              ("fract_x", "fract_y", "fract_z", "cartn_x", "cartn_y", "cartn_z",
                                               "type_symbol", "label")}
        near = [f"{got} for {want}" for want in missing for got in difflib.get_close_matches(want, spare, 1, 0.85)]
        raise StructureError(f"{source}: could not read the CIF file: it lacks {', '.join(missing)} "
                             + (f"(misspelled? it has {'; '.join(near)})" if near else "(is it cut short?)"))
    if fmt == "poscar" and (short := poscar_short(text)):
        raise StructureError(f"{source}: could not read the POSCAR file: it {short} (is it cut short?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = Structure.from_str(text, fmt=fmt)
    except Exception as exc:  # pymatgen raises many types for bad files
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StructureError(f"{source}: could not read the {fmt.upper()} file (the reader said: {msg})") from None
    if len(s) > MAX_UPLOAD_ATOMS:
        raise StructureError(f"{source}: {len(s)} atoms; cells of at most {MAX_UPLOAD_ATOMS} atoms are read")
    s = _check_ordered_known(s, source)
    if fmt != "cif":
        return s
    try:
        return in_file_order(s, text, strict=strict_order)
    except StructureError as exc:
        raise StructureError(f"{source}: {exc}") from None


def in_file_order(s: Structure, cif: str, strict: bool = False) -> Structure:
    """`s` (pymatgen's reading of `cif`) with its sites in the order the file lists them.

    pymatgen's CIF reader regroups sites by element, so site i of what it returns is not site i
    of the file; ASE's reader keeps the file's order. Site indices tie DOS rows to atoms, so every
    stored CIF is read back in file order: pymatgen's sites (its lattice, its coordinates) are
    permuted to ASE's order, matched by element and fractional position. strict: where ASE cannot
    read the file, or the two readers do not hold the same atoms, raise StructureError instead of
    keeping pymatgen's order without a word.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = atoms_from_cif(cif)
    except Exception as exc:
        if strict:
            why = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
            raise StructureError(f"its atoms cannot be kept in the file's order (ASE cannot read it: {why})") from None
        return s          # ASE cannot read it; pymatgen's order is the only one there is
    if len(ref) != len(s):
        # the readers expand symmetry differently: no common order to keep
        if strict:
            raise StructureError(f"its atoms cannot be kept in the file's order (ASE reads {len(ref)} atoms, "
                                 f"pymatgen {len(s)}: overlapping or partly occupied sites?)")
        return s
    want = np.mod(ref.get_scaled_positions(wrap=True), 1.0)
    have = np.mod(s.frac_coords, 1.0)
    d = want[:, None, :] - have[None, :, :]
    d = np.abs(d - np.round(d)).max(-1)                           # periodic distance, (ase, pmg)
    same = np.array(ref.get_chemical_symbols())[:, None] == np.array([site.specie.symbol for site in s])[None, :]
    d = np.where(same, d, np.inf)
    perm = d.argmin(1)
    if len(set(perm.tolist())) != len(s) or not np.all(d[np.arange(len(s)), perm] < 1e-3):
        if strict:
            raise StructureError("its atoms cannot be kept in the file's order (ASE and pymatgen place them "
                                 "differently)")
        return s
    return Structure.from_sites([s[int(j)] for j in perm])


def to_atoms(s: Structure) -> Atoms:
    return AseAtomsAdaptor.get_atoms(s)


def to_structure(atoms: Atoms) -> Structure:
    return AseAtomsAdaptor.get_structure(atoms)


def niggli_atoms(s: Structure) -> Atoms:
    """The cell GPAW calculates: ASE's Niggli reduction of the structure, as RECIPE.md says."""
    atoms = to_atoms(s)
    niggli_reduce(atoms)
    atoms.wrap()
    return atoms


def atoms_to_cif(atoms: Atoms) -> str:
    """CIF text whose site order, read back by ase.io.read, is the order of `atoms`."""
    buf = io.BytesIO()
    write(buf, atoms, format="cif")
    return buf.getvalue().decode()


def atoms_from_cif(text: str) -> Atoms:
    """Site order as ase.io.read gives it: the order the labels use. The first data block, as
    pymatgen's reader takes it (ASE's default is the last: a two-phase file was read as two cells)."""
    return read(io.StringIO(text), format="cif", index=0)


def elements_of(s: Structure) -> list[str]:
    return sorted({site.specie.symbol for site in s})


# ---- model arrays ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Crystal:
    """(A, X, L): atomic numbers, fractional coordinates in [0, 1), lattice rows in Å."""
    numbers: np.ndarray   # (N,) int
    frac: np.ndarray      # (N, 3) float
    lattice: np.ndarray   # (3, 3) float, rows are a, b, c

    @classmethod
    def from_structure(cls, s: Structure) -> "Crystal":
        return cls(np.array(s.atomic_numbers, dtype=np.int64),
                   np.mod(s.frac_coords, 1.0), np.array(s.lattice.matrix, dtype=float))

    def to_structure(self) -> Structure:
        return Structure(Lattice(self.lattice), [int(z) for z in self.numbers], np.mod(self.frac, 1.0))


# ---- the shared Materials Project tables ----------------------------------------------------

def iter_mp_csv(path: str | Path) -> Iterator[dict]:
    """Rows of the shared MP tables (mp20 / mpts52) as dicts; `cif` holds P1 CIF text."""
    csv.field_size_limit(10**8)
    with gzip.open(path, "rt", newline="") as fh:
        yield from csv.DictReader(fh)
