"""The app's rounds, run in background threads: a generation, the DFT checks of its top candidates
(started in the generation's own thread), then, once they end, the next round while rounds are
left and the best check misses the bar (rounds.after_checks). Each step starts the next, whichever
page is open or none: a round used to wait until the Generate page was shown again.

The CLI's `dosmatgen rounds` takes the same steps one after the other (rounds.run_rounds).
"""
from __future__ import annotations

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
from dosmatgen_core.structures import StructureError


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
        """No further round (the checks running go on: they become labels)."""
        self.stopped = True

    def _checks(self, run: dict) -> dict:
        """In the job's thread, its run stored: the DFT checks of its top (certify.check_top), with
        what follows them. With none to start, the chain ends here."""
        if self.top < 1:
            self.ended = True
            return {"ranks": []}
        out = certify.check_top(self.cert, self.store.get(run["id"]), self.top, self.relaxed, self.per_source,
                                self.labelled, after=self._after)
        if not out["ranks"]:
            if self.asked_rounds:
                self.note = rounds.NOTHING_CHECKED
            self.ended = True
        return out

    def _after(self, batch: Batch) -> None:
        """In the checks' thread, once every check has ended: the next round, or how the rounds ended."""
        if self.stopped or not self.asked_rounds:
            self.ended = True
            return
        run = self.store.get(batch.run_id)
        statuses = self.cert.verifier.statuses
        earlier = None
        if self.best_run not in (None, run["id"]):
            try:
                old = self.store.get(self.best_run)
                earlier = (old, statuses(old))
            except KeyError:
                pass        # deleted meanwhile: this round alone
        req, best, note = rounds.after_checks(run, statuses(run), batch.cancel_flag.is_set(), self.left, self.round,
                                              earlier)
        if req is not None:
            self.round, self.left, self.best_run = self.round + 1, self.left - 1, best[0]["id"]
            try:
                self.start(req)
            except (ValueError, StructureError) as exc:
                note = f"The next round could not start: {exc}"
            else:
                self.note = note
                return
        self.note, self.ended = note, True
