"""`dosmatgen` verbs. Generation runs: generate, list runs, re-score and DFT-verify candidates.

A verb imports its modules when it runs, so `dosmatgen --help` answers at once. Every input is
checked before a model loads or sampling starts (dosmatgen_core.checks).
"""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import time
from pathlib import Path

from dosmatgen_core.paths import MODEL_PATH, PREDICTOR_PATH
from dosmatgen_core.settings import PRESET_ID, SHIPPED

RUNS_HELP = "run store (default $DOSMATGEN_RUNS, else runs/studio.db)"

# What the app does (settings.py, which the Generate page reads too): a target taken from a reference
# material's site never seeds from that material, nor lists it (or a copy) among its known sites; and
# a run draws at most max_candidates.
LEAVE_OUT_REFERENCE: bool = SHIPPED.leave_out_reference
MAX_CANDIDATES: int = SHIPPED.max_candidates


def _trusting(loader, trust: bool) -> dict:
    """trust= for a model loader that takes it (all three do once checkpoint trust is in)."""
    if not trust:
        return {}
    if "trust" not in inspect.signature(loader).parameters:
        from dosmatgen_core.checks import UserError
        raise UserError(f"{loader.__name__} cannot load untrusted checkpoints in this version",
                        "drop --trust-checkpoint and use the shipped models")
    return {"trust": True}


def _store(path, must_exist: bool = False):
    """The run store, checked; for reading verbs it must exist already."""
    from dosmatgen_core import checks
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.paths import RUNS_PATH
    p = Path(path or RUNS_PATH).expanduser()
    if must_exist:
        if p.is_dir():
            raise checks.UserError(f"run store {p} is a directory", "give the run store file with --runs PATH")
        if not p.exists():
            raise checks.UserError(f"no run store at {p}", "generate a run first, or give --runs PATH")
        return RunStore(p)
    return RunStore(checks.check_store_path(p))


def _run(store, run_id: str) -> dict:
    from dosmatgen_core import checks
    try:
        return store.get(run_id)
    except KeyError:
        raise checks.NotFound(f"no run with id '{run_id}' in {store.path}",
                              checks.did_you_mean(run_id, store.ids(), "`dosmatgen runs` lists the runs")) from None


def _candidate(run: dict, rank: int) -> dict:
    from dosmatgen_core import checks
    ranks = sorted(c["rank"] for c in run["candidates"])
    if rank not in ranks:
        raise checks.NotFound(f"run {run['id']} has no candidate of rank {rank}",
                              f"use a rank from {ranks[0]} to {ranks[-1]}" if ranks else "this run has no candidates")
    return next(c for c in run["candidates"] if c["rank"] == rank)


def _grow_run(text: str, runs) -> tuple:
    """--grow-from RUN:RANK → (store, run, candidate), each checked."""
    from dosmatgen_core import checks
    run_id, _, rank = text.partition(":")
    if not rank.strip().isdigit():
        raise checks.UserError(f"--grow-from {text!r} names no candidate", "give RUN:RANK, e.g. --grow-from a1b2c3d4:1")
    store = _store(runs, must_exist=True)
    run = _run(store, run_id.strip())
    return store, run, _candidate(run, int(rank))


def _grow_source(text: str, runs) -> dict:
    """--grow-from RUN:RANK → seeding.grow_source's answer: the candidate's DFT-checked cell once it
    has one, as the app's "Grow from this candidate" takes it."""
    from dosmatgen_core.candidates.seeding import grow_source
    from dosmatgen_core.scoring.verify import Verifier
    store, run, c = _grow_run(text, runs)
    return grow_source(run, c, Verifier(store).status(run["id"], c["rank"]))


def _grown_target(text: str, runs) -> dict:
    """The target a round from RUN:RANK aims at when no target is given: the candidate's own target
    row in its run, with the run's window and reference (the app's round keeps its form's target;
    the CLI took the example's, Ni in Au3Ni, for a VO run's round)."""
    import numpy as np
    _, run, c = _grow_run(text, runs)
    st = run["settings"]
    row = int(next(iter(c["site_to_target"].values()), 0))
    title = (run.get("title") or "").split(" · grown from ")[0]
    source = st.get("target_source") or (title[len("target: "):] if title.startswith("target: ") else
                                         f"the target of run {run['id']}")
    return {"target": np.asarray(st["targets"][row], float), "window": st.get("window"), "target_source": source,
            "reference_id": st.get("reference_id"), "seed_exclude": list(st.get("seed_exclude") or []),
            "target_element": st.get("target_element") or ""}


def _verify(args) -> int:
    from dosmatgen_core.scoring.verify import Verifier
    store = _store(args.runs, must_exist=True)
    run = _run(store, args.run_id)
    c = _candidate(run, args.rank)
    res = Verifier(store).run(args.run_id, args.rank, timeout=args.timeout, relaxed=args.relaxed)
    res = dict(res, result={k: v for k, v in (res.get("result") or {}).items() if k != "site_dos"},
               units={"mae": "states/eV, DFT (GPAW) of this candidate", "cosine": "1: the target's shape exactly",
                      "seconds": "s"})
    print(json.dumps(res, indent=2))
    for line in verified_lines(c, res["result"].get("dos_match") or {}):
        print(line, file=sys.stderr)
    return 0 if res["status"] == "done" else 1


def verified_lines(c: dict, dft_match: dict) -> list[str]:
    """A check's numbers for people, on stderr: per conditioned site, its element, what GPAW says
    and what the predictor said before ('site 0 (Ni): DFT MAE 0.184 states/eV, cosine 0.912;
    predicted MAE 0.118')."""
    from dosmatgen_core.candidates.runs import structure_of
    species = structure_of(c).species
    predicted = {int(k): v for k, v in (c.get("dos_match") or {}).items()}
    out = []
    for site, m in sorted(((int(k), v) for k, v in dft_match.items())):
        p = predicted.get(site, {}).get("mae")
        out.append(f"site {site} ({species[site].symbol}): DFT MAE {m['mae']:.3f} states/eV, cosine {m['cosine']:.3f}"
                   + (f"; predicted MAE {p:.3f}" if p is not None else ""))
    return out


