"""The `dosmatgen` command: label, build-db, bench (more verbs join as their modules land)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dosmatgen_core.paths import (CACHE_DIR, DB_PATH, GUIDE_PATH, LABEL_DIR, MODEL_PATH, MP_CSVS, PREDICTOR_PATH,
                                  PSEUDO_PACK, ROOT, TRAIN_PACK)


def _label(args) -> int:
    from dosmatgen_core.labels.labeller import FAST_RECIPE, SEED_RECIPE, ShardWriter, run_labelling, select_tasks
    out = Path(args.out)
    if args.cif:
        from dosmatgen_core.structures import read_structure
        tasks = []
        for p in args.cif:
            text = Path(p).read_text()
            read_structure(text, "cif", source=p)  # fail fast, before any DFT is queued
            tasks.append({"material_id": Path(p).stem, "cif": text})
    else:
        skip = ShardWriter(out).done_ids(args.also_done, include_failed=not args.retry_failed)
        csvs = [Path(c) for c in args.csv] if args.csv else [c for c in MP_CSVS if c.exists()]
        if not csvs:
            print("no structure tables found; pass --csv PATH or --cif FILE", file=sys.stderr)
            return 2
        tasks = select_tasks(csvs, max_atoms=args.max_atoms, skip=skip)
    print(f"{len(tasks)} structures to consider; writing to {out}", flush=True)

    def report(line):
        status = "FAILED " + line["failed"][:120] if "failed" in line else f"{line['formula']} {line['seconds']} s"
        print(f"{line['material_id']}: {status}", flush=True)

    recipe = FAST_RECIPE if args.recipe == "fast" else SEED_RECIPE
    stats = run_labelling(tasks, out, recipe=recipe, workers=args.workers, scheduler=args.scheduler,
                          timeout=args.timeout, shard_size=args.shard_size, extra_done=args.also_done,
                          retry_failed=args.retry_failed,
                          on_result=report, max_tasks=args.max_tasks, max_seconds=args.max_minutes * 60 if args.max_minutes else None)
    print(json.dumps({"labelled": stats.done, "failed": stats.failed, "seconds": round(stats.seconds, 1)}))
    return 0


def _seal(args) -> int:
    from dosmatgen_core.labels.labeller import ShardWriter
    made = ShardWriter(args.out).seal()
    print(made or "nothing pending")
    return 0


def _build_db(args) -> int:
    from dosmatgen_core.labels.reference_db import build_db
    shards = args.shards or [str(LABEL_DIR)]
    print(json.dumps(build_db(shards, args.db)))
    return 0


def _train(args) -> int:
    from dosmatgen_core.training.denoiser import TrainConfig, train
    from dosmatgen_core.model.denoiser import DenoiserConfig
    cfg = TrainConfig(run_dir=args.run_dir, label_dirs=args.labels or [str(LABEL_DIR)],
                      csvs=[str(c) for c in (args.csv or MP_CSVS)], labelled_only=args.labelled_only,
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, threads=args.threads,
                      max_minutes=args.max_minutes, device=args.device, seed=args.seed,
                      epoch_size=args.epoch_size, init_from=args.init_from or "",
                      labelled_share=args.labelled_share, pack=args.pack or "",
                      dos_shift_ev=args.dos_shift, dos_scale=args.dos_scale,
                      pseudo=args.pseudo or "", pseudo_share=args.pseudo_share, p_single=args.p_single,
                      model=DenoiserConfig(hidden=args.hidden, layers=args.layers, types=args.types,
                                          cond_context=args.cond_context).to_dict())
    train(cfg, log=lambda m: print(m, flush=True))
    return 0


def _pseudo_label(args) -> int:
    from dosmatgen_core.training.pseudo import pseudo_label
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    print(json.dumps(pseudo_label(args.pack, args.predictor, args.out, label_dir=args.labels, log=lambda m: print(m, flush=True)), indent=2))
    return 0


def _restore_run(args) -> int:
    from dosmatgen_core.training.denoiser import restore_run
    print(restore_run(args.run_dir))
    return 0


def _export(args) -> int:
    from dosmatgen_core.training.denoiser import export
    print(json.dumps(export(args.run_dir, args.out, pick="last" if args.last else args.pick), indent=2))
    return 0


def _train_predictor(args) -> int:
    from dosmatgen_core.scoring.predictor import PredictorTrainConfig, export_predictor, train_predictor
    labels = args.labels or [str(LABEL_DIR)]
    cfg = PredictorTrainConfig(run_dir=args.run_dir, label_dirs=labels, epochs=args.epochs,
                               threads=args.threads, max_minutes=args.max_minutes, seed=args.seed,
                               lr=args.lr, weight_decay=args.weight_decay, device=args.device,
                               pack=args.pack or "",
                               model={"hidden": args.hidden, "layers": args.layers, "dropout": args.dropout,
                                      "chgnet": args.chgnet})
    run = train_predictor(cfg, log=lambda m: print(m, flush=True))
    if args.export:
        print(json.dumps(export_predictor(run, args.export, labels, pack=args.pack or ""), indent=2))
    return 0


def _export_predictor(args) -> int:
    from dosmatgen_core.scoring.predictor import export_predictor
    print(json.dumps(export_predictor(args.run_dir, args.out, args.labels or [str(LABEL_DIR)],
                                      pack=args.pack or ""), indent=2))
    return 0


def _train_guide(args) -> int:
    from dosmatgen_core.training.guide import GuideTrainConfig, export_guide, train_guide
    cfg = GuideTrainConfig(run_dir=args.run_dir, pack=args.pack, init_from=args.init_from, epochs=args.epochs,
                           lr=args.lr, threads=args.threads, max_minutes=args.max_minutes, seed=args.seed,
                           device=args.device)
    run = train_guide(cfg, log=lambda m: print(m, flush=True))
    if args.export:
        print(json.dumps(export_guide(run, args.export), indent=2))
    return 0


def _export_guide(args) -> int:
    from dosmatgen_core.training.guide import export_guide
    print(json.dumps(export_guide(args.run_dir, args.out), indent=2))
    return 0


def _pack(args) -> int:
    from dosmatgen_core.training import dataset as datamod
    from dosmatgen_core.scoring.predictor import element_table
    labels = args.labels or [str(LABEL_DIR)]
    csvs = [str(c) for c in (args.csv or MP_CSVS)]
    lab = datamod.load_labelled(labels)
    unl = datamod.load_unlabelled(csvs, cache_dir=CACHE_DIR)
    have = {e.material_id for e in lab}     # before halving: the other half's crystals stay out of the pack
    unl = [e for e in unl if e.material_id not in have]
    if args.half:
        lab = datamod.label_half(lab, args.half)
    meta = {"label_shards": datamod.label_shard_names(labels),
            "csvs": [str(c) for c in csvs], "label_half": args.half}
    path = datamod.save_pack(args.out, lab, unl, {**meta, "element_table": element_table().tolist()})
    print(json.dumps({"out": str(path), "labelled": len(lab), "unlabelled": len(unl),
                      "bytes": path.stat().st_size, **meta}))
    return 0


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
    from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dosmatgen", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    lab = sub.add_parser("label", help="compute GPAW site-DOS labels (resumable)")
    lab.add_argument("--out", default=str(LABEL_DIR), help="shard directory (default data/labels)")
    lab.add_argument("--csv", action="append", help="MP structure table(s); default the shared mp20+mpts52")
    lab.add_argument("--cif", nargs="+", help="label these CIF files instead of the tables")
    lab.add_argument("--max-atoms", type=int, default=8)
    lab.add_argument("--max-tasks", type=int, default=None)
    lab.add_argument("--max-minutes", type=float, default=None, help="stop submitting after this long")
    lab.add_argument("--workers", type=int, default=None, help="local workers (default: one per core)")
    lab.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler, tcp://host:port")
    lab.add_argument("--timeout", type=float, default=900.0, help="seconds per structure before it is recorded as failed")
    lab.add_argument("--shard-size", type=int, default=50)
    lab.add_argument("--also-done", action="append", default=[], help="other shard dirs whose ids count as done")
    lab.add_argument("--retry-failed", action="store_true")
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

    tr = sub.add_parser("train", help="train the denoiser (resumable: rerun the same command to continue)")
    tr.add_argument("--run-dir", default="runs/train/default")
    tr.add_argument("--labels", action="append", help="label shard dirs (default data/labels)")
    tr.add_argument("--csv", action="append", help="structure tables (default the shared mp20+mpts52)")
    tr.add_argument("--labelled-only", action="store_true", help="ablation: train on labelled crystals alone")
    tr.add_argument("--epochs", type=int, default=1000)
    tr.add_argument("--epoch-size", type=int, default=0)
    tr.add_argument("--batch-size", type=int, default=64)
    tr.add_argument("--lr", type=float, default=5e-4)
    tr.add_argument("--hidden", type=int, default=256)
    tr.add_argument("--layers", type=int, default=4)
    tr.add_argument("--threads", type=int, default=0)
    tr.add_argument("--max-minutes", type=float, default=0.0)
    tr.add_argument("--device", default="auto")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--types", choices=["d3pm", "continuous"], default="d3pm",
                    help="type diffusion of a new run (a resumed run keeps its own)")
    tr.add_argument("--init-from", default=None,
                    help="warm start a new run from a shipped model, e.g. assets/denoiser.pt")
    tr.add_argument("--labelled-share", type=float, default=0.25,
                    help="share of each epoch drawn from labelled crystals (oversampled)")
    tr.add_argument("--pack", default=None, help="train from a pack (dosmatgen pack) instead of shards + tables")
    tr.add_argument("--dos-shift", type=float, default=0.0, help="augment: shift the conditioning DOS by ±this (eV)")
    tr.add_argument("--dos-scale", type=float, default=0.0, help="augment: log-normal σ of its amplitude")
    tr.add_argument("--cond-context", action="store_true",
                    help="re-inject the condition at every layer and broadcast each crystal's conditioned-atom "
                         "embedding to all its atoms and the lattice head (zero-initialised: a warm start begins "
                         "as its source model)")
    tr.add_argument("--p-single", type=float, default=0.0,
                    help="share of labelled crystals trained with exactly one conditioned atom")
    tr.add_argument("--pseudo", default=None, help="pseudo-labels (dosmatgen pseudo-label) for unlabelled crystals")
    tr.add_argument("--pseudo-share", type=float, default=0.0,
                    help="share of each epoch drawn from pseudo-labelled crystals")
    tr.set_defaults(func=_train)

    pl = sub.add_parser("pseudo-label", help="predict the site DOS of every unlabelled training crystal of a "
                                             "pack (resumable), for dosmatgen train --pseudo")
    pl.add_argument("--pack", default=str(TRAIN_PACK))
    pl.add_argument("--predictor", default=str(PREDICTOR_PATH))
    pl.add_argument("--out", default=str(PSEUDO_PACK))
    pl.add_argument("--labels", default=str(LABEL_DIR),
                    help="the label shards the predictor was trained on (its card names them)")
    pl.add_argument("--threads", type=int, default=0)
    pl.set_defaults(func=_pseudo_label)

    pk = sub.add_parser("pack", help="write every training crystal and label into one .npz (for a machine "
                                     "with numpy and torch alone, e.g. a GPU box)")
    pk.add_argument("--out", default=str(TRAIN_PACK))
    pk.add_argument("--labels", action="append")
    pk.add_argument("--csv", action="append")
    pk.add_argument("--half", choices=["A", "B"], help="only one of two label-disjoint halves (data.label_half): "
                                                         "a guide from A scored by a predictor from B")
    pk.set_defaults(func=_pack)

    ex = sub.add_parser("export-model", help="ship a training run's EMA weights with a model card")
    ex.add_argument("--run-dir", default="runs/train/default")
    ex.add_argument("--out", default=str(MODEL_PATH))
    ex.add_argument("--last", action="store_true", help="export the last epoch, not the best")
    ex.add_argument("--pick", choices=["best", "best-labelled"], default="best",
                    help="best validation loss overall, or on the labelled validation crystals")
    ex.set_defaults(func=_export)

    rr = sub.add_parser("restore-run", help="make a run brought back from a GPU round exportable")
    rr.add_argument("run_dir")
    rr.set_defaults(func=_restore_run)

    tp = sub.add_parser("train-predictor", help="train the site-DOS predictor (resumable)")
    tp.add_argument("--run-dir", default="runs/predictor/default")
    tp.add_argument("--labels", action="append")
    tp.add_argument("--epochs", type=int, default=300)
    tp.add_argument("--threads", type=int, default=0)
    tp.add_argument("--max-minutes", type=float, default=0.0)
    tp.add_argument("--seed", type=int, default=0)
    tp.add_argument("--export", default=None, help="also write the shipped file (e.g. assets/predictor.pt)")
    tp.add_argument("--pack", default=None, help="labels from a pack (dosmatgen pack)")
    tp.add_argument("--device", default="cpu")
    tp.add_argument("--lr", type=float, default=2e-3)
    tp.add_argument("--weight-decay", type=float, default=1e-4)
    tp.add_argument("--hidden", type=int, default=128)
    tp.add_argument("--layers", type=int, default=3)
    tp.add_argument("--dropout", type=float, default=0.0)
    tp.add_argument("--chgnet", action="store_true", help="also read CHGNet's pretrained atom features")
    tp.set_defaults(func=_train_predictor)

    xp = sub.add_parser("export-predictor", help="ship one predictor run, or several as an ensemble")
    xp.add_argument("--run-dir", action="append", required=True, help="repeat for an ensemble")
    xp.add_argument("--out", default=str(PREDICTOR_PATH))
    xp.add_argument("--labels", action="append")
    xp.add_argument("--pack", default=None)
    xp.set_defaults(func=_export_predictor)

    tg = sub.add_parser("train-guide", help="train the noise-aware DOS guide for classifier guidance (resumable)")
    tg.add_argument("--run-dir", default="runs/guide/default")
    tg.add_argument("--pack", default=str(TRAIN_PACK))
    tg.add_argument("--init-from", default=str(MODEL_PATH),
                    help="denoiser whose trunk and DOS scale the guide starts from (the one it will guide)")
    tg.add_argument("--epochs", type=int, default=60)
    tg.add_argument("--lr", type=float, default=3e-4)
    tg.add_argument("--threads", type=int, default=0)
    tg.add_argument("--max-minutes", type=float, default=0.0)
    tg.add_argument("--seed", type=int, default=0)
    tg.add_argument("--device", default="cpu")
    tg.add_argument("--export", default=None, help="also write the shipped file (e.g. assets/guide.pt)")
    tg.set_defaults(func=_train_guide)

    xg = sub.add_parser("export-guide", help="ship a guide run's best weights with a card")
    xg.add_argument("--run-dir", default="runs/guide/default")
    xg.add_argument("--out", default=str(GUIDE_PATH))
    xg.set_defaults(func=_export_guide)

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

    args = p.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        # bad input (a task, a file, a model path): one clear line, not a traceback
        # (DOSMATGEN_DEBUG=1 shows the traceback)
        if os.environ.get("DOSMATGEN_DEBUG"):
            raise
        print(f"dosmatgen {args.cmd}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
