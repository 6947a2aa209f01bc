"""`python -m benchmarks.startup`: what a process's first Generate costs beyond the estimate.

The app's estimate scales measured sampling and scoring rates (generate-timing, evaluate-heldout),
which were taken in a warm process. The first run of a fresh process also builds tables that
later runs reuse: the known structures by formula for the novelty check (18k MP structures and
the reference db) and, for the relaxed DFT check, the relaxation potential. This bench starts a
fresh process the way the app does (model, predictor, guide and reference db loaded first, as
`studio.state.resources` does before any run), then runs the app's default request twice and
times the relaxation potential's first load after them. Before the runs it parses the MP tables
into an empty cache folder, as a first run does once per install (the parsed tables are then kept
on disk). The record's `cold_s` is what the page adds for each part not loaded yet
(`pipeline.cold_parts`).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine
from benchmarks.truth import commit, truth_sites
from dosmatgen_core.candidates import pipeline
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.paths import CACHE_DIR, DB_URL, GUIDE_PATH, MODEL_PATH, MP_CSVS, PREDICTOR_PATH, ROOT
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.training.dataset import load_unlabelled, mp_cache_path

RESULTS = ROOT / "benchmarks" / "results" / "startup.json"


def run(log=print) -> dict:
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    loaded, predictor = load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH)
    guide, db = load_guide(GUIDE_PATH), open_db(DB_URL)
    resources_s = time.perf_counter() - t
    log(f"resources (as the app loads them before a run): {resources_s:.1f} s")
    assert {"novelty tables", "relaxation potential"} <= set(pipeline.cold_parts(relaxed=True)), \
        "a part was loaded before the run"
    # the MP tables parsed from their files into an empty folder; the runs then read the kept copy
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        load_unlabelled(MP_CSVS, cache_dir=tmp)
        parse_s = time.perf_counter() - t
        kept = mp_cache_path(MP_CSVS, CACHE_DIR)
        if not kept.exists():
            kept.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(mp_cache_path(MP_CSVS, tmp), kept)
    log(f"MP structures parsed: {parse_s:.1f} s")
    site = next(s for s in truth_sites(db, 30, 5) if s["n_atoms"] == SHIPPED.n_atoms)
    req_kw = dict(mode=SHIPPED.mode, n_atoms=site["n_atoms"], targets=[site["target"].tolist()],
                  seed_exclude=[site["material_id"]])
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        for k in range(2):
            t = time.perf_counter()
            pipeline.run_generation(pipeline.Request(**req_kw, title=f"startup {k}"), loaded, predictor, guide=guide,
                                    store=store, db_url=DB_URL)
            runs.append(time.perf_counter() - t)
            log(f"run {k + 1}: {runs[-1]:.1f} s")
    # the potential is loaded by the first relaxed DFT check, not by a run: timed here, in the
    # same process, where the runs have already paid for torch and the imports
    t = time.perf_counter()
    pipeline.warm_up("relaxation potential")
    potential_s = time.perf_counter() - t
    log(f"relaxation potential: {potential_s:.1f} s")
    return {"command": " ".join(["python -m benchmarks.startup", *sys.argv[1:]]), "commit": commit(),
            "machine": machine(), "load_average_at_start": round(load0, 2),
            "note": "seconds; cold_s[MP structures parsed] = the MP tables parsed from their files (once per "
                    "install: the parsed tables are kept on disk); cold_s[novelty tables] = the first default run minus the second, in one process whose "
                    "model, predictor, guide and reference db were loaded first (as the app's): the novelty "
                    "tables, mostly; potential_s = the relaxation potential's first load in that process",
            "site": f"{site['material_id']}#{site['site']}", "resources_s": round(resources_s, 1),
            "first_run_s": round(runs[0], 1), "second_run_s": round(runs[1], 1),
            "cold_s": {"MP structures parsed": round(parse_s, 1),
                       "novelty tables": round(max(runs[0] - runs[1], 0.0), 1),
                       "relaxation potential": round(potential_s, 1)}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    rec = run(log=lambda m: print(m, flush=True))
    args.out.write_text(json.dumps(rec, indent=1))
    print(json.dumps({k: rec[k] for k in ("first_run_s", "second_run_s", "cold_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
