"""`dosmatgen train`: resumable training of the denoiser on all structures and all labels.

State (model, EMA, optimiser, epoch, RNG) lives in RUN_DIR/last.pt and is rewritten every few
minutes and at each epoch end, so the job can be killed and restarted at will. Train and
validation loss go to RUN_DIR/log.csv, one row per epoch.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import torch

from dosmatgen_core.model.checkpoint import card_path, save_model
from dosmatgen_core.model.denoiser import Denoiser, DenoiserConfig
from dosmatgen_core.model.diffusion import Schedules, training_loss
from dosmatgen_core.paths import CACHE_DIR
from dosmatgen_core.training import dataset as datamod
from dosmatgen_core.training.loop import Loop, read_state
from dosmatgen_core.training.pseudo import attach

LOG_COLUMNS = ["epoch", "step", "train_loss", "train_lattice", "train_coord", "train_type", "val_loss",
               "val_labelled_loss", "seconds", "n_train", "n_labelled"]


@dataclass
class TrainConfig:
    run_dir: str = "runs/train/default"
    label_dirs: list = field(default_factory=list)
    csvs: list = field(default_factory=list)
    labelled_only: bool = False
    epochs: int = 100
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.0
    ema: float = 0.999
    p_uncond: float = 0.2
    p_atom: float = 0.5
    p_single: float = 0.0          # share of labelled crystals with exactly one conditioned atom
    labelled_share: float = 0.25   # oversample labelled crystals to this share of each epoch
    epoch_size: int = 0            # crystals per epoch (0 = all)
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0       # stop after this long (0 = run to the end)
    threads: int = 0
    seed: int = 0
    device: str = "auto"
    init_from: str = ""            # warm start: a shipped model (assets/denoiser.pt) for a new run
    pack: str = ""                 # a training pack (data.save_pack) instead of shards + tables
    dos_shift_ev: float = 0.0      # conditioning-DOS augmentation (data.DOSAugment)
    dos_scale: float = 0.0
    pseudo: str = ""               # pseudo-labels of unlabelled crystals (pseudo.pseudo_label)
    pseudo_share: float = 0.0      # ... drawn as this share of each epoch (beside the DFT labels)
    pseudo_meta: dict = field(default_factory=dict)     # filled in at start: their provenance
    label_shards: list = field(default_factory=list)   # filled in at start: the shards trained on
    init_from_card: dict = field(default_factory=dict) # the warm-start model's sha256, epochs, steps
    model: dict = field(default_factory=lambda: DenoiserConfig().to_dict())


def pick_device(name: str = "auto") -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def epoch_order(n_lab: int, n_unlab: int, cfg: TrainConfig, rng: np.random.Generator, n_pseudo: int = 0) -> np.ndarray:
    """Indices for one epoch: labelled crystals (0..n_lab-1) repeated to reach labelled_share,
    then pseudo-labelled ones (n_lab..n_lab+n_pseudo-1) to pseudo_share, unlabelled ones after."""
    size = cfg.epoch_size or (n_lab + n_unlab)
    if n_lab == 0 or cfg.labelled_only:
        n = n_lab + n_unlab
        if n == 0:
            return np.array([], int)
        # an epoch longer than the data (small labelled-only runs) draws with replacement
        return rng.permutation(n)[:size] if size <= n else rng.choice(n, size, replace=True)
    n_l = max(int(round(cfg.labelled_share * size)), min(n_lab, size)) if n_unlab else size
    lab = rng.choice(n_lab, n_l, replace=n_l > n_lab)
    n_p = min(int(round(cfg.pseudo_share * size)), size - n_l) if n_pseudo and n_unlab else 0
    pse = n_lab + rng.choice(n_pseudo, n_p, replace=n_p > n_pseudo) if n_p else np.array([], int)
    unl = n_lab + n_pseudo + rng.permutation(n_unlab)[: max(size - n_l - n_p, 0)]
    return rng.permutation(np.concatenate([lab, pse, unl]))


def warm_start(model: Denoiser, path: str | Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Copy a shipped model's weights into `model` wherever they fit; returns its DOS scale and
    the parameters left at their fresh values.

    A continuous-type model seeds a D3PM one: the element input gains a MASK column (starting at
    zero, so known atoms look as before) and the type head, whose output changes meaning
    (ε → logits), starts fresh.
    """
    blob = torch.load(path, map_location="cpu", weights_only=True)
    src = blob["state_dict"]
    same_types = blob["config"].get("types", "continuous") == model.cfg.types
    own = model.state_dict()
    fresh = []
    for k, v in own.items():
        w = src.get(k)
        if w is None or (k.startswith("type_out") and not same_types):
            fresh.append(k)
        elif w.shape == v.shape:
            own[k] = w.clone()
        elif k == "type_in.weight" and w.shape[0] == v.shape[0] and w.shape[1] == v.shape[1] - 1:
            own[k] = torch.cat([w, torch.zeros(v.shape[0], 1)], dim=1)
        else:
            fresh.append(k)
    model.load_state_dict(own)
    return blob["dos_mean"].numpy(), blob["dos_std"].numpy(), fresh


