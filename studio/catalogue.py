"""Finding a reference material: the labelled reference database first, then the MP structures
that ship with the project, then an uploaded file. Whatever the source, the page gets one
`Material`: a structure in its own site order and one DOS curve per site, with where it came from."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pymatgen.core import Element, Structure

from dosmatgen_core.checks import UserError, read_structure_bytes
from dosmatgen_core.labels import material_query
from dosmatgen_core.structures import StructureError, to_structure
from dosmatgen_core.vasprun import is_vasprun, read_vasprun
from dosmatgen_core.names import formula, material_name, site_curve_name, spacegroup_name
from dosmatgen_core.scoring.prototypes import short_name


@dataclass(frozen=True)
class Material:
    key: str                 # db id, 'mp:<id>' for an unlabelled MP structure, 'upload:<name>' for a file
    name: str                # what people read: 'Au3Ni · L1₂ · relaxed'
    formula: str             # conventional reduced formula
    structure: Structure     # site i is DOS row i
    site_dos: np.ndarray     # (N, 400) states/eV
    source: str              # 'dft' (a stored DFT label), 'gpaw' (DFT of this cell, calculated here),
                             # 'vasp' (an uploaded VASP run's) or 'predicted'
    db_id: str | None = None  # the reference-db id when the DOS is a stored label
    energy: np.ndarray | None = None    # a VASP run's own energies (E − E_F): what its window covers
    dft_seconds: float | None = None    # 'gpaw': GPAW's time on this cell

    @property
    def labelled(self) -> bool:
        return self.source == "dft"

    def curve_name(self, site: int) -> str:
        """How a site's curve is named in legends: 'DFT label of Au3Ni site 3 (Ni)'."""
        return site_curve_name(self.source, self.formula, site, self.structure[site].specie.symbol)


def from_db(ref) -> Material:
    """A reference-db row (dosmatgen_core.labels.reference_db.Reference)."""
    return Material(ref.material_id, material_name(ref.material_id, ref.formula), formula(ref.formula),
                    to_structure(ref.atoms), np.asarray(ref.site_dos), "dft", ref.material_id)


def predicted(key: str, name: str, s: Structure, predictor) -> Material:
    """A structure without a label: every site gets the site-DOS predictor's curve."""
    if predictor is None:
        raise ValueError("the site-DOS predictor is not loaded, so this structure's sites have no DOS")
    g = predictor.predict([(np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix)])[0]
    if not np.all(np.isfinite(g)):
        raise ValueError("the cell is too dense to predict a DOS for (under 2 Å³ per atom)")
    return Material(key, name, formula(s.composition.reduced_formula), s, np.asarray(g, float), "predicted")


def from_upload(name: str, data: bytes, predictor) -> Material:
    """An uploaded CIF or POSCAR (by the name, else the content: checks.structure_format), its sites predicted; or
    a VASP vasprun.xml, its atoms' own projected DOS. Raises ValueError with the reason, the one
    line the CLI prints for the same file, less the file name it starts with."""
    if is_vasprun(data):
        run = read_vasprun(data)
        f = formula(run.structure.composition.reduced_formula)
        return Material(f"upload:{name}", f"{f} · {name} (VASP)", f, run.structure, run.site_dos, "vasp",
                        energy=run.energy)
    try:
        s = read_structure_bytes(data, name)        # CIF or POSCAR by the name, else by the content
    except (UserError, StructureError) as exc:
        msg = str(exc)
        raise ValueError(msg[len(name) + 2:] if msg.startswith(f"{name}: ") else msg) from None
    return predicted(f"upload:{name}", f"{formula(s.composition.reduced_formula)} · {name}", s, predictor)


def reference_rows(db) -> list[dict]:
    """Every reference material as a summary row, with the names people read."""
    out = []
    for r in db.search():
        out.append(dict(r, name=material_name(r["material_id"], r["formula"]), reduced=formula(r["formula"])))
    return out