def _rounds(args) -> int:
    """GPAW checks of a stored run's top candidates, then DFT-guided rounds grown from the best
    check so far while its cosine to the target is below the bar (candidates.rounds)."""
    from dosmatgen_core import checks
    from dosmatgen_core.candidates.pipeline import run_generation, shipped_guide
    from dosmatgen_core.candidates.rounds import MAX_ROUNDS, run_rounds
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.scoring.search import site_index
    from dosmatgen_core.scoring.verify import Verifier
    if not 0 <= args.rounds <= MAX_ROUNDS:
        raise checks.UserError(f"--rounds {args.rounds} is out of range", f"give 0 to {MAX_ROUNDS}")
    if not 1 <= args.top <= 10:
        raise checks.UserError(f"--top {args.top} is out of range", "give 1 to 10 candidates to check per round")
    store = _store(args.runs, must_exist=True)
    run = _run(store, args.run_id)
    loaded = load_model(MODEL_PATH) if args.rounds else None
    predictor = load_predictor(PREDICTOR_PATH) if args.rounds else None
    guide = shipped_guide("cpu") if args.rounds and run["settings"].get("particles", 1) > 1 else None

    def generate(req):
        new = run_generation(req, loaded, predictor, guide=guide, store=store, db_url=DB_URL)
        print(f"round run {new['id']}: {new['title']}", file=sys.stderr)
        return new
    history = run_rounds(run, Verifier(store), generate, args.rounds, top=args.top, relaxed=args.relaxed,
                         per_source=args.per_source, labelled=frozenset(site_index(DB_URL).code_of),
                         log=lambda m: print(m, file=sys.stderr, flush=True))
    print(json.dumps(history, indent=1))
    return 0


def _runs(args) -> int:
    """List the stored runs: id, status (interrupted: its process is gone), created, candidates, its
    GPAW checks and their best new DFT MAE and cosine (Verifier.summaries), title."""
    from dosmatgen_core.candidates.words import settings_words
    from dosmatgen_core.scoring.verify import Verifier
    store = _store(args.runs, must_exist=True)
    rows = store.list()
    dft = Verifier(store, label_dir=None).summaries([r["id"] for r in rows])
    if args.json:
        print(json.dumps([{**{k: r[k] for k in ("id", "status", "title", "created", "candidates")},
                           "made": settings_words(r.get("settings") or {}),
                           **{f"dft_{k}": v for k, v in dft[r["id"]].items()}} for r in rows], indent=1))
        return 0
    print(f"{'id':<11} {'status':<12} {'created':<17} {'cand.':>5} {'DFT':>4} {'MAE new':>8} {'cos new':>8}  title")

    def num(x):
        return "—" if x is None else f"{x:.3f}"
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(r["created"]))      # UTC, as the Runs page
        d = dft[r["id"]]
        print(f"{r['id']:<11} {r['status']:<12} {when:<17} {r['candidates']:>5} {d['checks']:>4} "
              f"{num(d['best_new_mae']):>8} {num(d['best_new_cosine']):>8}  {r['title']}")
        print(f"{'':<11} {settings_words(r.get('settings') or {})}")      # how it was made (mode, seeds, steps)
    print("(DFT: finished GPAW checks; MAE (states/eV) and cosine (1 = the target's shape): those of the new "
          "structure with the lowest DFT MAE; `rounds` grows from the best-shaped check instead, the highest "
          "DFT cosine; created in UTC)")
    return 0


# ---- generate ----------------------------------------------------------------------------------

def _db(url):
    from dosmatgen_core.labels.reference_db import open_db
    return open_db(url)


def _structure_arrays(s) -> dict:
    return {"numbers": list(s.atomic_numbers), "frac": s.frac_coords.tolist(), "lattice": s.lattice.matrix.tolist()}


def _source(text: str, db_url: str, what: str):
    """--ref / --template: a structure file (CIF, POSCAR) → ('file', Structure, name), or a
    database id → ('db', Reference, id)."""
    from dosmatgen_core import checks
    if checks.is_structure_path(text):
        return "file", checks.read_structure_file(text), Path(text).name
    try:
        return "db", _db(db_url).get(text), text
    except checks.NotFound as exc:
        raise checks.NotFound(f"{what}: {exc.what}", exc.fix) from None


def progress_printer(stream, every: float = 10.0):
    """progress(fraction, eta, message) for a run. On a terminal one line redrawn in place; into a
    file (a log, a pipe) a line when the message changes or every `every` seconds, so a redirected
    run does not fill its log with hundreds of carriage-return updates (a walk's 25 kB)."""
    live = stream.isatty()
    last = {"phase": None, "t": -every}

    def progress(f: float, eta: float, message: str) -> None:
        text = f"{message} ({100 * f:.0f} %, ~{eta:.0f} s left)"
        if live:
            print(f"\r{text}   ", end="", file=stream, flush=True)
            return
        now, phase = time.monotonic(), re.sub(r"\d+", "#", message)     # 'step 12/100' is one phase
        if phase != last["phase"] or now - last["t"] >= every:
            print(text, file=stream, flush=True)
            last.update(phase=phase, t=now)
    return progress


def say(note: str) -> None:
    """A note beside a verb's output: on stderr, so that stdout stays the JSON it promises."""
    print(f"note: {note}", file=sys.stderr)