def load_run_state(path: str | Path) -> tuple[Denoiser, np.ndarray, np.ndarray, dict]:
    """A training state file → (model with its EMA weights, DOS mean, DOS std, the state dict)."""
    st = torch.load(path, map_location="cpu", weights_only=True)
    model = Denoiser(DenoiserConfig(**st["config"]))
    model.load_state_dict(st["ema"])
    model.eval()
    return model, st["dos_mean"].numpy(), st["dos_std"].numpy(), st


def slim_state(run_dir: str | Path) -> Path:
    """Drop the optimiser moments from RUN_DIR/last.pt (a third of its size) so it can be committed;
    a run resumed from it restarts Adam's moments and keeps everything else."""
    path = Path(run_dir) / "last.pt"
    st = torch.load(path, map_location="cpu", weights_only=True)
    st.pop("opt", None)
    tmp = path.with_suffix(".tmp")
    torch.save(st, tmp)
    tmp.replace(path)
    return path


def halve_run(run_dir: str | Path) -> list[Path]:
    """For the trip back from a GPU round (which returns few, small files): meta.pt (the run state
    without weights or optimiser) and best[-labelled]-half.pt (EMA weights in float16, 4 MB for
    the shipped size, outputs equal to ~1e-3). restore_run() undoes it."""
    run = Path(run_dir)
    st = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    torch.save({k: v for k, v in st.items() if k not in ("model", "opt", "ema")}, run / "meta.pt")
    out = [run / "meta.pt"]
    for pick in ("best", "best-labelled"):
        if (run / f"{pick}.pt").exists():
            b = torch.load(run / f"{pick}.pt", map_location="cpu", weights_only=True)
            b["ema"] = {k: v.half() if v.is_floating_point() else v for k, v in b["ema"].items()}
            torch.save(b, run / f"{pick}-half.pt")
            out.append(run / f"{pick}-half.pt")
    return out


def restore_run(run_dir: str | Path) -> Path:
    """A run brought back from a GPU round (halve_run's files, see scripts/gpu-round.sh) →
    best.pt, best-labelled.pt and a last.pt holding the best weights, which export() reads.
    The weights were rounded to float16 for the trip; they come back as float32."""
    run = Path(run_dir)
    meta = run / "meta.pt"
    if not meta.exists():
        raise FileNotFoundError(f"{meta} missing: not a run from a GPU round")
    st = torch.load(meta, map_location="cpu", weights_only=True)
    got = {}
    for pick in ("best", "best-labelled"):
        half = run / f"{pick}-half.pt"
        if half.exists():
            b = torch.load(half, map_location="cpu", weights_only=True)
            b["ema"] = {k: v.float() if v.is_floating_point() else v for k, v in b["ema"].items()}
            torch.save(b, run / f"{pick}.pt")
            got[pick] = b
    if not got:
        raise FileNotFoundError(f"{run} holds no best-half.pt or best-labelled-half.pt")
    st["ema"] = got.get("best", next(iter(got.values())))["ema"]
    torch.save(st, run / "last.pt")
    return run


def validation_loss(model, entries, mean, std, sch, device, batch_size=128, seed=1234) -> float:
    """Validation loss with a fixed noise draw, so epochs are comparable."""
    if not entries:
        return float("nan")
    g = torch.Generator(device=device).manual_seed(seed)
    tot, n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for i in range(0, len(entries), batch_size):
            chunk = entries[i:i + batch_size]
            b = datamod.collate(chunk, mean, std).to(device)
            tot += training_loss(model, b, sch, p_uncond=0.0, p_atom=1.0, gen=g)["loss"].item() * len(chunk)
            n += len(chunk)
    model.train()
    return tot / n


