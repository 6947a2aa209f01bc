"""The words for a candidate that the app and the command line share: where it came from, and
what "novel" is judged against."""
from __future__ import annotations

from dosmatgen_core.names import material_name

NOVEL_NOTE = ("“novel”: no StructureMatcher match among the Materials Project structures that ship with the "
              "project (about 18k), the labelled ones and the elements' own crystals. A known compound outside "
              "them reads novel too (rock-salt NaBr is not among them): a relaxed check's space group helps to "
              "recognise one.")


def substitution_kind(sub: dict) -> str:
    """"distant" (one atom beyond the matched site's shell) or "element" (every atom of an
    element). Records written before the kind was stored tell it by the cell they name."""
    return sub.get("kind") or ("distant" if "cell_atoms" in sub else "element")


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
    kind = {True: f" It keeps {seed['formula']}'s structure type, with other elements on its sites.",
            False: f" Its arrangement is not {seed['formula']}'s structure type."}.get(c.get("seed_type"), "")
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
