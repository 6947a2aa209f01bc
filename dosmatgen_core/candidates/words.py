"""The words the app and the command line share: where a candidate came from, what "novel" is
judged against, and how a run was made."""
from __future__ import annotations

from collections import Counter

from pymatgen.core import Composition, Element

from dosmatgen_core.names import formula, material_name
from dosmatgen_core.scoring.evaluate import PRESSED, pressed

NOVEL_NOTE = ("“novel”: no StructureMatcher match among the Materials Project structures that ship with the "
              "project (about 18k), the labelled ones and the elements' own crystals. A known compound outside "
              "them reads novel too (rock-salt NaBr is not among them): a relaxed check's space group helps to "
              "recognise one.")


def substitution_kind(sub: dict) -> str:
    """"distant" (one atom beyond the matched site's shell) or "element" (every atom of an
    element). Records written before the kind was stored tell it by the cell they name."""
    return sub.get("kind") or ("distant" if "cell_atoms" in sub else "element")


def carrier_text(run: dict, c: dict, elements: list[str]) -> str:
    """'' unless an atom carrying the target is of another element than the target's site (a Ti target
    carried by Zr): walk 17 found it only in a table header ('site 0 (Zr)'); a seed's matching site
    can be another element too (S for an N target)."""
    want = (run.get("settings") or {}).get("target_element")
    got = sorted({elements[int(k)] for k in c.get("site_to_target", {}) if int(k) < len(elements)} - {want})
    if not want or not got:
        return ""
    return (f"The atom carrying the target here is {', '.join(got)}; the target is the DOS of a {want} site. The "
            "DOS is what is matched, so another element can carry it; the fixed-atom-type mode keeps the element "
            "you name.")


def origin_text(c: dict) -> str:
    """Where a seeded candidate came from: its seed (a known structure, its matching site and how
    close that site's DFT curve is to the target) and how it was changed; '' for other modes."""
    seed = c.get("seed")
    if not seed:
        return ""
    # named as the known-sites table names it (formula first, not a database id)
    name = seed["material_id"] if seed.get("known") is False else material_name(seed["material_id"], seed["formula"])
    known = (f"{name}, whose {seed['element']} site {seed['site']} has {seed.get('source', 'DFT')} MAE "
             f"{seed['mae']:.3f} to the target")      # a candidate seed's name carries its formula already
    f = formula(seed["formula"])        # as the card writes it (a walk read "unlike H2Ti2's" on a TiH card)
    kind = {True: f" It keeps {f}'s arrangement of sites, with other elements on them.",
            False: f" Its sites are arranged unlike {f}'s."}.get(c.get("seed_type"), "")
    sub = seed.get("substitution")
    if c.get("origin") == "substitution" and sub:
        sites = ", ".join(str(k) for k in sub["sites"])
        cell = (f", in its cell enlarged to {sub['cell_atoms']} atoms" if sub.get("cell_atoms", 0) > sub.get("seed_atoms", 0)
                else "")
        reach = ", beyond the matching atom's neighbours" if substitution_kind(sub) == "distant" else ""
        return (f"Substitution of {known}: {sub['replaced']} → {sub['by']} on site{'s' * (len(sub['sites']) > 1)} "
                f"{sites}{cell}{reach}.{kind}")
    if c.get("top_up"):     # pipeline.top_up_specs: the first draws were mostly known crystals
        return f"Grown by the generator from {known}, drawn further from it (strength {c['top_up']:g}).{kind}"
    return f"Grown by the generator from {known}.{kind}"


def twin_text(result: dict | None) -> str:
    """For a check that took an earlier check's rows (verify: the two relaxed into one crystal),
    whose check it is; '' otherwise."""
    twin = (result or {}).get("same_crystal_as")
    if twin is None:
        return ""
    return (f"Relaxed into the same crystal as #{twin}: its DFT curves are #{twin}'s, each site's read from the site "
            "it sits on, with no second GPAW run. Uniqueness in the run is judged on the drawn cells.")


def build_text(settings: dict) -> str:
    """How a run's candidates were built, from its stored settings: 'template mp-22862 at strength
    0.5, atoms 1, 3 pinned, atom 0 carrying the target'. A run read back later says what was asked."""
    mode = settings.get("mode", "?")
    cond = [int(c) for c in settings.get("cond_sites") or []]
    fixed = {int(k): v for k, v in (settings.get("fixed") or {}).items()}
    pinned = [int(p) for p in settings.get("pinned") or []]

    def atoms(xs):
        return f"atom{'s' * (len(xs) > 1)} {', '.join(map(str, xs))}"
    parts = []
    if mode == "seeded":
        parts.append("grown from a candidate" if settings.get("grow_from") else
                     f"grown from the {settings.get('n_seeds', '?')} known sites closest to the target")
        parts.append(f"strength {settings.get('strength', '?'):g}" if isinstance(settings.get("strength"), (int, float))
                     else "")
        if settings.get("fix_element"):
            parts.append("the matching atom's element kept")
    elif mode in ("masked", "fixed_type", "unconditional"):
        parts.append(f"new structures of {settings.get('n_atoms', '?')} atoms" if mode != "unconditional"
                     else f"unconditional samples of {settings.get('n_atoms', '?')} atoms")
    elif mode == "template":
        tpl = settings.get("template") or {}
        # named as everywhere else ('TiVC2 · mp-1216691'), from the template's own atoms
        name = (material_name(settings["template_id"], Composition(
            Counter(Element.from_Z(int(z)).symbol for z in tpl["numbers"])).reduced_formula)
                if settings.get("template_id") and tpl.get("numbers") else settings.get("template_id") or "uploaded")
        parts.append(f"template {name} at strength {settings.get('strength', 0):g}")
        if pinned:
            parts.append(f"{atoms(pinned)} pinned")
    if cond and mode != "seeded":
        parts.append(f"{atoms(cond)} carrying the target")
    if fixed and mode != "seeded":
        parts.append(", ".join(f"atom {k} fixed to {v}" for k, v in sorted(fixed.items())))
    return ", ".join(p for p in parts if p)


def settings_words(settings: dict) -> str:
    """How a run was made, in a line: runs towards one target share a title and differ here
    ('grown from the 3 known sites closest to the target, strength 0.3 · 20 candidates · 100 steps ·
    w = 2.0 · seed 0')."""
    if not settings:
        return "—"
    g = settings.get("guidance")
    parts = [build_text(settings),
             f"{settings['n_candidates']} candidates" if settings.get("n_candidates") else "",
             f"{settings['steps']} steps" if settings.get("steps") else "",
             f"w = {g}" if g is not None and settings.get("mode") != "unconditional" else "",
             f"seed {settings['seed']}" if settings.get("seed") is not None else ""]
    return " · ".join(p for p in parts if p)


def pressed_count(run: dict) -> int:
    """How many valid candidates press two atoms together (evaluate.pressed)."""
    return sum(pressed(c) for c in run["candidates"] if c.get("structurally_valid"))


def pressed_text(run: dict) -> str:
    """How many valid candidates press two atoms together (pressed), and what that costs
    them; '' when none does. Walk 14 read "Valid candidates 10/10" above cards with O–Ti at 35 % of
    the covalent radii."""
    valid = [c for c in run["candidates"] if c.get("structurally_valid")]
    if not (k := pressed_count(run)):
        return ""
    return (f"{k} of the {len(valid)} valid press two atoms below {PRESSED:.0%} of their covalent radii "
            "(they pass only the 0.5 Å check): ranked after the others of their kind, since the predicted DOS of "
            "such a cell is the least reliable; a DFT check relaxes a cell first.")