def train(cfg: TrainConfig, log=print) -> Path:
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.pack:
        pack_lab, unlabelled_all, meta = datamod.load_pack(cfg.pack)
        unlabelled_all = [] if cfg.labelled_only else unlabelled_all
        cfg.label_shards, cfg.csvs = meta.get("label_shards", []), meta.get("csvs", [])
    else:
        unlabelled_all = [] if cfg.labelled_only else datamod.load_unlabelled(cfg.csvs, cache_dir=CACHE_DIR)

    def shard_key():
        if cfg.pack:
            return ()
        return tuple(sorted((p.name, p.stat().st_size) for d in cfg.label_dirs for p in Path(d).glob("*.jsonl.gz")))

    def split():
        """Re-read the shards: labels that landed since the last epoch join training."""
        labelled = pack_lab if cfg.pack else datamod.load_labelled(cfg.label_dirs)
        if not cfg.pack:
            cfg.label_shards = datamod.label_shard_names(cfg.label_dirs)
        ids = {x.material_id for x in labelled}
        unl = [e for e in unlabelled_all if e.material_id not in ids]
        val = [e for e in labelled + unl if datamod.is_validation(e.material_id)]
        tr_lab = [e for e in labelled if not datamod.is_validation(e.material_id)]
        tr_unl = [e for e in unl if not datamod.is_validation(e.material_id)]
        return tr_lab, tr_unl, val, [e for e in val if e.site_dos is not None]

    def pseudo_entries(tr_unl):
        if not cfg.pseudo:
            return []
        got, cfg.pseudo_meta = attach(cfg.pseudo, tr_unl)
        return got

    key = shard_key()
    tr_lab, tr_unl, val, val_lab = split()
    tr_pse = pseudo_entries(tr_unl)
    mean, std = datamod.dos_stats(tr_lab)
    log(f"device {device}; train {len(tr_lab)} labelled + {len(tr_unl)} unlabelled "
        f"({len(tr_pse)} of them also pseudo-labelled); validation {len(val)} ({len(val_lab)} labelled)")

    st = read_state(run, device)
    if st is not None:
        cfg.model = DenoiserConfig(**st["config"]).to_dict()     # a resumed run keeps its architecture
        if not cfg.init_from and (run / "config.json").exists():  # ... and its provenance
            old = json.loads((run / "config.json").read_text())
            cfg.init_from, cfg.init_from_card = old.get("init_from", ""), old.get("init_from_card", {})
    model = Denoiser(DenoiserConfig(**cfg.model)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loop = Loop(run, model, opt, ema_decay=cfg.ema, columns=LOG_COLUMNS,
                best={"best.pt": "val_loss", "best-labelled.pt": "val_labelled_loss"},   # labelled: the conditional branch alone
                max_minutes=cfg.max_minutes, checkpoint_minutes=cfg.checkpoint_minutes)
    # warm-up over the first 500 steps, then constant: runs are resumed and extended, so no decay
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 500))
    sch = Schedules.make().to(device)
    torch.manual_seed(cfg.seed)
    if st is not None:
        loop.resume(st)
        sched.last_epoch = loop.step
        torch.manual_seed(cfg.seed + loop.epoch)
        mean, std = st["dos_mean"].numpy(), st["dos_std"].numpy()   # keep the encoder's input scale
        log(f"resumed at epoch {loop.epoch}, step {loop.step}")
    elif cfg.init_from:
        mean, std, fresh = warm_start(model, cfg.init_from)
        card = card_path(cfg.init_from)
        if card.exists():    # the file may be replaced later (it is the shipped model): keep who it was
            c = json.loads(card.read_text())
            cfg.init_from_card = {k: c.get(k) for k in ("sha256", "epoch", "steps", "date")}
        loop.sync_ema()
        log(f"warm start from {cfg.init_from}; fresh: {', '.join(fresh) or 'nothing'}")
    loop.extra = {"dos_mean": torch.from_numpy(mean), "dos_std": torch.from_numpy(std), "config": cfg.model}
    aug = datamod.DOSAugment(cfg.dos_shift_ev, cfg.dos_scale)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    loop.start_clock()
    while loop.epoch < cfg.epochs:
        t0 = time.time()
        if shard_key() != key:
            key = shard_key()
            tr_lab, tr_unl, val, val_lab = split()
            tr_pse = pseudo_entries(tr_unl)
            (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))
            log(f"label shards changed: now {len(tr_lab)} labelled training crystals")
        train_entries = tr_lab + tr_pse + tr_unl
        rng = np.random.default_rng([cfg.seed, loop.epoch])
        order = epoch_order(len(tr_lab), len(tr_unl), cfg, rng, n_pseudo=len(tr_pse))
        sums = np.zeros(4)
        nb = 0
        for i in range(0, len(order), cfg.batch_size):
            chunk = [train_entries[j] for j in order[i:i + cfg.batch_size]]
            b = datamod.collate(chunk, mean, std, aug, rng).to(device)
            out = training_loss(model, b, sch, p_uncond=cfg.p_uncond, p_atom=cfg.p_atom, p_single=cfg.p_single)
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            loop.tick()
            nb += 1
            sums += [out["loss"].item(), out["lattice"].item(), out["coord"].item(), out["type"].item()]
            if loop.out_of_time():
                loop.save()
                log(f"stopped after {cfg.max_minutes} min in epoch {loop.epoch}")
                return run
        loop.epoch += 1
        v = validation_loss(loop.ema, val, mean, std, sch, device)
        vl = validation_loss(loop.ema, val_lab, mean, std, sch, device)
        m = sums / max(nb, 1)
        loop.log_row([loop.epoch, loop.step, *np.round(m, 5), round(v, 5), round(vl, 5),
                      round(time.time() - t0, 1), len(order), len(tr_lab)])
        loop.save()
        loop.keep_best("best.pt", v, val_loss=v)
        loop.keep_best("best-labelled.pt", vl, val_loss=vl)
        log(f"epoch {loop.epoch}: train {m[0]:.4f} (L {m[1]:.3f} X {m[2]:.3f} A {m[3]:.4f}) val {v:.4f} "
            f"val-labelled {vl:.4f} [{time.time() - t0:.0f} s]")
    return run


