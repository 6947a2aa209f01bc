"""The app's rounds, run in background threads: a generation, the DFT checks of its top candidates
(started in the generation's own thread), then, once they end, the next round while rounds are
left and the best check misses the bar (rounds.after_checks). Each step starts the next, whichever
page is open or none: a round used to wait until the Generate page was shown again.

The CLI's `dosmatgen rounds` takes the same steps one after the other (rounds.run_rounds).
"""
from __future__ import annotations

import threading
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable

from dosmatgen_core.candidates import rounds
from dosmatgen_core.candidates.jobs import Job
from dosmatgen_core.candidates.pipeline import Request
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.certify import Batch, Certifier
from dosmatgen_core.settings import SHIPPED

STOPPED = "A newer Generate took over, so no further round of this chain starts."


@dataclass
class Chain:
    """One Generate (or one grow) and the rounds that follow it. submit: queues a generation,
    (request, then) → Job, where then(run) runs in the job's thread once its run is stored (the
    app's JobManager.submit with the models bound)."""
    submit: Callable[[Request, Callable[[dict], dict]], Job]
    cert: Certifier
    store: RunStore
    top: int = certify.DEFAULT_TOP
    relaxed: bool = SHIPPED.dft_relaxed
    per_source: bool = certify.PER_SOURCE
    labelled: frozenset = frozenset()
    left: int = 0                   # rounds still allowed after the current one
    round: int = 1
    best_run: str | None = None     # the earlier run that holds the best check so far
    job: Job | None = None          # the current round's generation
    note: str | None = None         # how the rounds stand: which one runs, or how they ended
    ended: bool = False             # no further step will start
    stopped: bool = False           # a newer Generate took over: no further round
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def asked_rounds(self) -> bool:
        """Whether rounds were asked for: then the chain says how they stand."""
        return self.left > 0 or self.round > 1

    @property
    def finished(self) -> bool:
        job = self.job
        return self.ended or (job is not None and not job.active and job.status != "done")

    @property
    def status_note(self) -> str | None:
        """The note as it stands: a cancelled or failed round says so (a walk read "Round 2 is
        running" above "Generation … cancelled")."""
        job = self.job
        if job is not None and job.status in ("cancelled", "failed") and self.asked_rounds:
            return (f"Round {self.round} was {'cancelled' if job.status == 'cancelled' else 'stopped by an error'}, "
                    "so no further round starts.")
        return self.note

    def start(self, req: Request) -> Job:
        """Queue the round's generation; a bad request raises before anything is queued."""
        self.job = self.submit(req, self._checks)
        return self.job

    def stop(self) -> None:
        """A newer Generate takes over: no further round, and a round the chain started itself that
        still generates is cancelled, so that it does not run ahead of the new one unseen (one
        generation runs at a time). The checks running go on: they become labels."""
        with self._lock:
            self.stopped = True
            if self.asked_rounds and not self.ended:
                self.note = STOPPED
            job = self.job
        if job is not None and job.active and self.round > 1:
            job.cancel_flag.set()

    def _checks(self, run: dict) -> dict:
        """In the job's thread, its run stored: the DFT checks of its top (certify.check_top), with
        what follows them. With none to start, or when starting them fails, the chain ends here."""
        if self.top < 1:
            self.ended = True
            return {"ranks": []}
        if self.round == 1 and self.left > 0 and self.note is None:
            self.note = rounds.checking(self.left)      # said while round 1's checks run
        try:
            out = certify.check_top(self.cert, self.store.get(run["id"]), self.top, self.relaxed, self.per_source,
                                    self.labelled, after=self._after)
        except Exception as exc:        # the job says why; the chain must not wait for checks that never began
            self._end(f"The DFT checks could not start: {type(exc).__name__}: {exc}")
            raise
        if not out["ranks"]:
            self._end(rounds.NOTHING_CHECKED if self.asked_rounds else self.note)
        return out

    def _after(self, batch: Batch) -> None:
        """In the checks' thread, once every check has ended: the next round, or how the rounds ended.
        Whatever goes wrong here ends the chain with a note that says so (a run deleted meanwhile, a
        seed search that fails): a chain left unended would be followed, and adopted, forever."""
        try:
            req, best, note = self._decide(batch)
        except Exception as exc:
            traceback.print_exc()
            self._end(f"No further round was started: {type(exc).__name__}: {exc}")
            return
        if req is None:
            self._end(note)
            return
        with self._lock:            # a Generate that took over meanwhile wins
            if self.stopped:
                self.ended = True
                return
            self.round, self.left, self.best_run = self.round + 1, self.left - 1, best[0]["id"]
            try:
                self.start(req)
            except Exception as exc:
                self.note, self.ended = f"The next round could not start: {exc}", True
            else:
                self.note = note

    def _decide(self, batch: Batch) -> tuple[Request | None, tuple | None, str | None]:
        if self.stopped or not self.asked_rounds:
            return None, None, self.note
        run = self.store.get(batch.run_id)
        statuses = self.cert.verifier.statuses
        earlier = None
        if self.best_run not in (None, run["id"]):
            try:
                old = self.store.get(self.best_run)
                earlier = (old, statuses(old))
            except KeyError:
                pass        # deleted meanwhile: this round alone
        return rounds.after_checks(run, statuses(run), batch.cancel_flag.is_set(), self.left, self.round, earlier)

    def _end(self, note: str | None) -> None:
        with self._lock:
            self.note, self.ended = note, True