def option_text(row: dict) -> str:
    """A labelled material as the list shows it: 'TiO₂ · mp-390 · anatase (C5) · I4₁/amd · 12 atoms ·
    DFT label'. The structure type tells rutile from anatase where the space group alone would
    make a newcomer look it up (walk 13)."""
    kind = short_name(row["structure_type"], aflow=False) if row.get("structure_type") else ""
    return (f"{row['name']} · " + (f"{kind} · " if kind and kind not in row["name"] else "") +
            f"{spacegroup_name(row['spacegroup'])} · {row['natoms']} atoms · DFT label")


def search(text: str, rows: list[dict], mp: tuple = ()) -> dict:
    """{'labelled': reference rows, 'mp': [(id, Structure)] of MP structures with no label, 'query': the
    query they were found by}, the text read by material_query as the CLI reads it (ReferenceDB.search):
    {'id'}, {'elements'}, {'formula', 'elements'} or {'type'} ('perovskite', 'rutile', 'L1_2', and
    'B2' where no label is boron). Raises ValueError for text that finds nothing by any reading."""
    have = {r["material_id"] for r in rows}
    q, labelled = material_query.find(text, material_query.parse(text, have), rows)
    unlabelled = []
    if "id" in q or "formula" in q:      # an element set would list thousands: labelled ones only
        unlabelled = [(mid, s) for mid, s in mp if mid not in have and material_query.matches(
            {"material_id": mid, "formula": s.composition.reduced_formula,
             "elements": [e.symbol for e in s.composition.elements]}, q)]
    return {"labelled": labelled, "mp": unlabelled[:20], "query": q}


def lone_element(q: dict, labelled: list[dict]) -> str | None:
    """The element a one-element query asks for, when no labelled material is that element alone
    (a walk typed Fe and got FeH first, with no word that elemental Fe has no label); else None."""
    els = q.get("elements") or []
    if "formula" in q or len(els) != 1 or any(list(r["elements"]) == els for r in labelled):
        return None
    return els[0]


def elemental(element: str, mp: tuple, n: int = 20) -> list:
    """The shipped MP structures of one element alone: (id, Structure), smallest cells first."""
    return sorted(((mid, s) for mid, s in mp if [str(e) for e in s.composition.elements] == [element]),
                  key=lambda kv: (len(kv[1]), kv[0]))[:n]


def lone_element_text(element: str, n_mp: int) -> str:
    """What the list holds for an element with no label of its own (lone_element)."""
    if n_mp:
        return (f"No DFT label of elemental {element}: listed are the labelled materials that contain {element}, "
                f"then its {n_mp} Materials Project structure{'s' * (n_mp != 1)} without a label (the predictor "
                "gives their sites a predicted DOS).")
    return (f"No DFT label of elemental {element}, and no shipped structure of it: listed are the labelled "
            f"materials that contain {element}.")


def _distance(a: Element, b: Element) -> float:
    """How far apart two elements sit in the periodic table: a step down a group (same valence,
    GaAs → GaP) counts half a step along a row."""
    return 2 * abs(a.group - b.group) + abs(a.row - b.row)


def closest_chemistries(elements: list[str], rows: list[dict], n: int = 5) -> list[dict]:
    """Labelled materials whose elements are nearest the asked ones: one per chemistry, same number
    of elements, each asked element paired with its nearest (GaAs → GaP, AlAs, InAs ...)."""
    from itertools import permutations
    want = [Element(e) for e in sorted(set(elements))]
    best: dict[str, tuple[float, dict]] = {}
    for r in rows:
        have = [Element(e) for e in r["elements"]]
        if len(have) != len(want):
            continue
        d = min(sum(_distance(a, b) for a, b in zip(want, p)) for p in permutations(have))
        chem = "-".join(sorted(r["elements"]))
        key = (d, r["natoms"], r["material_id"])
        if chem not in best or key < best[chem][0]:
            best[chem] = (key, r)
    return [r for _, r in sorted(best.values(), key=lambda kv: kv[0])][:n]
