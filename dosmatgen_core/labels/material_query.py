"""What a user types to find a reference material, read by one set of rules for the CLI
(`dosmatgen materials`: ReferenceDB.search) and the app (studio.catalogue.search), so that the two
list the same materials for the same text.

A query is a dict: {} (every material), {'id': ...}, {'elements': [...]}, {'formula': reduced,
'elements': [...]} or {'type': word} (a structure type's name or symbol: prototypes.type_matches).
A row is a summary dict with 'material_id', 'formula', 'elements' and 'structure_type', as
ReferenceDB.search returns them.
"""
from __future__ import annotations

from collections.abc import Container, Sequence
from functools import lru_cache

from pymatgen.core import Composition, Element

from dosmatgen_core.scoring.prototypes import type_matches

# Materials Project ids are ids even where no label has them: the app then offers MP's structure
MP_PREFIXES = ("mp-", "mvc-")


def not_found(text: str) -> str:
    """The one refusal of text that finds nothing by any reading; a formula typed in the wrong case
    ('nacl': walk 15) is named as it would be written."""
    fixes = written_as_formula(text)
    return (f"'{text.strip()}' is neither a formula (NaCl), an id (mp-22862), elements (Au-Ni) nor the structure "
            "type of any labelled material (perovskite, rutile, Heusler, L1_2)"
            + (f"; formulas are written with capitals: did you mean {' or '.join(fixes)}?" if fixes else ""))


def written_as_formula(text: str, most: int = 3) -> list[str]:
    """The formulas a lower- or upper-case text can be read as ('nacl' → ['NaCl'], 'co' → ['Co', 'CO']),
    at most `most`, each a run of element symbols with counts; [] when it is none."""
    t = (text or "").strip()
    # a word of 7 letters or more with no count is a word ('perovskites' reads as P-Er-O-V-S-K-I-Te-S),
    # and the search below grows with the length: short texts only
    letters = sum(ch.isalpha() for ch in t)
    if (not t or not t.isalnum() or t[0].isdigit() or len(t) > 16
            or (letters > 6 and not any(ch.isdigit() for ch in t))):
        return []
    low = t.lower()
    out: list[str] = []

    def walk(i: int, done: str) -> None:
        if len(out) >= most:
            return
        if i == len(low):
            out.append(done)
            return
        for n in (2, 1):                    # two-letter symbols first: 'co' is Co before C O
            sym = low[i:i + n].capitalize()
            # D and T (pymatgen's hydrogen isotopes) would read 'perovskit' as a formula
            if len(sym) == n and sym.isalpha() and sym not in ("D", "T") and is_element(sym):
                j = i + n
                while j < len(low) and low[j].isdigit():
                    j += 1
                walk(j, done + sym + low[i + n:j])

    walk(0, "")
    return out


def is_element(s: str) -> bool:
    try:
        Element(s)
        return True
    except ValueError:
        return False


@lru_cache(maxsize=65536)
def reduced(formula: str) -> str:
    """'ClNa' → 'NaCl' (pymatgen's reduced formula); cached, as a search compares every row's."""
    return Composition(formula).reduced_formula


def parse(text: str | None, ids: Container[str] = ()) -> dict:
    """text as a query: an MP id or one of `ids` (the stored ids), else elements separated by '-',
    ',' or space, else a formula of real elements, else a structure type's word. Raises nothing: a
    word is refused by find, where the rows tell whether some material has that type."""
    t = (text or "").strip()
    if not t:
        return {}
    if t.lower().startswith(MP_PREFIXES):
        return {"id": t.lower()}        # MP writes its ids in lower case
    if t in ids:                        # 'L12-Au3Ni-chgnet', 'gen:…': no element list or formula
        return {"id": t}
    parts = t.replace(",", " ").replace("-", " ").split()
    if all(is_element(p) for p in parts):
        return {"elements": parts}      # "Ni", "Au-Ni", "Au Ni", "Au,Ni"
    try:
        c = Composition(t)
    except Exception:                   # pymatgen raises ValueError, KeyError, … for what is no formula
        c = None
    # pymatgen reads 'Qz', 'A15' and 'L12' as dummy species: no formula, maybe a type ('A15', 'L1_2')
    if c is not None and c.elements and all(is_element(str(e)) for e in c.elements):
        return {"formula": c.reduced_formula, "elements": sorted(str(e) for e in c.elements)}
    return {"type": t.lower()}


def matches(row: dict, q: dict) -> bool:
    """Whether the summary row is one the query asks for."""
    if "id" in q:
        return row["material_id"] == q["id"]
    if "formula" in q:
        return reduced(row["formula"]) == q["formula"]
    if "elements" in q:
        return set(q["elements"]) <= set(row["elements"])
    if "type" in q:
        return type_matches(row.get("structure_type"), q["type"])
    return True


def needs_every_row(q: dict) -> bool:
    """Whether find reads q over every material, not only those q's own filters select: a formula
    that finds none may be a type symbol, and a type is refused only where no material has it."""
    return "formula" in q or "type" in q


def find(text: str | None, q: dict, rows: Sequence[dict]) -> tuple[dict, list[dict]]:
    """(the query the rows were found by, the rows), q being parse(text), in the order of `rows`.

    A formula that finds no row and is a type's symbol ('B2', 'C15': boron, carbon) is that type;
    a formula that is neither finds nothing, no error (the app then offers MP structures). A type
    no row has raises ValueError(not_found(text))."""
    hits = [r for r in rows if matches(r, q)]
    if hits or not needs_every_row(q):
        return q, hits
    if "formula" in q:
        word = {"type": (text or "").strip().lower()}
        typed = [r for r in rows if matches(r, word)]
        return (word, typed) if typed else (q, [])
    raise ValueError(not_found(text or ""))