def need_site(site: int | None, flag: str, n_sites: int, name: str, symbols) -> None:
    """--site is the atom whose DOS is the target: with --ref or --target-vasprun it is asked
    for, never taken as 0 unsaid (search refused, generate took site 0)."""
    from dosmatgen_core import checks
    if site is None:
        listed = " ".join(f"{k}:{el}" for k, el in enumerate(symbols[:12])) + (" …" if len(symbols) > 12 else "")
        raise checks.UserError(f"{flag} needs --site, the atom whose DOS is the target",
                               f"give --site 0..{n_sites - 1} for {name} ({listed})")


def vasprun_target(path, site: int | None):
    """--target-vasprun FILE --site I: that atom's projected DOS on the grid, what to call it, its
    element, and the window the run's energies cover (None: the whole grid; said on stderr)."""
    from dosmatgen_core import checks
    from dosmatgen_core.dos import file_window, grid_note
    from dosmatgen_core.vasprun import MAX_VASPRUN_BYTES, read_vasprun
    name = Path(path).name
    data = checks.read_input_file(path, "vasprun.xml", MAX_VASPRUN_BYTES)
    try:
        run = read_vasprun(data)
    except ValueError as exc:
        raise checks.UserError(f"{name}: {exc}") from None
    symbols = [x.specie.symbol for x in run.structure]
    need_site(site, "--target-vasprun", len(symbols), name, symbols)
    k = checks.check_site(site, len(run.structure), name)
    if note := grid_note(run.energy):
        say(f"{name}: {note[:1].lower()}{note[1:]}")
    return run.site_dos[k], f"VASP site DOS of {run.label(k)} in {name}", symbols[k], file_window(run.energy)


def csv_target(path, column: str | None = None, e_fermi: float | None = None) -> tuple:
    """--target-csv FILE [--target-column NAME] [--target-fermi EV]: the curve on the grid, its name,
    as the app names an upload, the window its energies cover (None: the whole grid), where it is
    compared, and the table read (energy, values; --target-shift moves it before regridding); what regridding did to it (a window short of −10…10 eV, small negative dips) is
    said on stderr, as the app says it on the page. column: of a table with several named curves,
    the one to take. e_fermi: the file's Fermi energy, for absolute energies (dos.read_dos_table)."""
    from dosmatgen_core import checks
    from dosmatgen_core.dos import (MAX_CSV_BYTES, curve_columns, file_window, grid_note, negative_note, read_dos_table,
                                    table_to_grid)
    from dosmatgen_core.names import file_curve_name
    name = Path(path).name
    data = checks.read_input_file(path, "target DOS file", MAX_CSV_BYTES)
    try:
        said: list[str] = []
        energy, values = read_dos_table(data, said, column=column, e_fermi=e_fermi or 0.0)
        curve = table_to_grid(energy, values)
    except ValueError as exc:
        if column is None and (named := curve_columns(data)):
            exc = f"{exc}; or name it with --target-column ({', '.join(named)})"
        raise checks.UserError(f"{name}: {exc}") from None
    for note in (*said, grid_note(energy, e_fermi), negative_note(values)):
        if note:
            say(f"{name}: {note[:1].lower()}{note[1:]}")
    return (curve, file_curve_name(name, column, e_fermi), file_window(energy), (energy, values))


def fermi_of(args) -> float | None:
    """--target-fermi EV, which only a --target-csv file's energies take."""
    from dosmatgen_core import checks
    e_fermi = getattr(args, "target_fermi", None)
    if e_fermi is not None and not getattr(args, "target_csv", None):
        raise checks.UserError("--target-fermi is the Fermi energy of a --target-csv file's energies",
                               "give it with --target-csv, or drop it")
    return e_fermi


def knobs_of(args) -> tuple[float, float, float]:
    """--target-shift EV, --target-scale X, --target-smear EV, checked (as the app's sliders bound
    them); (0, 1, 0) when none is given."""
    from dosmatgen_core import checks
    from dosmatgen_core.dos import AT_REST
    given = (getattr(args, k, None) for k in ("target_shift", "target_scale", "target_smear"))
    return checks.check_knobs(*(d if v is None else v for v, d in zip(given, AT_REST)))


def adjusted(curve, name: str, window, knobs, table=None) -> tuple:
    """The target after --target-shift/-scale/-smear, as the app's "Adjust the target" makes it
    (dos.adjusted_target): the curve, its name and the energies compared."""
    from dosmatgen_core import checks
    from dosmatgen_core.dos import AT_REST, adjusted_target
    from dosmatgen_core.names import adjusted_name
    if tuple(knobs) == AT_REST:
        return curve, name, window
    try:
        out, window = adjusted_target(curve, *knobs, window, table)
    except ValueError as exc:
        raise checks.UserError(f"--target-shift {knobs[0]:g}: {exc}", "give a smaller --target-shift",
                               "target_shift") from None
    return out, adjusted_name(name, *knobs), window


def add_knob_arguments(parser) -> None:
    """--target-shift/-scale/-smear, on generate and search alike: the app's "Adjust the target"."""
    from dosmatgen_core.dos import SCALE_RANGE, SHIFT_RANGE_EV, SMEAR_RANGE_EV
    parser.add_argument("--target-shift", type=float, default=None, metavar="EV",
                        help=f"move the target along energy ({SHIFT_RANGE_EV[0]:g} to {SHIFT_RANGE_EV[1]:g} eV; positive "
                             "moves states up); a --target-csv file is moved before it is regridded")
    parser.add_argument("--target-scale", type=float, default=None, metavar="X",
                        help=f"multiply the target's height ({SCALE_RANGE[0]:g} to {SCALE_RANGE[1]:g})")
    parser.add_argument("--target-smear", type=float, default=None, metavar="EV",
                        help=f"extra Gaussian smearing of the target ({SMEAR_RANGE_EV[0]:g} to {SMEAR_RANGE_EV[1]:g} eV)")


