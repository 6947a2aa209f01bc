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
import warnings
from functools import lru_cache

from pymatgen.analysis.structure_matcher import StructureMatcher
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
    lib["own_label"] = [label(row.structure) for row in lib["snl"]]       # once: spglib on each cell
    # a cell that reads otherwise than its tag (the library's D0c cell reads as L1₂) is a special
    # case of another type, ranked after the type itself (_closest)
    lib["degenerate"] = [_reads_otherwise(own, tags.get("aflow") or "") for own, tags in zip(lib["own_label"], lib["tags"])]
    return lib


def _reads_otherwise(own: str | None, tag: str) -> bool:
    """Whether a library cell's own label (label) differs from its tag, elements blind."""
    try:
        return own is None or blind(own) != blind(tag)
    except (KeyError, ValueError, IndexError):        # a tag not in the label's form
        return True


RULE = "closest fit by label, then by formula type"     # how a stored type was found: found again where a db holds another rule's (build_db)


def label(s: Structure) -> str | None:
    """The cell's AFLOW prototype label ('A2B_tI12_141_e_a': formula type, Pearson symbol, space
    group, occupied Wyckoff positions), canonicalised as pymatgen writes it; None where spglib finds
    no symmetry to label."""
    # here, not at the top: the module reads its Wyckoff tables on import (4 s), as _library below;
    # a pymatgen without it raises ImportError, which structure_type reports as the library unavailable
    from pymatgen.analysis.prototypes import get_protostructure_label_from_spglib
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = get_protostructure_label_from_spglib(s, raise_errors=True)
        except Exception:         # spglib found no dataset, even on the refined cell
            return None
    return out.split(":")[0] if out and "_" in out else None


def blind(lab: str) -> str:
    """A label with its elements' order forgotten: the Wyckoff letters of each element, with its
    count, as a sorted set, under the space group's canonical choice of origin. The label lists the
    elements alphabetically, so Au3Ni reads 'A3B_cP4_221_c_a' and the library's Cu3Au
    'AB3_cP4_221_a_c': one structure type."""
    from pymatgen.analysis.prototypes import WYCKOFF_POSITION_RELAB_DICT, sort_and_score_element_wyckoffs
    head, pearson, spg, *wyckoffs = lab.split("_")
    counts = [int(c or 1) for c in re.findall(r"[A-Z](\d*)", head)]
    # each letter with its count, as pymatgen scores them ('af2ij' → '1a1f2i1j')
    wyckoffs = [re.sub(r"(?<![0-9])([a-zA-Z])", r"1\1", w) for w in wyckoffs]
    best = None
    for relabel in WYCKOFF_POSITION_RELAB_DICT[spg]:
        letters, score = sort_and_score_element_wyckoffs("_".join(wyckoffs).translate(str.maketrans(relabel)))
        key = (score, tuple(sorted(zip(counts, letters.split("_")))))
        best = key if best is None or key < best else best
    return f"{pearson}_{spg}_" + "_".join(f"{n}:{w}" for n, w in best[1])


@lru_cache(maxsize=1)
def _by_label() -> dict[str, list]:
    """The library's prototypes by the element-blind label of their own cell (label, blind)."""
    out: dict[str, list] = {}
    for _, row in _library().iterrows():
        if row["own_label"]:
            out.setdefault(blind(row["own_label"]), []).append(row)
    return out


def _tags(row) -> dict:
    tags = row["tags"]
    return {**{k: tags.get(k) or "" for k in ("aflow", "strukturbericht", "mineral", "pearson")}, "by": RULE}


def _closest(s: Structure, rows) -> tuple[float, object] | None:
    """(rms, row) of the prototype among rows whose cell lies closest on s within the library
    matcher's tolerances (elements blind), or None when none fits: the first that fits called
    CaBr2 (hydrophilite, rms 0.004) marcasite (rms 0.154)."""
    sm = StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)
    fits = []
    for row in rows:
        rms = sm.get_rms_anonymous(s, row["snl"].structure)[0]
        if rms is not None:
            fits.append((float(rms), row))
    return min(fits, key=lambda f: (bool(f[1]["degenerate"]), f[0])) if fits else None


def structure_type(s: Structure) -> dict | None:
    """{'aflow' (the prototype label), 'strukturbericht', 'mineral', 'pearson', 'by'} of the AFLOW
    prototype of the cell, whatever its elements; None when it has none.

    The prototype whose cell lies closest on it among those with its AFLOW label (space group and
    occupied Wyckoff positions, the elements' order forgotten), else among all of its formula type
    (a slightly distorted Heusler or B2 cell, whose exact label no prototype has). Where no
    prototype's cell lies on it but exactly one has its label, that one: pymatgen's anatase cell has
    its O at z = 0.333 in place of 0.208, so anatase TiO2 (mp-390) fitted nothing (walk 17). A label
    several prototypes share (CaC2's C11a and MoSi2's C11b) names none of them unfitted."""
    global _unavailable
    with _lock:
        if _unavailable:
            return None
        try:
            lab = label(s)
            rows = _by_label().get(blind(lab), []) if lab else []
            lib = _library()
        except ImportError as exc:       # a pymatgen without the library: said once, not retried per check
            _unavailable = str(exc)
            return None
    if best := _closest(s, rows):
        return _tags(best[1])
    if best := _closest(s, [row for _, row in lib[lib["anonymous"] == s.composition.anonymized_formula].iterrows()]):
        return _tags(best[1])
    return _tags(rows[0]) if len(rows) == 1 else None


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
