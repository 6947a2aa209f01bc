"""Background generation jobs for the app: a thread per job, progress, ETA, cancel, and the
finished run saved to the run store (so a page reload only needs the run id)."""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field

from dosmatgen_core import checks
from dosmatgen_core.candidates.pipeline import Request, run_generation
from dosmatgen_core.sampling.sampler import Cancelled


@dataclass
class Job:
    id: str
    request: Request
    status: str = "queued"          # queued | running | done | cancelled | failed
    progress: float = 0.0
    eta: float = 0.0
    message: str = ""
    run_id: str | None = None
    error: str | None = None
    started: float = field(default_factory=time.time)
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    followup: dict | None = None    # what `then` returned, set before the job reads as done

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


class JobManager:
    """One per process (the app caches it); jobs run one at a time so the CPU is not split."""

    def __init__(self):
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._gpu_cpu = threading.Semaphore(1)

    def submit(self, req: Request, loaded, predictor, store, db_url, hull=None, guide=None, then=None) -> Job:
        """then: called with the stored run in the job's own thread once it is done (the app starts
        its DFT checks there: a page that was left, or a tab that was closed, must not keep them
        from starting); what it returns is the job's followup, an exception its followup's error."""
        req.specs()   # validate now: a bad request raises here and nothing is queued
        checks.check_device(req.device)
        job = Job(uuid.uuid4().hex[:8], req)
        with self._lock:
            self.jobs[job.id] = job

        def work():
            with self._gpu_cpu:
                if job.cancel_flag.is_set():
                    job.status = "cancelled"
                    return
                job.status = "running"

                def prog(f, eta, msg):
                    job.progress, job.eta, job.message = f, eta, msg

                try:
                    run = run_generation(req, loaded, predictor, guide=guide, store=store, db_url=db_url, progress=prog,
                                         cancel=job.cancel_flag.is_set, hull=hull)
                    job.run_id = run["id"]
                    if then is not None:
                        try:
                            job.followup = then(run)
                        except Exception as exc:        # the run is stored: it stays done, and says why
                            job.followup = {"error": f"{type(exc).__name__}: {exc}"}
                            traceback.print_exc()
                    job.status = "done"
                except Cancelled:
                    job.status = "cancelled"
                except Exception as exc:
                    job.error = f"{type(exc).__name__}: {exc}"
                    job.status = "failed"
                    traceback.print_exc()

        threading.Thread(target=work, daemon=True, name=f"job-{job.id}").start()
        return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def cancel(self, job_id: str) -> None:
        job = self.jobs.get(job_id)
        if job:
            job.cancel_flag.set()