def given_window(window, covered=None) -> tuple[float, float]:
    """--window LO HI, checked: on the grid, at least 2 eV wide, and inside what the target's file
    covers (covered: its window; None for a curve known on the whole grid)."""
    from dosmatgen_core import checks
    w = checks.check_window(window)
    if covered is not None and (w[0] < covered[0] - 1e-6 or w[1] > covered[1] + 1e-6):
        raise checks.UserError(f"--window {w[0]:g} {w[1]:g} reaches beyond the file's data ({covered[0]:g} to "
                               f"{covered[1]:g} eV)", "give a window inside it, or none to use all of it", "window")
    return w


def closest_element(target, db_url: str, window=None) -> str:
    """The element of the labelled site whose DFT DOS is closest to the target (MAE, on its
    window): an uploaded curve's most likely element, as the app proposes it for fixed-type mode."""
    from dosmatgen_core.scoring.search import site_index
    return site_index(db_url).search(target, top=1, window=window)[0].element


def _targets_and_template(args, db_url: str) -> tuple[dict, object]:
    """Request fields from --target-csv / --target-vasprun / --ref / --template, all read and checked; and, for a
    reference given as a file, (structure, site, 'predicted' | 'gpaw', name): whose site DOS becomes the target
    once the whole request is checked, the predictor's, or with --gpaw-target the cell's own DFT (minutes of
    GPAW, spent only on a request that will run)."""
    from dosmatgen_core import checks
    from dosmatgen_core.dos import AT_REST, NPTS
    from dosmatgen_core.names import adjusted_name, formula, site_curve_name
    from dosmatgen_core.structures import MAX_ATOMS
    kw: dict = {}
    predict_from = None
    target = None
    element = None          # the target atom's element, where the target names one
    ref_id = args.ref or PRESET_ID          # no target given at all: the example, the app's preset
    e_fermi = fermi_of(args)
    knobs = knobs_of(args)
    if args.mode == "unconditional" and knobs != AT_REST:
        raise checks.UserError("--target-shift, --target-scale and --target-smear adjust a target, and --mode "
                               "unconditional has none", "drop them, or choose a mode with a target")
    table = None            # a --target-csv file's table: a shift moves it before it is cut to the grid
    if getattr(args, "gpaw_target", False):
        # one line naming the flag that conflicts (walk 16 read the same words for each)
        other = ("--target-csv" if args.target_csv else "--target-vasprun" if args.target_vasprun else None)
        if other:
            raise checks.UserError(f"--gpaw-target and {other} both set the target", "keep one of them")
        if args.mode == "unconditional":
            raise checks.UserError("--gpaw-target sets a target, and --mode unconditional has none",
                                   "drop --gpaw-target, or choose a mode with a target")
        if args.ref is None:
            raise checks.UserError("--gpaw-target calculates the structure file given as --ref",
                                   "give --ref FILE (CIF or POSCAR)")
    grown = (_grown_target(args.grow_from, args.runs) if getattr(args, "grow_from", None) and args.mode != "unconditional"
             and not (args.ref or args.target_csv or args.target_vasprun) else None)
    if args.mode == "unconditional":
        pass
    elif grown is not None:         # a round from a stored candidate, no target given: its run's target
        target, kw["target_source"] = grown["target"], grown["target_source"]
        if grown["window"]:
            kw["window"] = tuple(grown["window"])
        if grown["reference_id"]:
            kw["reference_id"] = grown["reference_id"]
        kw["seed_exclude"] = grown["seed_exclude"]
        if grown["target_element"]:           # as the app's rounds keep it (rounds._round_kwargs)
            kw["target_element"] = grown["target_element"]
    elif args.target_vasprun:
        target, kw["target_source"], element, kw["window"] = vasprun_target(args.target_vasprun, args.site)
    elif args.target_csv:
        target, kw["target_source"], kw["window"], table = csv_target(args.target_csv,
                                                                      getattr(args, "target_column", None), e_fermi)
    else:
        kind, ref, name = _source(ref_id, db_url, "--ref")
        if getattr(args, "gpaw_target", False) and kind != "file":
            raise checks.UserError(f"--gpaw-target calculates a structure file; {name} has DFT labels already",
                                   "drop --gpaw-target, or give --ref FILE (CIF or POSCAR)")
        symbols = [x.specie.symbol for x in ref] if kind == "file" else ref.symbols
        if args.ref is not None:
            need_site(args.site, "--ref", len(symbols), name, symbols)
        site = checks.check_site(0 if args.site is None else args.site, len(symbols), name)
        element = symbols[site]
        if kind == "db":
            target = ref.site_dos[site]
            kw["target_source"] = site_curve_name("dft", formula(ref.formula), site, element)
            kw["reference_id"] = ref_id
            if not args.include_ref:    # in every mode: the rounds grown after it never seed from it either
                kw["seed_exclude"] = [ref_id]
        else:
            how = "gpaw" if getattr(args, "gpaw_target", False) else "predicted"
            predict_from = (ref, site, how, name)
            kw["target_source"] = site_curve_name(how, formula(ref.composition.reduced_formula), site, element)
    if element:
        kw["target_element"] = element       # the card says when the atom carrying it is another element
    if getattr(args, "window", None) is not None:
        kw["window"] = given_window(args.window, kw.get("window"))
    if target is not None:
        # the window moves with the shift: a moved file that covers the whole grid has none left
        target, kw["target_source"], kw["window"] = adjusted(target, kw["target_source"], kw.get("window"), knobs,
                                                             table)
    elif predict_from is not None:
        # a file given as --ref is adjusted once its DOS is predicted (_generate); a shift that leaves too
        # little of the window is refused now, before any model or GPAW runs
        adjusted([0.0] * NPTS, "", kw.get("window"), knobs)
        kw["target_source"] = adjusted_name(kw["target_source"], *knobs)
    if args.mode == "template":
        # the reference's own structure by default; a DOS file names none (it fell back on the example's)
        tpl_source = args.template or (None if args.target_csv or args.target_vasprun else ref_id)
        if tpl_source is None:
            raise checks.UserError("template mode needs the structure to rework; a DOS file names none",
                                   "give --template ID|FILE")
        kind, tpl, name = _source(tpl_source, db_url, "--template")
        s = tpl if kind == "file" else _ase_structure(tpl.atoms)
        if len(s) > MAX_ATOMS:
            raise checks.UserError(f"template {name} has {len(s)} atoms; the model makes cells of at most {MAX_ATOMS}",
                                   "choose a smaller template")
        kw.update(n_atoms=len(s), template_id=name, template=_structure_arrays(s),
                  strength=checks.check_strength(args.strength), pinned=args.pin or [])
    if args.mode == "seeded":
        if args.cond or args.pin:
            raise checks.UserError("--cond and --pin name atoms of a new or template cell; in seeded mode the "
                                   "known structure's matching site carries the target",
                                   "drop them, or use --mode masked / --mode template")
        # a placeholder curve until the predictor gives the real one: the request is checked now
        curve = target.tolist() if target is not None else [0.0] * 400
        kw.update(targets=[curve], cond_sites=[], n_seeds=args.seeds, seed_by=args.seed_by, fix_element=args.fix_element,
                  substitutions=args.substitutions, distant_swaps=args.distant_swaps,
                  strength=checks.check_strength(args.strength), top_up=checks.check_top_up(args.top_up), db_url=db_url)
        if args.grow_from:
            from dosmatgen_core.candidates.rounds import round_title
            from dosmatgen_core.candidates.seeding import seed_arguments
            src = _grow_source(args.grow_from, args.runs)
            kw.update(grow_from=[seed_arguments(src)], title=round_title(f"target: {kw['target_source']}", src))
    elif args.grow_from:
        raise checks.UserError("--grow-from grows a seeded run around a candidate", "use --mode seeded (the default)")
    elif args.mode != "unconditional":
        cond = args.cond or [0]
        curve = target.tolist() if target is not None else [0.0] * 400
        kw.update(targets=[curve] * len(cond), cond_sites=cond)
    if args.mode == "fixed_type":
        el = args.element or element or closest_element(target, db_url, kw.get("window"))
        if not args.element:
            say(f"--element not given: the conditioned atoms are {el}, "
                + ("the target atom's element" if element else "the element of the closest known site"))
        kw["fixed"] = {i: el for i in kw["cond_sites"]}
    # titled as the app titles its runs, so that a round grown from it reads 'target: … · grown from …'
    kw.setdefault("title", f"target: {kw['target_source']}" if "target_source" in kw
                  else "no target (unconditional baseline)")
    return kw, predict_from


