"""The reference-material database: an ASE database of labelled structures.

One row per labelled structure: the calculated cell, its per-site DOS (row i = site i),
total energy, E_F, MP id, formula, space group and provenance. SQLite by default; any ASE db
URL (postgresql://...) works the same. Built deterministically from the label shards.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
from ase.db import connect
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dosmatgen_core import dos as dosmod
from dosmatgen_core.checks import NotFound, near
from dosmatgen_core.labels import material_query
from dosmatgen_core.labels.labeller import iter_label_lines
from dosmatgen_core.names import GENERATED_PREFIX
from dosmatgen_core.scoring import prototypes
from dosmatgen_core.scoring.prototypes import structure_type
from dosmatgen_core.structures import atoms_from_cif, to_structure

BUILD_EPOCH = 1.0  # fixed ctime/mtime in SQLite builds: identical shards give identical rows


def listing_key(row: dict) -> tuple:
    """The order materials are listed in for people: known materials before the DFT-checked
    candidates that became labels (by id alone, 'gen:' sorted first and a search for Ni showed 50
    of them before Ni itself), then the fewest elements and the smallest cell, then the id."""
    return row["material_id"].startswith(GENERATED_PREFIX), len(row["elements"]), row["natoms"], row["material_id"]


@dataclass(frozen=True)
class Reference:
    """One reference material as the app and the samplers see it."""
    material_id: str
    formula: str
    spacegroup: str
    atoms: object           # ase.Atoms, the labelled cell
    site_dos: np.ndarray    # (N, 400) states/eV per site, spins summed
    e_fermi: float
    energy: float

    @property
    def symbols(self) -> list[str]:
        return self.atoms.get_chemical_symbols()


def _spacegroup(atoms, symprec: float = 0.1) -> tuple[str, int]:
    try:
        sga = SpacegroupAnalyzer(to_structure(atoms), symprec=symprec)
        return sga.get_space_group_symbol(), int(sga.get_space_group_number())
    except Exception:
        return "P1", 1


def build_db(shard_paths: Iterable[str | Path], db_url: str | Path, *, overwrite: bool = True,
             chgnet: bool = True, types: bool = True) -> dict:
    """(Re)build the database from label shards. Later shards win for a repeated material_id.

    With `chgnet`, each row also stores its CHGNet energy (eV/atom, static: the labelled cells
    are MP's relaxed ones), computed here once so the stability hull never recomputes it; it is
    rounded to 0.1 meV so that rebuilds stay byte-identical. With `types`, each row stores its AFLOW
    structure type's tags as JSON ('' where it matches none; prototypes.structure_type, by the
    cell's AFLOW label, milliseconds a cell), so the material list can say rutile beside anatase.
    A rebuild reuses both for a cell that has not changed (a type only if found by today's rule).
    """
    lines: dict[str, tuple[Path, dict]] = {}
    failed = 0
    for shard, d in iter_label_lines(shard_paths):
        if "failed" in d:
            failed += 1
            continue
        lines[d["material_id"]] = (shard, d)
    url = str(db_url)
    is_file = "://" not in url
    # A file build goes to a temporary file that replaces the old db only when complete, so a
    # bad shard line leaves the previous database untouched and no half-written rows.
    target = url
    if is_file:
        Path(url).parent.mkdir(parents=True, exist_ok=True)
        target = url + ".building.db"
        Path(target).unlink(missing_ok=True)
        if not overwrite and Path(url).exists():
            shutil.copy(url, target)
    known = _stored_rows(url) if ((chgnet or types) and is_file and Path(url).exists()) else {}
    db = connect(target, type="db" if is_file else "extract_from_name")
    if not is_file and overwrite:
        db.delete([row.id for row in db.select()])
    try:
        with db:
            for mid in sorted(lines):
                shard, d = lines[mid]
                atoms = atoms_from_cif(d["cif"])
                site = np.asarray(d["site_dos"], dtype=np.float64)
                if site.shape != (len(atoms), dosmod.NPTS):
                    raise ValueError(f"{mid} in {shard.name}: site_dos shape {site.shape} does not match "
                                     f"{len(atoms)} sites x {dosmod.NPTS} grid points")
                dosmod.validate_on_grid(site.sum(0), name=f"{mid} in {shard.name}")
                sg, sgn = _spacegroup(atoms)
                extra = {}
                stored = known.get(mid) if _same_cell(known.get(mid), atoms) else {}
                if chgnet:
                    # here: reading the db must not load an interatomic potential, only build-db does
                    from dosmatgen_core.scoring.stability import static_energy
                    e = stored.get("chgnet_energy")
                    extra["chgnet_energy"] = e if e is not None else round(static_energy(to_structure(atoms), "chgnet"), 4)
                if types:
                    t = stored.get("structure_type")
                    if t is None:
                        found = structure_type(to_structure(atoms))
                        # no type stored where the library could not be read: a later build types the cell
                        t = None if found is None and prototypes.unavailable() else json.dumps(found or "", sort_keys=True)
                    if t is not None:
                        extra.update(structure_type=t, type_rule=prototypes.RULE)
                db.write(atoms, material_id=mid, **extra, chem_formula=d.get("formula") or atoms.get_chemical_formula(),
                         spacegroup=sg, spacegroup_number=sgn, e_fermi=float(d["e_fermi_eV"]),
                         dft_energy=float(d["energy_eV"]), shard=shard.name,
                         dft_seconds=float(d.get("seconds", 0)),
                         data={"site_dos": site, "recipe": json.dumps(d.get("recipe", {}), sort_keys=True)})
    except BaseException:
        if is_file:
            Path(target).unlink(missing_ok=True)
        raise
    if is_file:
        con = sqlite3.connect(target)
        with con:
            con.execute("UPDATE systems SET ctime=?, mtime=?, username='dosmatgen'", (BUILD_EPOCH, BUILD_EPOCH))
            # ASE draws a random unique_id per row; derive it from the MP id instead.
            for row_id, kvp in con.execute("SELECT id, key_value_pairs FROM systems").fetchall():
                uid = hashlib.sha256(json.loads(kvp)["material_id"].encode()).hexdigest()[:32]
                con.execute("UPDATE systems SET unique_id=? WHERE id=?", (uid, row_id))
        con.execute("VACUUM")
        con.close()
        os.replace(target, url)
    return {"rows": len(lines), "failed_lines_skipped": failed, "db": url}


def _stored_rows(url: str) -> dict[str, dict]:
    """material_id -> the cell ('numbers', 'positions', 'cell') and what build_db computed for it
    ('chgnet_energy', 'structure_type'; None where not stored) in the database being replaced: a
    rebuild reuses them for an unchanged cell instead of running CHGNet and the prototype matcher on
    every row again."""
    try:
        return {row.material_id: {"numbers": row.numbers, "positions": row.positions, "cell": row.cell,
                                  "chgnet_energy": row.get("chgnet_energy"),
                                  # a type found by another rule than today's is found again (prototypes.RULE)
                                  "structure_type": (row.get("structure_type") if row.get("type_rule") == prototypes.RULE
                                                     else None)}
                for row in connect(url, type="db").select()}
    except Exception:       # an unreadable old db is rebuilt from scratch, not trusted
        return {}


def _same_cell(stored: dict | None, atoms) -> bool:
    return (stored is not None and len(stored["numbers"]) == len(atoms) and np.array_equal(stored["numbers"], atoms.numbers)
            and np.allclose(stored["positions"], atoms.positions, atol=1e-6)
            and np.allclose(stored["cell"], atoms.cell[:], atol=1e-6))


class ReferenceDB:
    """Read access with the queries the app needs."""

    def __init__(self, db_url: str | Path):
        url = str(db_url)
        if "://" not in url and not Path(url).exists():
            raise FileNotFoundError(f"reference database {url} not found — build it with `dosmatgen build-db`")
        self.url = url
        try:
            self.db = connect(url)
            self.db.count()     # a corrupt or foreign file fails here, not in the middle of a run
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(f"reference database {url} cannot be read ({first[:120]}) — "
                             "rebuild it with `dosmatgen build-db` or point DOSMATGEN_DB at a good one") from None

    def __len__(self) -> int:
        return self.db.count()

    @staticmethod
    def _to_ref(row) -> Reference:
        return Reference(material_id=row.material_id, formula=row.chem_formula, spacegroup=row.spacegroup,
                         atoms=row.toatoms(), site_dos=np.asarray(row.data["site_dos"], float),
                         e_fermi=float(row.e_fermi), energy=float(row.dft_energy))

    def get(self, material_id: str) -> Reference:
        rows = list(self.db.select(material_id=material_id))
        if not rows:
            raise NotFound(f"no reference material with id '{material_id}'", self._hint(material_id))
        return self._to_ref(rows[0])

    def _hint(self, text: str) -> str:
        """Near ids, and ids of near formulas, for an id that names nothing."""
        rows = [(r.material_id, r.chem_formula) for r in self.db.select(columns=["key_value_pairs"], include_data=False)]
        by_formula: dict[str, list[str]] = {}
        for mid, f in rows:
            by_formula.setdefault(f, []).append(mid)
        formula = dict(rows)
        ids = near(text, formula) + [m for f in near(text, by_formula) for m in sorted(by_formula[f])[:2]]
        hits = [f"{m} ({formula[m]})" for m in list(dict.fromkeys(ids))[:4]]
        return (f"did you mean {', '.join(hits)}? " if hits else "") + "`dosmatgen materials TEXT` and the app's picker list them"

    def search(self, *, formula: str | None = None, elements: Iterable[str] = (), only_elements: bool = False,
               natoms: int | None = None, max_atoms: int | None = None, text: str | None = None,
               limit: int | None = None) -> list[dict]:
        """Summary rows (no arrays) matching all given filters, in listing_key's order.

        `text` is what a user types, read by material_query as the app reads it: an id, elements
        separated by '-', ',' or space, a formula, or a word of a structure type's name ('perovskite',
        'L1_2'). The other filters narrow what the text finds; they do not change how it is read.
        """
        els = list(elements)
        bad = [e for e in els if not material_query.is_element(e)]
        if bad:
            raise ValueError(f"unknown element(s): {', '.join(bad)}")
        t = (text or "").strip()
        # parse needs the stored ids only to ask whether the text is one: one indexed lookup
        q = material_query.parse(t, {t} if t and self.db.count(material_id=t) else ())
        sizes = ([f"natoms={int(natoms)}"] if natoms is not None else []) + \
            ([f"natoms<={int(max_atoms)}"] if max_atoms is not None else [])
        if material_query.needs_every_row(q):
            # whether 'B2' is boron or the CsCl type, and whether a type exists, is read over every material
            rows = self._rows([], {})
        else:
            # an id or an element set only filters: the ASE query's indexes find it, not a scan
            rows = self._rows(q.get("elements", []) + els + sizes, {"material_id": q["id"]} if "id" in q else {})
        want = {"formula": material_query.reduced(formula)} if formula else {}
        out = [r for r in material_query.find(t, q, rows)[1]
               if material_query.matches(r, want) and set(els) <= set(r["elements"])
               and (natoms is None or r["natoms"] == natoms) and (max_atoms is None or r["natoms"] <= max_atoms)
               and not (only_elements and set(r["elements"]) != set(els))]
        out.sort(key=listing_key)
        return out[:limit] if limit else out

    def _rows(self, query: list[str], kw: dict) -> list[dict]:
        """Summary rows for an ASE query (elements, sizes) and keywords (material_id)."""
        return [{"material_id": row.material_id, "formula": row.chem_formula, "natoms": row.natoms,
                 "spacegroup": row.spacegroup, "elements": sorted(set(row.symbols)),
                 "structure_type": json.loads(row.get("structure_type") or '""') or None}
                for row in self.db.select(",".join(query) or None, **kw)]

    def all_site_dos(self) -> tuple[list[tuple[str, int, str]], np.ndarray]:
        """Every site's DOS with its (material_id, site index, element): for lookups and statistics."""
        keys, rows = [], []
        for row in self.db.select():
            sym = row.symbols
            for i, g in enumerate(np.asarray(row.data["site_dos"], float)):
                keys.append((row.material_id, i, sym[i]))
                rows.append(g)
        return keys, np.array(rows).reshape(-1, dosmod.NPTS)


@lru_cache(maxsize=4)
def open_db(db_url: str) -> ReferenceDB:
    """One ReferenceDB per process and URL (the app caches through this too)."""
    return ReferenceDB(db_url)
