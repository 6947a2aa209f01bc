"""`dosmatgen search`: the labelled sites whose DFT DOS is closest to a target, as JSON.

A verb imports its modules when it runs, so `dosmatgen --help` answers at once.
"""
from __future__ import annotations

import json


def hit_units(window=None) -> dict[str, str]:
    """What each hit's numbers are in, over the energies compared: the JSON says it (a walk read
    'mae 0.234' without a unit)."""
    where = "-10..10 eV" if window is None else f"{window[0]:g}..{window[1]:g} eV, the target's window"
    return {"mae": f"states/eV (mean absolute difference over {where}, E - E_F)",
            "cosine": f"1 = the target's shape exactly (over {where})", "shift_ev": "eV",
            "site": "0-based index of the atom"}


def _search(args) -> int:
    from ase.data import chemical_symbols
    from dosmatgen_core import checks
    from dosmatgen_core.cli.generate import (adjusted, csv_target, fermi_of, given_window, knobs_of, need_site,
                                             vasprun_target)
    from dosmatgen_core.dos import AT_REST
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.scoring.search import site_index
    db_url = args.db or DB_URL
    if sum(x is not None for x in (args.ref, args.target_csv, args.target_vasprun)) != 1:
        raise ValueError("give a target: --ref ID --site I, --target-csv FILE or --target-vasprun FILE --site I "
                         "(one of them)")
    e_fermi = fermi_of(args)
    knobs = knobs_of(args)
    table = None            # a --target-csv file's table: a shift moves it before it is cut to the grid
    if not isinstance(args.top, int) or args.top < 1:
        raise checks.UserError(f"--top {args.top} is not a number of hits", "give --top 1 or more")
    element = window = None
    if args.element is not None:
        if (element := args.element.strip().capitalize()) not in chemical_symbols[1:]:
            raise checks.UserError(f"--element {args.element!r} is not an element symbol", "give one such as Ni or In")
    if args.target_vasprun:
        target, what, _, window = vasprun_target(args.target_vasprun, args.site)
        source = {"target_vasprun": args.target_vasprun, "site": args.site, "source": what}
    elif args.target_csv:
        target, what, window, table = csv_target(args.target_csv, getattr(args, "target_column", None), e_fermi)
        source = {"target_csv": args.target_csv, "source": what}
    else:
        ref = open_db(db_url).get(args.ref)
        need_site(args.site, "--ref", len(ref.symbols), args.ref, ref.symbols)
        site = checks.check_site(args.site, len(ref.symbols), args.ref)
        target = ref.site_dos[site]
        source = {"ref": args.ref, "site": site, "element": ref.symbols[site]}
    if args.window is not None:
        window = given_window(args.window, window)
    if knobs != AT_REST:           # as the app's "Adjust the target"
        target, _, window = adjusted(target, "", window, knobs, table)
        source["adjusted"] = dict(zip(("shift_ev", "scale", "smear_ev"), knobs))
    source["window_ev"] = list(window) if window else None      # where the hits were compared
    exclude = set(args.exclude or [])
    if args.ref and not args.include_ref:       # as the app's table of known sites: never the target itself
        exclude.add(args.ref)
    hits, copies = without_copies(site_index(db_url), db_url, target, args.top, exclude, by=args.by,
                                  align_shift=args.align_shift, element=element,
                                  per_structure=not args.all_sites, window=window)
    print(json.dumps({"target": source, "by": args.by, "align_shift": args.align_shift, "units": hit_units(window),
                      "excluded": sorted(exclude), "excluded_copies": copies, "hits": [named_hit(h) for h in hits]},
                     indent=1, ensure_ascii=False))
    return 0


def without_copies(index, db_url: str, target, top: int, exclude: set, **search) -> tuple[list, list[str]]:
    """index.search's top hits with no site of an excluded material, nor of a copy of one under
    another id, nor a twin of a better hit (seeding.known_search, as the app's known sites and the
    seeds leave them out); and the ids of the copies left out above the last hit kept."""
    import functools

    from dosmatgen_core.candidates.seeding import known_search
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.structures import to_structure
    db = open_db(str(db_url))

    @functools.lru_cache(maxsize=None)
    def structure_of(mid: str):
        return to_structure(db.get(mid).atoms)
    left_out = [structure_of(m) for m in sorted(exclude) if m in index.code_of]
    kept, copies = known_search(index, target, top, left_out, structure_of, exclude=exclude, **search)
    return kept, list(dict.fromkeys(h.material_id for h in copies))


