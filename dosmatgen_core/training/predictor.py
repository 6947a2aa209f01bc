"""`dosmatgen train-predictor` / `export-predictor`: fitting the site-DOS predictor
(scoring/predictor.py) to the DFT labels, its held-out scores, and shipping one run or an ensemble.

Resumable like `dosmatgen train` (training/loop.py): RUN_DIR/last.pt every 10 epochs and at the
end, RUN_DIR/log.csv one row per 10 epochs, RUN_DIR/heldout.json at the end.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import torch

from dosmatgen_core import dos as dosmod
from dosmatgen_core.model.checkpoint import card_path, sha256_file
from dosmatgen_core.scoring.predictor import (FAMILIES, PredictorConfig, SiteDOSPredictor, chgnet_atom_features,
                                              collate_graphs, family, model_from_blob, neighbour_graph)
from dosmatgen_core.training import dataset as datamod
from dosmatgen_core.training.loop import Loop, read_state

EMA = 0.99
LOG_EVERY = 10     # epochs between held-out scores (and saved states)


@dataclass
class PredictorTrainConfig:
    run_dir: str = "runs/predictor/default"
    label_dirs: list = field(default_factory=list)
    epochs: int = 300
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    threads: int = 0
    device: str = "cpu"
    pack: str = ""             # a training pack (data.save_pack) instead of the label shards
    seed: int = 0
    max_minutes: float = 0.0
    model: dict = field(default_factory=lambda: asdict(PredictorConfig()))


def _batches(entries, bs, rng):
    order = rng.permutation(len(entries))
    for i in range(0, len(order), bs):
        yield [entries[j] for j in order[i:i + bs]]


def graph_and_target(chunk, nbr_cache: dict | None = None, fea: dict | None = None):
    """The graph of a chunk of labelled entries and their site DOS (the target); fea: CHGNet
    atom features by material_id, for models that read them."""
    nbrs = None
    if nbr_cache is not None:
        for e in chunk:
            if e.material_id not in nbr_cache:
                nbr_cache[e.material_id] = neighbour_graph(e.z, e.frac, e.lattice)
        nbrs = [nbr_cache[e.material_id] for e in chunk]
    g = collate_graphs([(e.z, e.frac, e.lattice) for e in chunk], nbrs,
                       None if fea is None else [fea[e.material_id] for e in chunk])
    y = torch.from_numpy(np.concatenate([e.site_dos for e in chunk]).astype(np.float32))
    return g, y


def heldout_metrics(model, entries, fea: dict | None = None) -> dict:
    """MAE, MAE near E_F and cosine on held-out sites, overall and per element family; the
    mean-DOS baseline alongside."""
    if not entries:
        return {}
    model.eval()
    preds, ys, fams = [], [], []
    if fea is None and model.cfg.chgnet:      # fea: CHGNet features by id, when the caller has them
        fea = _features_for(entries)
    table = model.elem.cpu().numpy()
    with torch.no_grad():
        for i in range(0, len(entries), 32):
            g, y = graph_and_target(entries[i:i + 32], fea=fea)
            preds.append(model(g.to(_device_of(model))).cpu().numpy())
            ys.append(y.numpy())
            fams += [family(z, table) for e in entries[i:i + 32] for z in e.z]
    p, y = np.concatenate(preds), np.concatenate(ys)
    fams = np.array(fams)
    out = {}
    for name, sel in [("all", np.ones(len(y), bool))] + [(f, fams == f) for f in FAMILIES]:
        if sel.sum() == 0:
            continue
        out[name] = {"sites": int(sel.sum()),
                     "mae": float(np.abs(p[sel] - y[sel]).mean()),
                     "mae_ef2": float(np.mean([dosmod.mae_near_ef(a, b) for a, b in zip(y[sel], p[sel])])),
                     "cosine": float(np.mean([dosmod.cosine(a, b) for a, b in zip(y[sel], p[sel])]))}
    return out


def _features_for(entries) -> dict:
    return dict(zip((e.material_id for e in entries),
                    chgnet_atom_features([(e.z, e.frac, e.lattice) for e in entries])))


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def labelled_entries(label_dirs, pack: str = "", features: bool = False):
    """Labelled entries, the element table a pack carries (None: take pymatgen's), the label
    shards they come from and, with features, the pack's stored CHGNet atom features (None
    without a pack or when it has none); a pack is read once for all four."""
    if not pack:
        return datamod.load_labelled(label_dirs), None, datamod.label_shard_names(label_dirs), None
    labelled, _, meta, *stored = datamod.load_pack(pack, features=features)   # features: a fourth item
    return labelled, meta.get("element_table"), meta.get("label_shards", []), stored[0] if stored else None


def _holdout_split(labelled):
    held = [datamod.is_validation(e.material_id, datamod.PREDICTOR_HOLDOUT) for e in labelled]
    return [e for e, h in zip(labelled, held) if not h], [e for e, h in zip(labelled, held) if h]


def train_predictor(cfg: PredictorTrainConfig, log=print) -> Path:
    run = Path(cfg.run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    mcfg = PredictorConfig(**cfg.model)
    # a pack's stored features serve a machine without CHGNet (a GPU box)
    labelled, table, shards, stored = labelled_entries(cfg.label_dirs, cfg.pack, features=mcfg.chgnet)
    tr, val = _holdout_split(labelled)
    log(f"predictor: {len(tr)} training structures, {len(val)} held out")
    model = SiteDOSPredictor(mcfg, elem=table).to(cfg.device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loop = Loop(run, model, opt, ema_decay=EMA, columns=["epoch", "train_mae", "val_mae", "val_cosine", "seconds"],
                max_minutes=cfg.max_minutes)
    st = read_state(run, cfg.device)
    # the shards this run has seen, over every resume: the card's record of what it trained on
    seen = set(st.get("label_shards", [])) if st is not None else set()
    loop.extra = {"config": cfg.model, "label_shards": sorted(seen | set(shards))}
    if st is not None:
        loop.resume(st)
        log(f"resumed at epoch {loop.epoch}")
    nbr_cache: dict = {}      # neighbour lists are fixed per structure: built once
    # CHGNet's features (or the stored ones) computed once, not per evaluation
    fea = (stored or _features_for(tr)) if model.cfg.chgnet else None
    val_fea = (stored or _features_for(val)) if model.cfg.chgnet and val else None
    loop.start_clock()
    while loop.epoch < cfg.epochs:
        t0 = time.time()
        rng = np.random.default_rng([cfg.seed, loop.epoch])
        model.train()
        tot, n = 0.0, 0
        for chunk in _batches(tr, cfg.batch_size, rng):
            g, y = graph_and_target(chunk, nbr_cache, fea)
            g, y = g.to(cfg.device), y.to(cfg.device)
            loss = (model(g) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            loop.tick()
            tot += loss.item() * len(chunk)
            n += len(chunk)
        loop.epoch += 1
        if loop.epoch % LOG_EVERY == 0 or loop.epoch == cfg.epochs:
            m = heldout_metrics(loop.ema, val, val_fea).get("all", {"mae": float("nan"), "cosine": float("nan")})
            loop.log_row([loop.epoch, round(tot / max(n, 1), 5), round(m["mae"], 5), round(m["cosine"], 4),
                          round(time.time() - t0, 2)])
            loop.save()
            log(f"epoch {loop.epoch}: train MAE {tot / max(n, 1):.4f}, held-out MAE {m['mae']:.4f} cos {m['cosine']:.3f}")
        if loop.out_of_time():   # checked per epoch: a predictor epoch takes seconds
            break
    loop.save()
    (run / "heldout.json").write_text(json.dumps(heldout_metrics(loop.ema, val, val_fea), indent=2))
    return run


def export_predictor(run_dirs, out_path: str | Path, label_dirs, pack: str = "") -> dict:
    """Ship the EMA weights of one run, or the mean of several runs (an ensemble; they must share
    an architecture), with a card holding the held-out scores of the ensemble and of each member.
    The file is not in model.checkpoint.SHIPPED_SHA256 until someone writes it there: until then
    load it with load_predictor(..., trust=True)."""
    runs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(r) for r in run_dirs]
    states = [read_state(r) for r in runs]
    missing = [str(r) for r, st in zip(runs, states) if st is None]
    if missing:
        raise FileNotFoundError(f"no last.pt in {', '.join(missing)}: not a predictor run")
    config = states[0]["config"]
    if any(st["config"] != config for st in states):
        raise ValueError("ensemble members must share one architecture: " + ", ".join(str(r) for r in runs))
    out_path = Path(out_path)
    blob = ({"config": config, "state_dict": states[0]["ema"]} if len(states) == 1
            else {"config": config, "members": [st["ema"] for st in states]})
    torch.save(blob, out_path)
    labelled, _, shards_now, _ = labelled_entries(label_dirs, pack)
    tr, val = _holdout_split(labelled)
    model = model_from_blob(blob)
    metrics = heldout_metrics(model, val)
    members = [heldout_metrics(m, val).get("all", {}).get("mae") for m in getattr(model, "members", [])]
    mean_dos = np.concatenate([e.site_dos for e in tr]).mean(0)
    base = float(np.mean([np.abs(r - mean_dos).mean() for e in val for r in e.site_dos])) if val else float("nan")
    # what the members trained on (their states say; a run from before they did: the shards now)
    if all("label_shards" in st for st in states):
        shards = sorted(set().union(*(st["label_shards"] for st in states)))
    else:
        shards = shards_now
    card = {"name": "DOSMatGen site-DOS predictor", "date": date.today().isoformat(),
            "epoch": int(states[0]["epoch"]), "members": len(states), "runs": [str(r) for r in runs],
            "n_train_structures": len(labelled) - len(val), "n_heldout_structures": len(val),
            "heldout": metrics, "heldout_member_mae": members, "heldout_mean_dos_baseline_mae": base,
            "label_shards": shards, "config": config, "file": out_path.name,
            "sha256": sha256_file(out_path), "bytes": out_path.stat().st_size}
    card_path(out_path).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card