def gpaw_rows(s, name: str, store, label_dir=None) -> list:
    """--gpaw-target: the file's cell calculated with GPAW as the app's "Calculate this cell with GPAW"
    does (scoring.reference_dft: the labelling recipe on the cell as given, rows in its order,
    cached in the run store, kept as a label); its site DOS rows."""
    from dosmatgen_core import checks
    from dosmatgen_core.scoring.reference_dft import ReferenceChecks, label_id, why_not
    from dosmatgen_core.scoring.verify import Verifier
    if (why := why_not(s)) is not None:
        raise checks.UserError(f"--gpaw-target: {name} is not calculated here: {why}",
                               "drop --gpaw-target to use its predicted DOS")
    from dosmatgen_core.paths import LABEL_DIR
    ref = ReferenceChecks(Verifier(store, label_dir=label_dir or LABEL_DIR, workers=1))
    if ref.status(s) is None or ref.status(s)["status"] != "done":
        say(f"GPAW on {name} ({len(s)} atoms), the labelling recipe on the cell as given: about a minute or more")
    res = ref.run(s, label_id(f"upload:{Path(name).name}", s), name)
    if res["status"] != "done":
        raise checks.UserError(f"GPAW could not calculate {name}: {res['error']}",
                               "drop --gpaw-target to use its predicted DOS")
    return res["line"]["site_dos"]


def _ase_structure(atoms):
    from dosmatgen_core.structures import to_structure
    return to_structure(atoms)


def check_run_size(n) -> int:
    """--n, checked: at most MAX_CANDIDATES, as the app's Candidates box (the library takes more)."""
    from dosmatgen_core import checks
    return checks.check_candidates(n, cap=MAX_CANDIDATES)


