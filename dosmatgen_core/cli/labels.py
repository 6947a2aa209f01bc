"""`dosmatgen` verbs. Labels: the GPAW site-DOS labeller, its shards and the reference database.

A verb imports its modules when it runs, so `dosmatgen --help` answers at once.
"""
from __future__ import annotations

import json
from pathlib import Path

from dosmatgen_core.paths import (DB_PATH, LABEL_DIR, MP_CSVS)


def _label(args) -> int:
    from dosmatgen_core.labels.labeller import (FAST_RECIPE, SEED_RECIPE, ShardWriter, put_first, run_labelling,
                                                select_tasks)
    out = Path(args.out)
    if args.first:
        from dosmatgen_core.checks import UserError, read_input_file
        if args.cif:
            raise UserError("--first orders the structure tables' queue; with --cif the files given are the queue",
                            "drop one of them")
        ids = read_input_file(args.first, "id list", 10**7).decode("utf-8", "replace").split()
    if args.cif:
        from dosmatgen_core.checks import read_structure_file
        from dosmatgen_core.structures import atoms_to_cif, to_atoms
        tasks = []
        for p in args.cif:
            s = read_structure_file(p)  # checked (and in file order), before any DFT is queued
            text = Path(p).read_bytes().decode("utf-8", "replace") if p.lower().endswith(".cif") else atoms_to_cif(to_atoms(s))
            tasks.append({"material_id": Path(p).stem, "cif": text})
    else:
        skip = ShardWriter(out).done_ids(args.also_done, retry=args.retry_failed)
        csvs = [Path(c) for c in args.csv] if args.csv else [c for c in MP_CSVS if c.exists()]
        if not csvs:
            from dosmatgen_core.checks import UserError
            raise UserError("no structure tables found", "pass --csv PATH or --cif FILE")
        tasks = select_tasks(csvs, max_atoms=args.max_atoms, skip=skip)
        if args.first:
            tasks, absent = put_first(tasks, ids)
            msg = f"{len(ids) - len(absent)} of {len(ids)} ids in {args.first} go first"
            if absent:
                msg += ("; not queued (labelled already, too large or not calculable): " + " ".join(absent[:10])
                        + (" …" if len(absent) > 10 else ""))
            print(msg, flush=True)
    print(f"{len(tasks)} structures to consider; writing to {out}", flush=True)

    def report(line):
        status = "FAILED " + line["failed"][:120] if "failed" in line else f"{line['formula']} {line['seconds']} s"
        print(f"{line['material_id']}: {status}", flush=True)

    recipe = FAST_RECIPE if args.recipe == "fast" else SEED_RECIPE
    stats = run_labelling(tasks, out, recipe=recipe, workers=args.workers, scheduler=args.scheduler,
                          timeout=args.timeout, cpu=not args.wall_clock, shard_size=args.shard_size, extra_done=args.also_done,
                          retry_failed=args.retry_failed,
                          on_result=report, max_tasks=args.max_tasks, max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    print(json.dumps({"labelled": stats.done, "failed": stats.failed, "seconds": round(stats.seconds, 1)}))
    return 0


def _seal(args) -> int:
    from dosmatgen_core.labels.labeller import ShardWriter
    # the labeller's lines, and the DFT-checked candidates' (app verifications, the truth bench)
    for prefix in ("labels", "generated"):
        made = ShardWriter(args.out, prefix=prefix).seal()
        print(f"{prefix}: {made or 'nothing pending'}")
    return 0


def _build_db(args) -> int:
    from dosmatgen_core.labels.reference_db import build_db
    shards = args.shards or [str(LABEL_DIR)]
    print(json.dumps(build_db(shards, args.db)))
    return 0


def add_parsers(sub) -> None:
    lab = sub.add_parser("label", help="compute GPAW site-DOS labels (resumable)")
    lab.add_argument("--out", default=str(LABEL_DIR), help="shard directory (default data/labels)")
    lab.add_argument("--csv", action="append", help="MP structure table(s); default the shared mp20+mpts52")
    lab.add_argument("--cif", nargs="+", help="label these CIF files instead of the tables")
    lab.add_argument("--max-atoms", type=int, default=8)
    lab.add_argument("--first", metavar="FILE", help="material ids (whitespace-separated) to label before the usual queue")
    lab.add_argument("--max-tasks", type=int, default=None)
    lab.add_argument("--max-minutes", type=float, default=None, help="stop submitting after this long")
    lab.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    lab.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, tcp://host:port")
    lab.add_argument("--timeout", type=float, default=900.0,
                     help="CPU seconds per structure before it is recorded as failed (its own seconds: load beside "
                          "it or a pause does not count)")
    lab.add_argument("--wall-clock", action="store_true", help="the timeout counts the clock's seconds instead")
    lab.add_argument("--shard-size", type=int, default=50)
    lab.add_argument("--also-done", action="append", default=[], help="other shard dirs whose ids count as done")
    lab.add_argument("--retry-failed", nargs="?", const="", default=None, metavar="TEXT",
                     help="calculate failed structures again: all of them, or those whose reason contains TEXT")
    lab.add_argument("--recipe", choices=["seed", "fast"], default="fast",
                     help="fast = seed recipe with a looser SCF criterion (bench label: MAE ~1e-4 states/eV)")
    lab.set_defaults(func=_label)

    seal = sub.add_parser("seal", help="seal pending label lines into a shard")
    seal.add_argument("--out", default=str(LABEL_DIR))
    seal.set_defaults(func=_seal)

    bdb = sub.add_parser("build-db", help="build the reference database from label shards")
    bdb.add_argument("--db", default=str(DB_PATH), help="SQLite path or ASE db URL (postgresql://...)")
    bdb.add_argument("shards", nargs="*", help="shard files or directories (default data/labels)")
    bdb.set_defaults(func=_build_db)
