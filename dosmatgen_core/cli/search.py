"""`dosmatgen search`: the labelled sites whose DFT DOS is closest to a target, as JSON.

A verb imports its modules when it runs, so `dosmatgen --help` answers at once.
"""
from __future__ import annotations

import json
from pathlib import Path


def _search(args) -> int:
    from dosmatgen_core.cli.generate import vasprun_target
    from dosmatgen_core.dos import read_dos_csv
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.scoring.search import site_index
    db_url = args.db or DB_URL
    if sum(x is not None for x in (args.ref, args.target_csv, args.target_vasprun)) != 1:
        raise ValueError("give a target: --ref ID --site I, --target-csv FILE or --target-vasprun FILE --site I "
                         "(one of them)")
    if args.target_vasprun:
        target, what = vasprun_target(args.target_vasprun, args.site)
        source = {"target_vasprun": args.target_vasprun, "site": args.site or 0, "source": what}
    elif args.target_csv:
        target = read_dos_csv(Path(args.target_csv).read_bytes())
        source = {"target_csv": args.target_csv}
    else:
        ref = open_db(db_url).get(args.ref)
        if args.site is None or not 0 <= args.site < len(ref.symbols):
            raise ValueError(f"--site must be 0..{len(ref.symbols) - 1} for {args.ref} ({' '.join(ref.symbols)})")
        target = ref.site_dos[args.site]
        source = {"ref": args.ref, "site": args.site, "element": ref.symbols[args.site]}
    exclude = set(args.exclude or [])
    if args.exclude_self and args.ref:
        exclude.add(args.ref)
    hits = site_index(db_url).search(target, top=args.top, by=args.by, align_shift=args.align_shift,
                                     exclude=exclude, element=args.element,
                                     per_structure=not args.all_sites)
    print(json.dumps({"target": source, "by": args.by, "align_shift": args.align_shift,
                      "excluded": sorted(exclude), "hits": [h.to_dict() for h in hits]}, indent=1))
    return 0


def add_parsers(sub) -> None:
    se = sub.add_parser("search", help="find the labelled sites whose DFT DOS is closest to a target (JSON)")
    se.add_argument("--ref", default=None, help="reference material id whose site DOS is the target")
    se.add_argument("--site", type=int, default=None, help="that site's index")
    se.add_argument("--target-csv", default=None, help="target DOS from a CSV (energy - E_F, DOS) instead")
    se.add_argument("--target-vasprun", default=None,
                    help="target DOS from a VASP vasprun.xml (LORBIT >= 10): atom --site's projected DOS")
    se.add_argument("--top", type=int, default=10)
    se.add_argument("--by", choices=["mae", "cosine"], default="mae", help="rank by MAE (states/eV) or by shape")
    se.add_argument("--align-shift", action="store_true", help="allow a rigid shift of up to ±1 eV per site")
    se.add_argument("--element", default=None, help="only sites of this element")
    se.add_argument("--exclude", action="append", help="leave out this material id (repeat)")
    se.add_argument("--exclude-self", action="store_true", help="leave out the reference material itself")
    se.add_argument("--all-sites", action="store_true", help="list every matching site, not the best one per material")
    se.add_argument("--db", default=None, help="reference database (default the shipped one)")
    se.set_defaults(func=_search)
