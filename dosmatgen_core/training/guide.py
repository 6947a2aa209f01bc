"""`dosmatgen train-guide` / `export-guide`: the noise-aware DOS guide (model/guide.py).

Trained on the labelled crystals of a training pack, minus the generator's validation ids (so
no held-out benchmark site is seen), warm-started from the shipped denoiser's trunk. Resumable
like `dosmatgen train`: RUN_DIR/last.pt is rewritten every few minutes and at each epoch end,
and RUN_DIR/log.csv gets one row per epoch with the validation error at three noise levels.
"""
from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from dosmatgen_core.model.checkpoint import card_path, sha256_file
from dosmatgen_core.model.denoiser import DenoiserConfig
from dosmatgen_core.model.diffusion import Schedules
from dosmatgen_core.model.guide import DOSGuide, guide_loss
from dosmatgen_core.training import dataset as datamod
from dosmatgen_core.training.loop import Loop, read_state

VAL_TIMES = (1, 100, 300)     # validation noise levels (of T = 1000)


@dataclass
class GuideTrainConfig:
    run_dir: str = "runs/guide/default"
    pack: str = ""
    init_from: str = "assets/denoiser.pt"   # trunk weights and DOS standardisation
    epochs: int = 60
    batch_size: int = 32
    lr: float = 3e-4
    ema: float = 0.995
    checkpoint_minutes: float = 5.0
    max_minutes: float = 0.0
    threads: int = 0
    seed: int = 0
    device: str = "cpu"


def _split(pack: str):
    if not pack:
        raise ValueError("train-guide needs --pack (dosmatgen pack writes one)")
    labelled, _, meta = datamod.load_pack(pack)
    tr = [e for e in labelled if not datamod.is_validation(e.material_id)]
    val = [e for e in labelled if datamod.is_validation(e.material_id)]
    if not tr or not val:
        raise ValueError(f"{pack}: {len(tr)} training and {len(val)} validation labelled crystals; need both")
    return tr, val, meta


def val_errors(guide: DOSGuide, val, mean, std, sch, device) -> dict[int, float]:
    """Validation MSE (standardised DOS) at fixed noise levels, with a fixed noise draw."""
    out = {}
    guide.eval()
    with torch.no_grad():
        for t in VAL_TIMES:
            g = torch.Generator(device=device).manual_seed(1234 + t)
            tot, n = 0.0, 0
            for i in range(0, len(val), 128):
                b = datamod.collate(val[i:i + 128], mean, std).to(device)
                tt = torch.full((b.n_crystals,), t, dtype=torch.long, device=device)
                tot += guide_loss(guide, b, sch, g, tt).item() * float(b.has_dos.sum())
                n += float(b.has_dos.sum())
            out[t] = tot / max(n, 1)
    guide.train()
    return out


def train_guide(cfg: GuideTrainConfig, log=print) -> Path:
    run = Path(cfg.run_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    tr, val, meta = _split(cfg.pack)
    dev = cfg.device
    st = read_state(run, dev)
    src = st if st is not None else torch.load(cfg.init_from, map_location="cpu", weights_only=True)
    mcfg = DenoiserConfig(**src["config"])
    mean, std = src["dos_mean"].numpy(), src["dos_std"].numpy()   # a new run: the sampler's DOS scale
    guide = DOSGuide(mcfg).to(dev)
    if st is None:
        guide.trunk.load_state_dict(src["state_dict"])
    opt = torch.optim.AdamW(guide.parameters(), lr=cfg.lr, weight_decay=1e-4)
    loop = Loop(run, guide, opt, ema_decay=cfg.ema,
                columns=["epoch", "step", "train_mse", *(f"val_mse_t{t}" for t in VAL_TIMES), "seconds"],
                best={"best.pt": "val_mse_t1"}, max_minutes=cfg.max_minutes, checkpoint_minutes=cfg.checkpoint_minutes)
    loop.extra = {"dos_mean": torch.from_numpy(mean), "dos_std": torch.from_numpy(std), "config": mcfg.to_dict()}
    sch = Schedules.make().to(dev)
    if st is not None:
        loop.resume(st)
        log(f"resumed at epoch {loop.epoch}")
    (run / "config.json").write_text(json.dumps({**asdict(cfg), "label_shards": meta.get("label_shards", []),
                                                 "n_train": len(tr), "n_val": len(val)}, indent=2))
    log(f"guide: {len(tr)} training / {len(val)} validation labelled crystals")

    loop.start_clock()
    while loop.epoch < cfg.epochs:
        t0 = time.time()
        rng = np.random.default_rng([cfg.seed, loop.epoch])
        gen = torch.Generator(device=dev).manual_seed(cfg.seed * 100003 + loop.epoch)
        order = rng.permutation(len(tr))
        tot, nb = 0.0, 0
        for i in range(0, len(order), cfg.batch_size):
            b = datamod.collate([tr[j] for j in order[i:i + cfg.batch_size]], mean, std).to(dev)
            loss = guide_loss(guide, b, sch, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(guide.parameters(), 1.0)
            opt.step()
            loop.tick()
            nb += 1
            tot += loss.item()
            if loop.out_of_time():
                loop.save()
                log(f"stopped after {cfg.max_minutes} min in epoch {loop.epoch}")
                return run
        loop.epoch += 1
        v = val_errors(loop.ema, val, mean, std, sch, dev)
        loop.log_row([loop.epoch, loop.step, round(tot / max(nb, 1), 5), *(round(v[t], 5) for t in VAL_TIMES),
                      round(time.time() - t0, 1)])
        loop.save()
        loop.keep_best("best.pt", v[1], val_mse_t1=v[1])
        log(f"epoch {loop.epoch}: train {tot / max(nb, 1):.4f} val " + " ".join(f"t{t} {v[t]:.4f}" for t in VAL_TIMES)
            + f" [{time.time() - t0:.0f} s]")
    return run


def export_guide(run_dir: str | Path, out_path: str | Path) -> dict:
    """Ship the run's best EMA weights (lowest validation error at t = 1) with a card."""
    run = Path(run_dir)
    st = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    weights, epoch = st["ema"], int(st["epoch"])
    if (run / "best.pt").exists():
        b = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
        weights, epoch = b["ema"], int(b["epoch"])
    cfg = json.loads((run / "config.json").read_text())
    rows = list(csv.DictReader((run / "log.csv").open()))
    row = next((r for r in rows if int(r["epoch"]) == epoch), {})
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": st["config"], "state_dict": weights, "dos_mean": st["dos_mean"], "dos_std": st["dos_std"]}, out)
    init = Path(cfg["init_from"])
    card = {"name": "DOSMatGen noise-aware DOS guide", "date": date.today().isoformat(), "epoch": epoch,
            "steps": int(row.get("step", 0) or 0), "n_train": cfg["n_train"], "n_val": cfg["n_val"],
            "val_mse": {k: float(v) for k, v in row.items() if k.startswith("val_mse")},
            "label_shards": cfg["label_shards"], "config": st["config"], "run_dir": cfg["run_dir"],
            "warm_start": {"file": init.name, "sha256": json.loads(card_path(init).read_text()).get("sha256")
                           if card_path(init).exists() else None},
            "file": out.name, "sha256": sha256_file(out), "bytes": out.stat().st_size}
    card_path(out).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card