def export(run_dir: str | Path, out_path: str | Path, pick: str = "best") -> dict:
    """Ship a run's EMA weights with a model card (data, sizes, epochs, losses, date).

    pick: "best" (lowest validation loss), "best-labelled" (lowest loss on the labelled
    validation crystals, i.e. the conditional branch) or "last"."""
    if pick not in ("best", "best-labelled", "last"):
        raise ValueError(f"pick must be best, best-labelled or last, not {pick!r}")
    run = Path(run_dir)
    model, mean, std, st = load_run_state(run / "last.pt")
    cfg = json.loads((run / "config.json").read_text())
    epoch = int(st["epoch"])
    if pick != "last" and (run / f"{pick}.pt").exists():
        b = torch.load(run / f"{pick}.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(b["ema"])
        epoch = int(b["epoch"])
    rows = list(csv.DictReader((run / "log.csv").open())) if (run / "log.csv").exists() else []
    row = next((r for r in rows if int(r["epoch"]) == epoch), rows[-1] if rows else {})
    shards = cfg.get("label_shards") or sorted({p.name for d in cfg["label_dirs"] for p in Path(d).glob("*.jsonl.gz")})
    card = {"name": "DOSMatGen denoiser", "date": date.today().isoformat(), "epoch": epoch, "picked": pick,
            "steps": int(row.get("step", 0) or 0), "val_loss": float(row.get("val_loss", "nan") or "nan"),
            "val_labelled_loss": float(row.get("val_labelled_loss", "nan") or "nan"),
            "n_train": int(row.get("n_train", 0) or 0), "n_labelled_structures": int(row.get("n_labelled", 0) or 0),
            "label_shards": shards, "structure_tables": [Path(c).parent.name + "/" + Path(c).name for c in cfg["csvs"]],
            "labelled_only": cfg["labelled_only"], "config": st["config"],
            "type_diffusion": st["config"].get("types", "continuous"), "run_dir": str(cfg["run_dir"]),
            "warm_start": ({"file": Path(cfg["init_from"]).name, **cfg.get("init_from_card", {})}
                           if cfg.get("init_from") else None),
            "train": {k: cfg[k] for k in ("batch_size", "lr", "ema", "p_uncond", "p_atom", "labelled_share")
                      + ("dos_shift_ev", "dos_scale", "pseudo_share", "p_single") if k in cfg},
            "pseudo_labels": ({"file": Path(cfg["pseudo"]).name, **cfg.get("pseudo_meta", {})}
                              if cfg.get("pseudo") else None)}
    return save_model(out_path, model, mean, std, card)
