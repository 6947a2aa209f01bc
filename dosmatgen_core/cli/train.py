"""`dosmatgen` verbs. Training and shipping: the generator, the site-DOS predictor and the DOS guide.

A verb imports its modules (torch and the models) when it runs, so `dosmatgen --help` answers
at once (0.1 s, against 3-4 s with them imported here).
"""
from __future__ import annotations

import json
from dataclasses import asdict, fields

from dosmatgen_core.paths import (CACHE_DIR, GUIDE_PATH, LABEL_DIR, MODEL_PATH, MP_CSVS, PREDICTOR_PATH,
                                  PSEUDO_PACK, TRAIN_PACK)


def config_from_args(cls, args, **given):
    """A config dataclass from the parsed options named like its fields (--batch-size → batch_size);
    `given`: the fields whose options differ in name or shape. Options left unset (None) keep the
    dataclass default."""
    opts = {f.name: getattr(args, f.name) for f in fields(cls)
            if f.name not in given and getattr(args, f.name, None) is not None}
    return cls(**opts, **given)


def _train(args) -> int:
    from dosmatgen_core.model.denoiser import DenoiserConfig
    from dosmatgen_core.training.denoiser import TrainConfig, train
    cfg = config_from_args(TrainConfig, args, label_dirs=args.labels or [str(LABEL_DIR)],
                           csvs=[str(c) for c in (args.csv or MP_CSVS)],
                           model=config_from_args(DenoiserConfig, args).to_dict())
    train(cfg, log=lambda m: print(m, flush=True))
    return 0


def _pseudo_label(args) -> int:
    import torch

    from dosmatgen_core.training.pseudo import pseudo_label
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(pseudo_label(args.pack, args.predictor, args.out, label_dir=args.labels,
                                  log=lambda m: print(m, flush=True), trust=args.trust_checkpoint), indent=2))
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
    from dosmatgen_core.scoring.predictor import PredictorConfig
    from dosmatgen_core.training.predictor import PredictorTrainConfig, export_predictor, train_predictor
    labels = args.labels or [str(LABEL_DIR)]
    cfg = config_from_args(PredictorTrainConfig, args, label_dirs=labels,
                           model=asdict(config_from_args(PredictorConfig, args)))
    run = train_predictor(cfg, log=lambda m: print(m, flush=True))
    if args.export:
        print(json.dumps(export_predictor(run, args.export, labels, pack=args.pack or ""), indent=2))
    return 0


def _export_predictor(args) -> int:
    from dosmatgen_core.training.predictor import export_predictor
    print(json.dumps(export_predictor(args.run_dir, args.out, args.labels or [str(LABEL_DIR)],
                                      pack=args.pack or ""), indent=2))
    return 0


def _train_guide(args) -> int:
    from dosmatgen_core.training.guide import GuideTrainConfig, export_guide, train_guide
    run = train_guide(config_from_args(GuideTrainConfig, args), log=lambda m: print(m, flush=True))
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
    fea = None
    if args.chgnet_features:        # a predictor that reads them then trains where CHGNet is not installed
        from dosmatgen_core.scoring.predictor import chgnet_atom_features
        fea = chgnet_atom_features([(e.z, e.frac, e.lattice) for e in lab])
        meta["atom_features"] = "chgnet"
    path = datamod.save_pack(args.out, lab, unl, {**meta, "element_table": element_table().tolist()}, fea)
    print(json.dumps({"out": str(path), "labelled": len(lab), "unlabelled": len(unl),
                      "bytes": path.stat().st_size, **meta}))
    return 0


def add_parsers(sub) -> None:
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
    tr.add_argument("--dos-shift", dest="dos_shift_ev", type=float, default=0.0, help="augment: shift the conditioning DOS by ±this (eV)")
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
    pl.add_argument("--trust-checkpoint", action="store_true",
                    help="load a --predictor that was not shipped (one you trained); its card must still match it")
    pl.set_defaults(func=_pseudo_label)

    pk = sub.add_parser("pack", help="write every training crystal and label into one .npz (for a machine "
                                     "with numpy and torch alone, e.g. a GPU box)")
    pk.add_argument("--out", default=str(TRAIN_PACK))
    pk.add_argument("--labels", action="append")
    pk.add_argument("--csv", action="append")
    pk.add_argument("--half", choices=["A", "B"], help="only one of two label-disjoint halves (data.label_half): "
                                                         "a guide from A scored by a predictor from B")
    pk.add_argument("--chgnet-features", action="store_true",
                    help="also store CHGNet's atom features of the labelled crystals (train-predictor --chgnet "
                         "on a machine without CHGNet)")
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
