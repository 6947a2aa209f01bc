"""`python -m benchmarks.load`: how much slower the app's costly stages run when other work shares
the CPU.

The Generate page's estimates scale rates measured on a quiet CPU, but a scientist's machine is
rarely quiet (here the labeller runs beside the app). This bench times the same small work on the
machine as it is and beside k extra busy processes (k = 1 .. cpus + 1, each a spinning Python
loop): the app's steered sampling as the app runs it (one torch thread per free core,
sampling/cores.py), the same with torch's default threads (what it did before), and one GPAW
single point with the labeller's recipe (a single-threaded process, as the DFT check runs). Fair
sharing of the cores predicts a slowdown of max(1, (k + t) / cpus) / max(1, t / cpus) for a stage
of t busy threads (studio.slowdown). The record holds the measured and the predicted slowdowns
side by side; the page scales its sampling estimate by the measured one (studio.sampling_slowdown)
and its DFT estimate by fair sharing. Run it with the machine otherwise quiet (pause the
labeller): the first, k = 0 timing is the reference the others are divided by, the quiet
two-thread sampling for both sampling stages.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.common import machine
from benchmarks.truth import commit
from dosmatgen_core.candidates.runs import to_cif
from dosmatgen_core.labels.labeller import FAST_RECIPE, label_isolated
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.paths import DB_URL, GUIDE_PATH, MODEL_PATH, ROOT
from dosmatgen_core.sampling import cores, modes
from dosmatgen_core.sampling import sampler as sampling
from dosmatgen_core.settings import PRESET_ID, SHIPPED
from dosmatgen_core.structures import to_structure
from studio.shared import slowdown

RESULTS = ROOT / "benchmarks" / "results" / "load.json"
SPIN = "while True: pass"
# a small calculable cell (NaCl, 2 atoms; about 10-20 s of GPAW on one quiet core)
GPAW_CELL = "mp-22862"


def _hogs(k: int, nice: int = 0) -> list[subprocess.Popen]:
    """k spinning processes at this nice value (a labeller runs at nice 15 beside the app)."""
    return [subprocess.Popen([sys.executable, "-c", SPIN], preexec_fn=(lambda: os.nice(nice)) if nice else None)
            for _ in range(k)]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def sampling_work(n: int, steps: int, adaptive: bool = True):
    """The app's steered sampling of n 4-atom candidates (its particles and strength), as a
    callable: with adaptive, one torch thread per free core as the app samples (cores.py), else
    torch's default threads."""
    loaded, guide = load_model(MODEL_PATH), load_guide(GUIDE_PATH)
    ref = open_db(DB_URL).get(PRESET_ID)
    target = ref.site_dos[ref.symbols.index("Ni")]
    specs = [modes.masked(4, {0: target})[0] for _ in range(n)]

    def draw():
        sampling.sample(loaded, specs, steps=steps, guidance=SHIPPED.guidance, seed=0, guide=guide,
                        particles=SHIPPED.particles, steer=SHIPPED.steer)

    def work():
        if not adaptive:
            return draw()
        with cores.sampling_threads("cpu") as threads:
            draw()
        return threads
    return work


def gpaw_work(cell_id: str = GPAW_CELL):
    """One labeller-recipe GPAW calculation of a small labelled cell, in its own single-threaded
    process (label_isolated), as a callable."""
    ref = open_db(DB_URL).get(cell_id)
    task = {"material_id": cell_id, "cif": to_cif(to_structure(ref.atoms))}

    def work():
        out = label_isolated(task, FAST_RECIPE, timeout=1800)
        if "failed" in out:
            raise RuntimeError(out["failed"])
    return work


def timed(work, k: int, nice: int = 0) -> dict:
    procs = _hogs(k, nice)
    try:
        time.sleep(2.0)                      # let the spinners get scheduled
        load0 = os.getloadavg()[0]
        competing = cores.competing_load()       # what the page now scales by: the spinners by their weight
        t = time.perf_counter()
        threads = work()
        out = {"extra_busy": k, "seconds": round(time.perf_counter() - t, 2), "load_average_before": round(load0, 2),
               "competing_load_before": round(competing, 3)}
        return {**out, "threads": threads} if threads else out
    finally:
        _stop(procs)


def run(n: int, steps: int, max_extra: int | None = None, hog_nice: int = 0, log=print) -> dict:
    cpus = os.cpu_count() or 1
    load0 = os.getloadavg()[0]
    own = cores.weight(os.getpriority(os.PRIO_PROCESS, 0))
    ks = list(range((cpus + 1 if max_extra is None else max_extra) + 1))
    stages = {"sampling_fixed_threads": (sampling_work(n, steps, adaptive=False), int(torch.get_num_threads())),
              "sampling": (sampling_work(n, steps), None),      # the app's: one thread per free core
              "gpaw": (gpaw_work(), 1)}
    out = {}
    for name, (work, threads) in stages.items():
        work()                               # warm: imports, caches, the first GPAW setup files
        rows = []
        for k in ks:
            rows.append(timed(work, k, hog_nice))
            # both sampling stages against the quiet two-thread sampling the estimate's rate is
            base = (out["sampling_fixed_threads"]["runs"][0] if name == "sampling" else rows[0])["seconds"]
            rows[-1]["measured_slowdown"] = round(rows[-1]["seconds"] / base, 2)
            if threads:                      # fair sharing's prediction, for a fixed thread count, the
                # spinners counted by their CFS weight against this process's
                rows[-1]["predicted_slowdown"] = round(slowdown(threads, k * cores.weight(hog_nice) / own, cpus), 2)
            log(f"{name}: {k} busy beside it: {rows[-1]['seconds']} s (x{rows[-1]['measured_slowdown']}"
                + (f", predicted x{rows[-1]['predicted_slowdown']}" if threads else "") + ")")
        out[name] = {"threads": threads or "one per free core", "runs": rows}
    return {"command": " ".join(["python -m benchmarks.load", *sys.argv[1:]]), "commit": commit(),
            "machine": machine(), "load_average_at_start": round(load0, 2),
            "hog_nice": hog_nice,
            "note": "seconds of the same work beside k spinning processes at nice hog_nice; slowdown = seconds / the "
                    "k = 0 seconds; predicted = studio.slowdown(threads, k_w, cpus) = max(1, (k_w + threads) / cpus) "
                    "over the same at k = 0, where k_w is k weighted by the spinners' CFS weight against this "
                    "process's (k itself at the same nice)",
            "sampling_work": {"candidates": n, "atoms": 4, "steps": steps, "particles": SHIPPED.particles},
            "gpaw_work": {"material_id": GPAW_CELL, "recipe": FAST_RECIPE.record()["variant"]["name"]},
            "stages": out}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__.splitlines()[0])
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--steps", type=int, default=SHIPPED.steps)
    p.add_argument("--max-extra", type=int, default=None, help="most busy processes beside the work (default cpus + 1)")
    p.add_argument("--hog-nice", type=int, default=0,
                   help="the busy processes' nice value (15: as the labeller runs); record load-niceN.json")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    args.out = args.out or (RESULTS if not args.hog_nice else RESULTS.with_name(f"load-nice{args.hog_nice}.json"))
    rec = run(args.candidates, args.steps, args.max_extra, args.hog_nice, log=lambda m: print(m, flush=True))
    args.out.write_text(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
