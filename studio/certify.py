"""DFT check of a run's top candidates, in the background, one calculation at a time.

Submits each chosen candidate to `Verifier` only when the previous one has finished, so a
cancel stops the rest from being submitted (the calculation already running completes). The
results live in the run store, so a reload, the Runs page and the zip all see them.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

MAX_ATOMS = 8          # larger cells take far longer than a few minutes with the labelling recipe
DEFAULT_TOP = 3


def pick(run: dict, top: int = DEFAULT_TOP, max_atoms: int = MAX_ATOMS, labelled: frozenset = frozenset()) -> list[int]:
    """Ranks of the best `top` candidates worth a DFT check: geometry valid, at most max_atoms,
    and not a known structure of the reference db (`labelled` ids: its stored label is the answer)."""
    out = []
    for c in sorted(run["candidates"], key=lambda c: c["rank"]):
        if len(out) >= top:
            break
        if c.get("novel") is False and c.get("matches") in labelled:
            continue
        if c.get("structurally_valid") and c["n_atoms"] <= max_atoms:
            out.append(c["rank"])
    return out


@dataclass
class Batch:
    run_id: str
    ranks: list[int]
    prior_s: float
    started: float = field(default_factory=time.time)
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    finished: bool = False


class Certifier:
    """One per process (the app caches it)."""

    def __init__(self, verifier, prior_s: float):
        self.verifier, self.prior_s = verifier, prior_s
        self.batches: dict[str, Batch] = {}

    def start(self, run_id: str, ranks: list[int]) -> Batch:
        old = self.batches.get(run_id)
        if old is not None and not old.finished:
            return old
        b = Batch(run_id, list(ranks), self.prior_s)
        self.batches[run_id] = b
        threading.Thread(target=self._work, args=(b,), daemon=True, name=f"dft-{run_id}").start()
        return b

    def _work(self, b: Batch) -> None:
        try:
            for rank in b.ranks:
                if b.cancel_flag.is_set():
                    break
                cur = self.verifier.status(b.run_id, rank)
                if cur and cur["status"] == "done":
                    continue
                self.verifier.submit(b.run_id, rank)
                while True:
                    time.sleep(1.0)
                    s = self.verifier.status(b.run_id, rank)
                    if s is None or s["status"] not in ("queued", "running"):
                        break
        finally:
            b.finished = True

    def cancel(self, run_id: str) -> None:
        b = self.batches.get(run_id)
        if b:
            b.cancel_flag.set()

    def progress(self, run_id: str) -> dict | None:
        """{'ranks', 'done', 'failed', 'running', 'left_s', 'active', 'cancelled'} for the run's batch."""
        b = self.batches.get(run_id)
        if b is None:
            return None
        st = {r: self.verifier.status(run_id, r) for r in b.ranks}
        done = [r for r, s in st.items() if s and s["status"] == "done"]
        failed = [r for r, s in st.items() if s and s["status"] == "failed"]
        running = [r for r, s in st.items() if s and s["status"] in ("queued", "running")]
        secs = [s["result"]["seconds"] for s in st.values() if s and s["status"] == "done" and s["result"]]
        per = sum(secs) / len(secs) if secs else b.prior_s
        left = 0.0 if b.cancel_flag.is_set() else per * (len(b.ranks) - len(done) - len(failed))
        if running:
            elapsed = time.time() - (st[running[0]].get("started") or time.time())
            left = max(left - min(elapsed, per * 0.9), 0.0)
        return {"ranks": b.ranks, "done": done, "failed": failed, "running": running, "left_s": left,
                "active": not b.finished, "cancelled": b.cancel_flag.is_set()}


def status_line(p: dict, duration) -> str:
    """'DFT check of the top 3: 1 of 3 done, ~2 min left'."""
    n = len(p["ranks"])
    text = f"DFT check of the top {n}: {len(p['done'])} of {n} done"
    if p["failed"]:
        text += f", {len(p['failed'])} failed"
    if p["active"] and not p["cancelled"]:
        text += f", ~{duration(p['left_s'])} left"
    elif p["cancelled"]:
        text += " (cancelled: the rest will not be submitted)"
    return text
