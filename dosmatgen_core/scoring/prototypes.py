"""A cell's structure type from the AFLOW library of crystallographic prototypes (Mehl et al.,
Comput. Mater. Sci. 136, S1 (2017); shipped with pymatgen, no download).

"Novel" means new to the project's tables (the shipped Materials Project structures and the
labels), not to chemistry: walk 12's headline "best new" crystal was AlP in zincblende, a textbook
compound the tables do not hold. Naming the relaxed cell's structure type (B3, zincblende) lets a
scientist see that at once.
"""
from __future__ import annotations

import re
import threading
from functools import lru_cache

from pymatgen.core import Structure

from dosmatgen_core.names import SUBSCRIPTS

_lock = threading.Lock()       # checks run in threads; a matcher is built once per formula type
_unavailable: str | None = None      # why the library could not be read, once it could not


@lru_cache(maxsize=1)
def _library():
    # here, not at the top: importing the library reads ~1100 prototype cells (7 s), which the app's
    # start and the CLI should not wait for; the first check's thread pays it once
    import pandas as pd
    from pymatgen.analysis.prototypes._data import AFLOW_PROTOTYPE_LIBRARY
    lib = pd.DataFrame(AFLOW_PROTOTYPE_LIBRARY)
    lib["anonymous"] = [row.structure.composition.anonymized_formula for row in lib["snl"]]
    return lib


@lru_cache(maxsize=None)
def _matcher(anonymous: str):
    """The library's prototypes of one formula type (AB, AB3, ...) only: matching all ~1100 takes
    seconds a cell, and fit_anonymous cannot match another formula type anyway."""
    from pymatgen.analysis.prototypes.matcher import PrototypeDatabaseMatcher   # with the library, above
    lib = _library()
    rows = lib[lib["anonymous"] == anonymous]
    return PrototypeDatabaseMatcher(rows) if len(rows) else None


def structure_type(s: Structure) -> dict | None:
    """{'aflow' (the prototype label), 'strukturbericht', 'mineral', 'pearson'} of the AFLOW
    prototype the cell matches, whatever its elements; None when none does."""
    global _unavailable
    with _lock:
        if _unavailable:
            return None
        try:
            m = _matcher(s.composition.anonymized_formula)
        except ImportError as exc:       # a pymatgen without the library: said once, not retried per check
            _unavailable = str(exc)
            return None
    hits = m.get_prototypes(s) if m is not None else None
    if not hits:
        return None
    tags = hits[0]["tags"]
    return {k: tags.get(k) or "" for k in ("aflow", "strukturbericht", "mineral", "pearson")}


def unavailable() -> str | None:
    """Why the prototype library could not be read (None: it could, or was not needed yet)."""
    return _unavailable


def type_name(t: dict | None) -> str:
    """'the zincblende (B3) structure type', 'the L1_2 structure type', or '' for None."""
    if not t:
        return ""
    return f"the {short_name(t)} structure type"


GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "omega"}
# the library's tags capitalise every word; running text keeps capitals for people's names only
EPONYMS = {"Heusler", "Laves", "Zintl", "Frank", "Kasper", "Chevrel", "Hittorf", "Magneli", "Ruddlesden",
           "Popper", "Aurivillius", "Dion", "Jacobson", "Nowotny", "Wadsley", "Bernal"}


def mineral_name(t: dict) -> str:
    """The library's mineral tag as running text ('Rutile' → 'rutile', '(Cubic) Perovskite' → 'cubic
    perovskite', 'Half-Heusler' → 'half-Heusler'), or '' where the tag names no structure type a
    reader knows: a bare Greek letter ('alpha'), a space group ('I4/mcm'), a formula with
    subscripts, TeX markup, 'Theoretical Carbon Structure'."""
    m = (t.get("mineral") or "").split(",")[0].strip()
    if (not m or m.lower() in GREEK or any(c in m for c in "$\\/_") or m.startswith("Theoretical")
            or m.count("(") != m.count(")")):
        return ""
    m = re.sub(r"^\((\w+)\)\s*", r"\1 ", m)
    # a word of three letters or more, capital then lower case: 'Pb' and 'Cu' are elements
    return re.sub(r"[A-Za-z]+", lambda w: w[0].lower() if (len(w[0]) > 2 and w[0][0].isupper() and w[0][1:].islower()
                                                         and w[0] not in EPONYMS) else w[0], m)


# the subscript letters Unicode has: 'B_i' as 'Bi' would read as bismuth
LETTER_SUBSCRIPTS = str.maketrans("aehijklmnoprstuvx", "ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ")


def strukturbericht_name(symbol: str) -> str:
    """'L1_2' → 'L1₂', 'B_i' → 'Bᵢ', 'C1_b' → 'C1b' (no subscript b in Unicode; after a digit it reads
    as no element), "L'2" → 'L′2': subscripts as printed, and no '_' for Markdown to read as italics."""
    if not symbol or symbol == "None":
        return ""
    symbol = symbol.replace("\\'", "′").replace("'", "′")
    return re.sub(r"_(\w+)", lambda m: m[1].translate(SUBSCRIPTS).translate(LETTER_SUBSCRIPTS), symbol)


def short_name(t: dict, aflow: bool = True) -> str:
    """'zincblende (B3)', 'half-Heusler (C1b)', 'L1₂': the mineral name where the library has one
    (mineral_name), the Strukturbericht symbol, else the AFLOW label (aflow=False: '' instead, for
    a list a newcomer scans, where 'ABC_hP3_187_a_d_f' says nothing)."""
    mineral, label = mineral_name(t), strukturbericht_name(t.get("strukturbericht", ""))
    if mineral:
        return f"{mineral} ({label})" if label else mineral
    return label or (t.get("aflow", "") if aflow else "")


def type_words(t: dict | None) -> str:
    """What a structure type is found by, in lower case: its mineral name and Strukturbericht symbol
    as listed (mineral_name, strukturbericht_name) and the symbol as written ('L1_2'); not the
    library's raw tags ('None', 'alpha'), which matched searches for 'one' and 'alpha'."""
    if not t:
        return ""
    symbol = t.get("strukturbericht", "")
    written = [symbol, symbol.replace("_", "")] if symbol and symbol != "None" else []      # 'L1_2', 'L12'
    return " ".join([mineral_name(t), strukturbericht_name(symbol), *written]).lower()


def type_matches(t: dict | None, text: str) -> bool:
    """Whether what a user typed names the structure type t: a symbol whole ('B2', not B27), or a
    part of its mineral name of four letters or more ('perovskite' in cubic perovskite, 'heusler'
    in half-Heusler)."""
    text = text.strip().lower()
    if not t or not text:
        return False
    return text in type_words(t).split() or (len(text) >= 4 and text in mineral_name(t).lower())