def _generate(args) -> int:
    """Condition site(s) of a new structure on a target DOS and store the run."""
    import numpy as np
    from dosmatgen_core import checks
    from dosmatgen_core.paths import DB_URL
    db_url = DB_URL
    # 1. everything the user typed, before any model loads
    particles = 1 if args.mode == "unconditional" else checks.check_particles(args.particles)
    req_kw = dict(mode=args.mode, n_atoms=checks.check_atoms(args.n_atoms), n_candidates=check_run_size(args.n),
                  guidance=checks.check_guidance(args.w), steps=checks.check_steps(args.steps),
                  particles=particles, steer=checks.check_steer(args.steer), seed=checks.check_seed(args.seed),
                  device=checks.check_device(args.device))
    from dosmatgen_core.candidates.pipeline import Request, check_novelty_tables, run_generation, shipped_guide
    from dosmatgen_core.scoring.search import site_index
    store = _store(args.runs)
    if not args.no_novelty:
        check_novelty_tables()
    kw, predict_from = _targets_and_template(args, db_url)
    req = Request(**{**req_kw, **kw})
    if predict_from is None:
        req.specs()                              # the whole request, checked (seeded: its seeds found)
    else:
        req.check()                              # the target is predicted below; its seeds are searched then
    dft_rows = gpaw_rows(predict_from[0], predict_from[3], store) if predict_from and predict_from[2] == "gpaw" else None
    # 2. the models
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor
    loaded = load_model(args.model or MODEL_PATH, device=req.device, **_trusting(load_model, args.trust_checkpoint))
    predictor = load_predictor(PREDICTOR_PATH, **_trusting(load_predictor, args.trust_checkpoint))
    guide = shipped_guide(req.device, trust=args.trust_checkpoint) if req.particles > 1 else None
    if predict_from is not None:    # a reference file has no DFT label: its predicted (or --gpaw-target) site DOS
        s, site, _, _ = predict_from
        curve = (np.asarray(dft_rows[site], float) if dft_rows is not None else
                 predictor.predict([(np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix)])[0][site])
        curve, _, req.window = adjusted(curve, "", req.window, knobs_of(args))     # named so already
        req.targets = [curve.tolist()] * max(len(req.cond_sites), 1)
        req.specs()
    run = run_generation(req, loaded, predictor, guide=guide, store=store, db_url=db_url,
                         check_novelty=not args.no_novelty,
                         progress=progress_printer(sys.stderr))
    print(file=sys.stderr)
    print(json.dumps({"run": run["id"], "title": run.get("title"), **run["summary"], "units": SUMMARY_UNITS}, indent=2))
    # the ranking for people, on stderr: stdout stays one JSON document
    has_target = req.mode != "unconditional"
    labelled = frozenset(site_index(db_url).code_of) if has_target else frozenset()   # as `dosmatgen rounds`
    for line in ranked_lines(run, has_target, labelled=labelled):
        print(line, file=sys.stderr)
    if run.get("saved_to"):
        print(f"warning: {run['store_error']}; the run is kept in {run['saved_to']} instead", file=sys.stderr)
        return 1
    return 0


SUMMARY_UNITS = {"mae": "states/eV, predicted by the site-DOS predictor (not DFT)", "seconds": "s",
                 "e_above_hull": "eV/atom"}


def ranked_lines(run: dict, has_target: bool, top: int = 10, labelled: frozenset = frozenset()) -> list[str]:
    """The run's first candidates as a person reads them: formula, space group, geometry, charge
    balance (intermetallics need none), novelty and, with a target, the predicted MAE of the atom
    carrying it; then the way to their DFT check, naming the ranks it checks (check_words).
    labelled: the reference db's ids, as `dosmatgen rounds` passes them to certify.pick."""
    from dosmatgen_core.candidates.runs import structure_of
    from dosmatgen_core.candidates.words import NOVEL_NOTE, origin_text, pressed_text
    from dosmatgen_core.names import formula
    from dosmatgen_core.scoring.evaluate import STRAINED, intermetallic
    out = []
    for c in run["candidates"][:top]:
        geometry = f"geometry {'valid' if c.get('structurally_valid') else 'invalid'}"
        if c.get("structurally_valid") and (sc := c.get("shortest_contact")) and sc["ratio"] < STRAINED:
            # as the app's orange badge: valid by the field's 0.5 Å check, yet far closer than bonded atoms
            geometry += f" but strained ({sc['pair']} at {sc['distance']:.2f} Å, {sc['ratio']:.0%} of the covalent radii)"
        charge = ("intermetallic" if intermetallic(c["formula"]) else
                  "some oxidation states balance" if c.get("charge_neutral") else "no oxidation states balance")
        known = ("new" if c.get("novel") else "the reference itself" if c.get("is_reference") else
                 f"known ({c.get('matches')})" if c.get("novel") is False else "novelty not checked")
        line = (f"#{c['rank']:>2} {formula(c['formula']):<12} {c['spacegroup']['0.1']:<16} "
                f"{geometry}, {charge}, {known}")
        if has_target and c.get("site_to_target"):
            species = structure_of(c).species          # the candidate's own site order
            sites = ", ".join(f"site {s} ({species[int(s)].symbol})" for s in c["site_to_target"])
            line += f"; {sites}: predicted DOS MAE {c.get('dos_mae', float('nan')):.3f} states/eV"
        out.append(line)
        if origin := origin_text(c):
            out.append(f"    {origin}")
    if any(c.get("novel") for c in run["candidates"][:top]):
        out.append(f"({NOVEL_NOTE})")
    if pressed := pressed_text(run):         # as the app's valid count says it
        out.append(f"({pressed})")
    if run["candidates"] and has_target:
        # a predicted number stands beside the way to its DFT check
        out.append(f"(predicted by the site-DOS predictor; {check_words(run, labelled)})")
    return out


def check_words(run: dict, labelled: frozenset = frozenset()) -> str:
    """What `dosmatgen rounds RUN --rounds 0` checks with its defaults, as the app picks them
    (certify.pick: the top SHIPPED.dft_top, then as many of each kind's best): 'GPAW checks of #1,
    #2, #3, #5 (the top 3 and the best 3 of each kind, …): dosmatgen rounds …'. A
    walk read 'the top 3' and the command checked six."""
    from dosmatgen_core.scoring import certify
    ranks = certify.pick(run, certify.DEFAULT_TOP, labelled=labelled, per_source=certify.PER_SOURCE)
    if not ranks:
        return f"no GPAW check to run: {certify.nothing_to_check(run, labelled=labelled)}"
    top = certify.DEFAULT_TOP
    kinds = {certify.source_of(c) for c in run["candidates"] if c["rank"] in ranks}
    why = (f"the top {top} and the best {top} of each kind, the model's draws and the swaps"   # the app's words
           if certify.PER_SOURCE and len(kinds) > 1 else f"the top {top} that qualify")
    listed = ", ".join(f"#{r}" for r in sorted(ranks))       # in rank order; the checks start with the best
    return (f"GPAW check{'s' * (len(ranks) != 1)} of {listed} ({why}): "
            f"dosmatgen rounds {run['id']} --rounds 0")


