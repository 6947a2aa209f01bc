"""Names people read, shared by the app, the CLI and the records: formulas as chemists write them,
known structures by formula first, one atom of a structure, and where a target curve came from."""
from __future__ import annotations

import re

from pymatgen.core import Composition

from dosmatgen_core.dos import AT_REST
from dosmatgen_core.scoring.elements import ELEMENT_PREFIX

# Strukturbericht symbols: the digits after the first are a subscript (L1₂, D0₁₉); others stay as they are
PROTOTYPES = {"L12": "L1₂", "L10": "L1₀", "L21": "L2₁", "D03": "D0₃", "D019": "D0₁₉", "D022": "D0₂₂", "D024": "D0₂₄",
              "C11b": "C11_b", "B2": "B2", "B1": "B1", "B3": "B3", "A15": "A15", "C15": "C15", "C14": "C14"}
METHOD_WORDS = {"chgnet": "relaxed", "relaxed": "relaxed", "dft": "DFT-relaxed"}


def formula(text: str) -> str:
    """Conventional reduced formula: 'ClNa' → 'NaCl', 'Ga4Te4' → 'GaTe' (pymatgen's reduced
    formula, cations first); an intermetallic in alphabetical order as metallurgists write it
    ('NiAu3' → 'Au3Ni', 'CuAu' → 'AuCu')."""
    try:
        c = Composition(text)
        reduced, _ = c.get_reduced_composition_and_factor()
    except Exception:
        return text
    if len(c) > 1 and all(el.is_metal for el in c.elements):
        return "".join(f"{el.symbol}{_amount(reduced[el])}" for el in sorted(c.elements, key=lambda e: e.symbol))
    return c.reduced_formula


SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def spacegroup_name(symbol: str) -> str:
    """A Hermann–Mauguin symbol as printed: 'I4_1/amd (141)' → 'I4₁/amd (141)'. Its screw axes' '_'
    also made Markdown set the text between two symbols in italics."""
    return re.sub(r"(\d)_(\d)", lambda m: m[1] + m[2].translate(SUBSCRIPTS), symbol or "")


def _amount(x: float) -> str:
    return "" if abs(x - 1) < 1e-8 else (str(int(round(x))) if abs(x - round(x)) < 1e-8 else f"{x:g}")


GENERATED_PREFIX = "gen:"      # the id of a generated candidate whose DFT check became a label


def material_name(material_id: str, chem_formula: str) -> str:
    """'L12-Au3Ni-chgnet' → 'Au3Ni · L1₂ · relaxed'; 'mp-22862' → 'NaCl · mp-22862';
    'gen:008d78a0…' (a generated candidate whose DFT became a label) → 'BiK2Mn · DFT-checked candidate
    008d78a0' (a newcomer reads what it is before the hash; short enough for a table's cell);
    'upload:Cu3Au.cif' → 'AuCu3 · uploaded Cu3Au.cif'."""
    f = formula(chem_formula)
    if material_id.startswith(ELEMENT_PREFIX):      # 'element:Au', the element's reference crystal
        return f"{f} · the element's known crystal"
    if material_id.startswith(GENERATED_PREFIX):
        return f"{f} · DFT-checked candidate {material_id[4:12]}"
    if material_id.startswith("upload:"):           # the app's key for a file it was given
        return f"{f} · uploaded {material_id[7:]}"
    material_id = material_id.removeprefix("mp:")   # ... and for an unlabelled MP structure
    parts = material_id.split("-")
    if len(parts) == 3 and re.fullmatch(r"[A-Z][A-Za-z]*\d*", parts[0]) and formula(parts[1]) == f:
        proto = PROTOTYPES.get(parts[0], parts[0])
        return f"{f} · {proto} · {METHOD_WORDS.get(parts[2].lower(), parts[2])}"
    return f"{f} · {material_id}"


def site_name(material: str, site: int, element: str) -> str:
    """'Au3Ni site 3 (Ni)': how every legend and caption names one atom of a structure."""
    return f"{material} site {site} ({element})"


def site_curve_name(source: str, material: str, site: int, element: str) -> str:
    """How a target site's curve is named in legends and run titles: 'DFT label of Au3Ni site 3
    (Ni)' (source 'dft'), 'DFT of …' (a cell calculated here: 'gpaw'), 'VASP DOS of …' ('vasp'),
    else 'predicted DOS of …'."""
    what = {"dft": "DFT label", "gpaw": "DFT", "vasp": "VASP DOS"}.get(source, "predicted DOS")
    return f"{what} of {site_name(material, site, element)}"


def file_curve_name(filename: str, column: str | None = None, e_fermi: float | None = None) -> str:
    """A target read from a DOS table: 'uploaded DOS (ni.csv)', with the column taken ('…, column
    dft_site0') and the Fermi energy subtracted ('…, E_F at 5.1 eV in the file') where given (the
    app and the CLI name it alike)."""
    return (f"uploaded DOS ({filename})" + (f", column {column}" if column else "")
            + (f", E_F at {e_fermi:g} eV in the file" if e_fermi else ""))


def adjusted_name(name: str, shift_ev: float = 0.0, scale: float = 1.0, smear_ev: float = 0.0) -> str:
    """A target's name after the knobs (dos.adjusted_target) moved it: '…, shifted +0.50 eV, ×1.20,
    smeared 0.10 eV'; the name as it was when they are all at rest."""
    if (shift_ev, scale, smear_ev) == AT_REST:
        return name
    return f"{name}, shifted {shift_ev:+.2f} eV, ×{scale:.2f}, smeared {smear_ev:.2f} eV"