def named_hit(hit) -> dict:
    """A hit as JSON, its formula and name written as `materials` and the app write them ('NaCl',
    not the database's 'ClNa')."""
    from dosmatgen_core.names import formula, material_name
    return dict(hit.to_dict(), formula=formula(hit.formula), name=material_name(hit.material_id, hit.formula))


def _materials(args) -> int:
    """The labelled materials whose id, formula or elements match what was typed, as JSON rows:
    the ids that --ref takes."""
    from dosmatgen_core import checks
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.names import formula, material_name
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.scoring.prototypes import short_name
    if args.limit < 1:
        raise checks.UserError(f"--limit {args.limit} is not a number of rows", "give --limit 1 or more")
    try:
        rows = open_db(args.db or DB_URL).search(text=" ".join(args.text) or None, max_atoms=args.max_atoms)
    except ValueError as exc:
        # the message names the forms text can take (material_query.not_found): the hint, the next step
        raise checks.UserError(str(exc), "`dosmatgen materials` with no text lists every labelled material") from None
    print(json.dumps({"materials": len(rows), "shown": min(len(rows), args.limit), "rows": [
        {"id": r["material_id"], "name": material_name(r["material_id"], r["formula"]), "formula": formula(r["formula"]),
         "atoms": r["natoms"], "spacegroup": r["spacegroup"],
         "structure_type": short_name(r["structure_type"]) if r["structure_type"] else None}
        for r in rows[:args.limit]]}, indent=1, ensure_ascii=False))
    return 0


def add_parsers(sub) -> None:
    from dosmatgen_core.cli.generate import add_knob_arguments, add_reference_flags
    ma = sub.add_parser("materials", help="list the labelled materials (the ids --ref takes) by id, formula or elements")
    ma.add_argument("text", nargs="*", help="an id (mp-22862), a formula (NaCl), elements (Au Ni) or a structure type "
                                            "(perovskite, rutile, L1_2); none: all")
    ma.add_argument("--max-atoms", type=int, default=None, help="only cells of at most this many atoms")
    ma.add_argument("--limit", type=int, default=50, help="rows to print at most")
    ma.add_argument("--db", default=None, help="reference database (default the shipped one)")
    ma.set_defaults(func=_materials)

    se = sub.add_parser("search", help="find the labelled sites whose DFT DOS is closest to a target (JSON)")
    se.add_argument("--ref", default=None, help="reference material id whose site DOS is the target")
    se.add_argument("--site", type=int, default=None, help="that site's index")
    se.add_argument("--target-csv", default=None, help="target DOS from a CSV (energy - E_F, DOS) instead")
    se.add_argument("--target-column", default=None, metavar="NAME",
                    help="--target-csv holds several named curves (the app's DOS CSV): the one to take")
    se.add_argument("--target-fermi", type=float, default=None, metavar="EV",
                    help="--target-csv's energies are absolute (a DOSCAR's): the file's Fermi energy in eV, "
                         "subtracted before the curve is regridded")
    add_knob_arguments(se)
    se.add_argument("--target-vasprun", default=None,
                    help="target DOS from a VASP vasprun.xml (LORBIT >= 10): atom --site's projected DOS")
    se.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="compare only on E - E_F from LO to HI eV (default: all the grid, or what the file covers)")
    se.add_argument("--top", type=int, default=10, help="how many sites to list (default 10)")
    se.add_argument("--by", choices=["mae", "cosine"], default="mae", help="rank by MAE (states/eV) or by shape")
    se.add_argument("--align-shift", action="store_true", help="allow a rigid shift of up to ±1 eV per site")
    se.add_argument("--element", default=None, help="only sites of this element")
    se.add_argument("--exclude", action="append", help="leave out this material id, and its copies under other ids "
                    "(repeat)")
    add_reference_flags(se, "with --ref: list the reference material itself too, its own site first at "
                            "MAE 0 (the app never does); its copies under other ids show with --all-sites", ("--exclude-self", "--exclude-ref"))
    se.add_argument("--all-sites", action="store_true", help="list every matching site, not the best one per material")
    se.add_argument("--db", default=None, help="reference database (default the shipped one)")
    se.set_defaults(func=_search)