def _evaluate(args) -> int:
    """Re-score a stored run's candidates with the shipped predictor or --predictor FILE (e.g. a
    retrained one), store the new scores and print the summary."""
    from dosmatgen_core.candidates.runs import structure_of
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.scoring import evaluate
    from dosmatgen_core.scoring.predictor import load_predictor
    store = _store(args.runs, must_exist=True)
    run = _run(store, args.run_id)
    predictor = load_predictor(args.predictor or PREDICTOR_PATH, **_trusting(load_predictor, args.trust_checkpoint))
    targets = run["settings"]["targets"]
    for kind in ("candidates", "baseline"):
        items = run[kind]
        tg = [{int(s): targets[int(k)] for s, k in c["site_to_target"].items()} for c in items]
        evs = evaluate.evaluate_candidates([structure_of(c) for c in items], tg, predictor, db_url=DB_URL,
                                           window=run["settings"].get("window"))
        for c, ev in zip(items, evs):
            c.update({k: v for k, v in ev.items() if k != "seconds_per_check"})
    maes = [c["dos_mae"] for c in run["candidates"] if c.get("dos_mae") == c.get("dos_mae")]
    run["summary"]["mean_dos_mae"] = sum(maes) / len(maes) if maes else None
    # the scores and spreads are this predictor's now: the run says which, and its band's factor
    run["settings"].update({"predictor_sha256": predictor.card.get("sha256"), "spread_calibration": predictor.spread_calibration})
    store.save(run)
    print(json.dumps({"run": run["id"], "candidates": len(run["candidates"]),
                      "valid": sum(c["valid"] for c in run["candidates"]),
                      "unique": sum(bool(c.get("unique")) for c in run["candidates"]),
                      "novel": sum(bool(c.get("novel")) for c in run["candidates"]),
                      "mean_dos_mae": run["summary"]["mean_dos_mae"],
                      "predictor": str(args.predictor or PREDICTOR_PATH),
                      "predictor_sha256": predictor.card.get("sha256")}, indent=2))
    return 0


