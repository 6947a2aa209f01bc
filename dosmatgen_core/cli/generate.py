"""`dosmatgen` verbs. Generation runs: generate, re-score and DFT-verify candidates.

A verb imports its modules when it runs, so `dosmatgen --help` answers at once.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dosmatgen_core.paths import (MODEL_PATH, PREDICTOR_PATH)


def _verify(args) -> int:
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.paths import RUNS_PATH
    from dosmatgen_core.scoring.verify import Verifier
    res = Verifier(RunStore(args.runs or RUNS_PATH)).run(args.run_id, args.rank, timeout=args.timeout,
                                                         relaxed=args.relaxed)
    res = dict(res, result={k: v for k, v in (res.get("result") or {}).items() if k != "site_dos"})
    print(json.dumps(res, indent=2))
    return 0 if res["status"] == "done" else 1


def _resources(args):
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.paths import DB_URL
    return load_model(args.model or MODEL_PATH), load_predictor(PREDICTOR_PATH), DB_URL


def _generate(args) -> int:
    """Condition site(s) of a new structure on a reference site's DOS (or a CSV) and store the run."""
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import RUNS_PATH
    from dosmatgen_core.dos import read_dos_csv
    loaded, predictor, db_url = _resources(args)
    if args.target_csv:
        target = read_dos_csv(Path(args.target_csv).read_bytes())
    elif args.mode != "unconditional":
        ref = open_db(db_url).get(args.ref)
        if args.site is None or not 0 <= args.site < len(ref.symbols):
            print(f"--site must be 0..{len(ref.symbols) - 1} for {args.ref} ({' '.join(ref.symbols)})", file=sys.stderr)
            return 2
        target = ref.site_dos[args.site]
    cond = args.cond or [0]
    kw = dict(mode=args.mode, n_atoms=args.n_atoms, n_candidates=args.n, guidance=args.w, steps=args.steps,
              seed=args.seed, device=args.device)
    if args.mode != "unconditional":
        kw.update(targets=[target.tolist()] * len(cond), cond_sites=cond)
    if args.mode == "fixed_type":
        kw["fixed"] = {i: args.element for i in cond}
    if args.mode == "template":
        tpl = open_db(db_url).get(args.template or args.ref)
        kw.update(n_atoms=len(tpl.symbols), strength=args.strength, pinned=args.pin or [], template_id=tpl.material_id,
                  template={"numbers": tpl.atoms.numbers.tolist(), "frac": tpl.atoms.get_scaled_positions().tolist(),
                            "lattice": tpl.atoms.cell.array.tolist()})
    try:
        req = Request(**kw)
        run = run_generation(req, loaded, predictor, store=RunStore(args.runs or RUNS_PATH), db_url=db_url,
                             progress=lambda f, eta, m: print(f"\r{m} ({100 * f:.0f} %, ~{eta:.0f} s left)   ",
                                                               end="", file=sys.stderr, flush=True))
    except ValueError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(json.dumps({"run": run["id"], **run["summary"]}, indent=2))
    for c in run["candidates"][:10]:
        print(f"#{c['rank']:>2} {c['formula']:<14} {c['spacegroup']['0.1']:<14} valid={c['valid']!s:<5} "
              f"novel={c.get('novel')!s:<5} DOS MAE={c.get('dos_mae', float('nan')):.3f}")
    return 0


def _evaluate(args) -> int:
    """Re-score a stored run's candidates (e.g. after a new predictor) and print the summary."""
    from dosmatgen_core.scoring import evaluate
    from dosmatgen_core.candidates.runs import RunStore, structure_of
    from dosmatgen_core.paths import RUNS_PATH
    _, predictor, db_url = _resources(args)
    store = RunStore(args.runs or RUNS_PATH)
    run = store.get(args.run_id)
    targets = run["settings"]["targets"]
    for kind in ("candidates", "baseline"):
        items = run[kind]
        tg = [{int(s): targets[int(k)] for s, k in c["site_to_target"].items()} for c in items]
        evs = evaluate.evaluate_candidates([structure_of(c) for c in items], tg, predictor, db_url=db_url)
        for c, ev in zip(items, evs):
            c.update({k: v for k, v in ev.items() if k != "seconds_per_check"})
    maes = [c["dos_mae"] for c in run["candidates"] if c.get("dos_mae") == c.get("dos_mae")]
    run["summary"]["mean_dos_mae"] = sum(maes) / len(maes) if maes else None
    store.save(run)
    print(json.dumps({"run": run["id"], "candidates": len(run["candidates"]),
                      "valid": sum(c["valid"] for c in run["candidates"]),
                      "unique": sum(bool(c.get("unique")) for c in run["candidates"]),
                      "novel": sum(bool(c.get("novel")) for c in run["candidates"]),
                      "mean_dos_mae": run["summary"]["mean_dos_mae"]}, indent=2))
    return 0


def add_parsers(sub) -> None:
    ve = sub.add_parser("verify", help="run the GPAW recipe on a generated candidate (by run id and rank)")
    ve.add_argument("run_id")
    ve.add_argument("rank", type=int)
    ve.add_argument("--runs", default=None, help="run store (default runs/studio.db)")
    ve.add_argument("--timeout", type=float, default=3600)
    ve.add_argument("--relaxed", action="store_true", help="calculate the CHGNet-relaxed candidate")
    ve.set_defaults(func=_verify)

    ge = sub.add_parser("generate", help="generate candidates for a target DOS and store the run")
    ge.add_argument("--mode", choices=["masked", "template", "fixed_type", "unconditional"], default="masked")
    ge.add_argument("--ref", default="L12-Au3Ni-chgnet", help="reference material id (target source)")
    ge.add_argument("--site", type=int, default=0, help="site of the reference whose DOS is the target")
    ge.add_argument("--target-csv", default=None, help="target DOS from a CSV (energy - E_F, DOS) instead")
    ge.add_argument("--n-atoms", type=int, default=4)
    ge.add_argument("--cond", type=int, nargs="*", help="conditioned atoms of the new structure (default 0)")
    ge.add_argument("--element", default="Ni", help="fixed_type: element of the conditioned atoms")
    ge.add_argument("--template", default=None, help="template: material id (default --ref)")
    ge.add_argument("--strength", type=float, default=0.5)
    ge.add_argument("--pin", type=int, nargs="*")
    ge.add_argument("--n", type=int, default=8, help="candidates")
    ge.add_argument("--w", type=float, default=1.0, help="guidance weight")
    ge.add_argument("--steps", type=int, default=250)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--device", default="auto")
    ge.add_argument("--model", default=None)
    ge.add_argument("--runs", default=None)
    ge.set_defaults(func=_generate)

    ev = sub.add_parser("evaluate", help="re-score a stored run with the current predictor")
    ev.add_argument("run_id")
    ev.add_argument("--runs", default=None)
    ev.add_argument("--model", default=None)
    ev.set_defaults(func=_evaluate)
