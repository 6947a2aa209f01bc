"""What every trainer here shares: a resumable state file, an EMA copy of the weights, one log.csv
row per logged epoch, a time limit, and best.pt-style files kept by a validation metric.

RUN_DIR/last.pt holds {"model", "ema", "opt", "epoch", "step", **extra} (extra: what a trainer
needs to rebuild its model, e.g. its config and DOS scale) and is replaced atomically, so a run
can be killed at any moment and resumed by rerunning it. A state without "opt" (slimmed for a
commit) resumes with fresh optimiser moments.
"""
from __future__ import annotations

import copy
import csv
import math
import time
from pathlib import Path

import torch


def read_state(run_dir: str | Path, device: str = "cpu") -> dict | None:
    """RUN_DIR/last.pt, or None for a new run."""
    path = Path(run_dir) / "last.pt"
    return torch.load(path, map_location=device, weights_only=True) if path.exists() else None


def best_in_log(log_path: Path, column: str) -> float:
    """Lowest finite value of a log.csv column (inf for none): a resumed run keeps its best."""
    if not log_path.exists():
        return math.inf
    vals = [float(r[column]) for r in csv.DictReader(log_path.open()) if r.get(column) not in (None, "")]
    return min((v for v in vals if math.isfinite(v)), default=math.inf)


class Loop:
    """The bookkeeping of one run directory around a model and its optimiser."""

    def __init__(self, run_dir: str | Path, model: torch.nn.Module, opt: torch.optim.Optimizer, *,
                 ema_decay: float, columns: list[str], best: dict[str, str] | None = None,
                 max_minutes: float = 0.0, checkpoint_minutes: float = 0.0):
        """best: file name → the log.csv column it is kept by (lower is better)."""
        self.run = Path(run_dir)
        self.run.mkdir(parents=True, exist_ok=True)
        self.model, self.opt, self.decay = model, opt, ema_decay
        self.ema = copy.deepcopy(model).eval()
        self.max_minutes, self.checkpoint_minutes = max_minutes, checkpoint_minutes
        self.epoch, self.step = 0, 0
        self.extra: dict = {}          # saved beside the weights in last.pt
        self.log_path = self.run / "log.csv"
        if not self.log_path.exists():
            self.log_path.write_text(",".join(columns) + "\n")
        # a resumed run starts from its earlier epochs' best, so it does not overwrite a better file
        self.best = {name: best_in_log(self.log_path, col) if (self.run / name).exists() else math.inf
                     for name, col in (best or {}).items()}
        self.start_clock()

    def start_clock(self) -> None:
        """The time limit and the checkpoint interval count from here."""
        self.t_start = self.last_save = time.time()

    def resume(self, st: dict) -> None:
        """Load a read_state() dict: weights, EMA, optimiser (when kept), epoch and step."""
        self.model.load_state_dict(st["model"])
        self.ema.load_state_dict(st["ema"])
        if "opt" in st:
            self.opt.load_state_dict(st["opt"])
        self.epoch, self.step = int(st["epoch"]), int(st.get("step", 0))

    def sync_ema(self) -> None:
        """EMA = current weights (after a warm start)."""
        self.ema.load_state_dict(self.model.state_dict())

    def tick(self) -> None:
        """After an optimiser step: update the EMA, count the step, checkpoint when due (mid-epoch:
        a restart redoes the epoch from its start)."""
        with torch.no_grad():
            for pe, pm in zip(self.ema.parameters(), self.model.parameters()):
                pe.mul_(self.decay).add_(pm.detach(), alpha=1 - self.decay)
        self.step += 1
        if self.checkpoint_minutes and time.time() - self.last_save > self.checkpoint_minutes * 60:
            self.save()

    def out_of_time(self) -> bool:
        return bool(self.max_minutes) and time.time() - self.t_start > self.max_minutes * 60

    def save(self) -> None:
        path = self.run / "last.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"model": self.model.state_dict(), "ema": self.ema.state_dict(), "opt": self.opt.state_dict(),
                    "epoch": self.epoch, "step": self.step, **self.extra}, tmp)
        tmp.replace(path)
        self.last_save = time.time()

    def log_row(self, values: list) -> None:
        with self.log_path.open("a") as fh:
            csv.writer(fh).writerow(values)

    def keep_best(self, name: str, value: float, **fields) -> bool:
        """Write RUN_DIR/NAME ({"ema", "epoch", **fields}) when `value` beats every earlier epoch."""
        if not value < self.best[name]:
            return False
        self.best[name] = value
        torch.save({"ema": self.ema.state_dict(), "epoch": self.epoch, **fields}, self.run / name)
        return True