def add_reference_flags(parser, include_help: str, old_flags: tuple = ("--exclude-ref",)) -> None:
    """--include-ref, and the flag older scripts pass to leave the reference out (generate's
    --exclude-ref, search's --exclude-self): one switch, args.include_ref, defaulting to what the app
    does (LEAVE_OUT_REFERENCE). It applies where the target is a reference material's site."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--include-ref", dest="include_ref", action="store_true", default=not LEAVE_OUT_REFERENCE,
                       help=include_help)
    group.add_argument(*old_flags, dest="include_ref", action="store_false",
                       help="leave the reference material out" + (
                           ": the default, as in the app (kept so that older scripts run; it changes nothing)"
                           if LEAVE_OUT_REFERENCE else ""))


def add_parsers(sub) -> None:
    ve = sub.add_parser("verify", help="run the GPAW recipe on a generated candidate (by run id and rank)")
    ve.add_argument("run_id")
    ve.add_argument("rank", type=int)
    ve.add_argument("--runs", default=None, help=RUNS_HELP)
    ve.add_argument("--timeout", type=float, default=3600)
    ve.add_argument("--relaxed", action=argparse.BooleanOptionalAction, default=SHIPPED.dft_relaxed,
                    help="relax the candidate with the default potential before GPAW (positions and cell; "
                         "--no-relaxed: the cell as drawn; default: the app's setting)")
    ve.set_defaults(func=_verify)

    ro = sub.add_parser("rounds", help="GPAW checks of a run's top candidates, then rounds grown from the best "
                                       "check (or the known sites shaped better) while its DFT cosine to the target "
                                       "is below 0.9")
    ro.add_argument("run_id")
    ro.add_argument("--rounds", type=int, default=1, help="further rounds at most (0: only check this run)")
    ro.add_argument("--top", type=int, default=SHIPPED.dft_top, help=f"candidates to check per round (default {SHIPPED.dft_top})")
    ro.add_argument("--relaxed", action=argparse.BooleanOptionalAction, default=SHIPPED.dft_relaxed,
                    help="relax each checked candidate with the default potential first (as the app does)")
    ro.add_argument("--per-source", action=argparse.BooleanOptionalAction, default=SHIPPED.dft_per_source,
                    help="also check as many of the best draws and of the best swaps (as the app does)")
    ro.add_argument("--runs", default=None, help=RUNS_HELP)
    ro.set_defaults(func=_rounds)

    ru = sub.add_parser("runs", help="list the stored runs (id, status, title, created, candidates)")
    ru.add_argument("--runs", default=None, help=RUNS_HELP)
    ru.add_argument("--json", action="store_true")
    ru.set_defaults(func=_runs)

    ge = sub.add_parser("generate", help="generate candidates for a target DOS and store the run")
    ge.add_argument("--mode", choices=["seeded", "masked", "template", "fixed_type", "unconditional"],
                    default=SHIPPED.mode, help="seeded (default): grow from the known structures whose site is "
                    "closest to the target; masked: new cells, the --cond atoms conditioned; template: a noised "
                    "--template; fixed_type: masked with the --element kept; unconditional: the baseline")
    add_reference_flags(ge, "seed from the reference material too (the app never does): its seeds and the "
                        "known sites of later rounds (dosmatgen rounds) may then be it or a copy of it")
    ge.add_argument("--seeds", type=int, default=SHIPPED.n_seeds, help="seeded: known structures used as templates")
    ge.add_argument("--seed-by", default=SHIPPED.seed_by, choices=("mae", "cosine"), help="seeded: take the known sites closest by mae "
                    "(states/eV) or by cosine (shape, whatever the height)")
    ge.add_argument("--fix-element", action="store_true", help="seeded: the matching site keeps its element")
    ge.add_argument("--substitutions", action=argparse.BooleanOptionalAction, default=SHIPPED.substitutions,
                    help="seeded: the seeds with one element swapped for a same-group neighbour are candidates too")
    ge.add_argument("--distant-swaps", action=argparse.BooleanOptionalAction, default=SHIPPED.distant_swaps,
                    help="substitutions: swap one atom beyond the matching site's first shell (in a doubled cell "
                         "where needed) instead of every atom of one element")
    ge.add_argument("--top-up", type=float, default=SHIPPED.top_up,
                    help="seeded: when fewer than the DFT check's top candidates are new crystals, draw one more "
                         "batch this much further from the seeds (0: never)")
    ge.add_argument("--grow-from", metavar="RUN:RANK", default=None,
                    help="seeded: grow from this stored candidate alone instead of the known sites (its "
                         "DFT-checked cell once it has one): the next round around it, aimed at that run's target "
                         "unless a target is given")
    ge.add_argument("--ref", default=None,
                    help="target source: a reference material id, or a CIF/POSCAR file (its predicted site DOS); "
                         f"with no target given, the example {PRESET_ID} site 0")
    ge.add_argument("--gpaw-target", action="store_true",
                    help="with --ref FILE: calculate the file's cell with GPAW (the labelling recipe, cells of at most "
                         "8 atoms; cached, kept as a label) and take its DFT site DOS as the target, not the predicted one")
    ge.add_argument("--site", type=int, default=None, help="the atom (0-based) of --ref or --target-vasprun whose "
                    "DOS is the target")
    ge.add_argument("--target-csv", default=None, help="target DOS from a CSV (energy - E_F, DOS) instead")
    ge.add_argument("--target-column", default=None, metavar="NAME",
                    help="--target-csv holds several named curves (the app's DOS CSV): the one to take")
    ge.add_argument("--target-fermi", type=float, default=None, metavar="EV",
                    help="--target-csv's energies are absolute (a DOSCAR's): the file's Fermi energy in eV, "
                         "subtracted before the curve is regridded")
    add_knob_arguments(ge)
    ge.add_argument("--target-vasprun", default=None,
                    help="target DOS from a VASP vasprun.xml (LORBIT >= 10): atom --site's projected DOS")
    ge.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"), default=None,
                    help="compare the target only on E - E_F from LO to HI eV (default: all the grid, or what "
                         "--target-csv / --target-vasprun covers)")
    ge.add_argument("--n-atoms", type=int, default=SHIPPED.n_atoms,
                    help="masked, fixed_type and unconditional: atoms in each new cell")
    ge.add_argument("--cond", type=int, nargs="*", help="conditioned atoms of the new structure (default 0)")
    ge.add_argument("--element", default=None, help="fixed_type: element of the conditioned atoms (default: the "
                    "target atom's, or for a DOS file the closest known site's)")
    ge.add_argument("--template", default=None, help="template: material id or CIF/POSCAR file (default --ref)")
    ge.add_argument("--strength", type=float, default=SHIPPED.strength,
                    help="template and seeded: how much of the structure is noised away before it is rebuilt "
                         "(0 keeps it, 1 keeps nothing)")
    ge.add_argument("--pin", type=int, nargs="*", help="template: atoms kept exactly where they are")
    ge.add_argument("--n", type=int, default=SHIPPED.n_candidates,
                    help=f"candidates to draw, at most {MAX_CANDIDATES} as in the app (seeded mode ranks the "
                         "seeds' same-group swaps beside them: see --substitutions)")
    ge.add_argument("--w", type=float, default=SHIPPED.guidance, help="guidance weight")
    ge.add_argument("--steps", type=int, default=SHIPPED.steps, help="denoising steps per candidate")
    ge.add_argument("--particles", type=int, default=SHIPPED.particles,
                    help="DOS steering: trajectories per candidate (1 = off)")
    ge.add_argument("--steer", type=float, default=SHIPPED.steer, help="DOS steering strength")
    ge.add_argument("--seed", type=int, default=SHIPPED.seed, help="random seed: the same seed draws the same candidates")
    ge.add_argument("--device", default="auto", help="cpu, cuda or auto (a GPU where there is one)")
    ge.add_argument("--model", default=None, metavar="FILE", help="a generator checkpoint other than the shipped "
                    "assets/denoiser.pt (loads only with --trust-checkpoint)")
    ge.add_argument("--runs", default=None, help=RUNS_HELP)
    ge.add_argument("--no-novelty", action="store_true",
                    help="skip the novelty check (it needs the Materials Project tables)")
    ge.add_argument("--trust-checkpoint", action="store_true",
                    help="load model files that are not the shipped ones (their card must still match)")
    ge.set_defaults(func=_generate)

    ev = sub.add_parser("evaluate", help="re-score a stored run with the shipped predictor, or another one")
    ev.add_argument("run_id")
    ev.add_argument("--runs", default=None, help=RUNS_HELP)
    ev.add_argument("--predictor", "--model", dest="predictor", default=None, metavar="FILE",
                    help="a site-DOS predictor checkpoint (default: the shipped assets/predictor.pt)")
    ev.add_argument("--trust-checkpoint", action="store_true",
                    help="load a predictor that is not the shipped one (its card must still match)")
    ev.set_defaults(func=_evaluate)
