"""`python -m benchmarks WHAT`: the measured numbers, written as JSON records under benchmarks/results/.

The benchmarks sit beside the product: they import `dosmatgen_core`, never the other way round.
Each record says what produced it (command, commit, machine; see common.write).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from benchmarks import common as bench
from benchmarks import generation as bench_generation
from dosmatgen_core.paths import LABEL_DIR, MODEL_PATH, MP_CSVS

RESULTS = Path(__file__).resolve().parent / "results"


def _bench(args) -> int:
    if args.threads:
        # torch's spin-waiting threads on a loaded 2-core box: one thread can be much faster
        import torch
        torch.set_num_threads(args.threads)
    # each bench has its own site count default (dft 4, tuning 24): pass --sites only when given
    sites = {} if args.sites is None else {"n_sites": args.sites}
    # generate and dft steer with one setting; guidance sweeps the comma-separated lists
    steering = {"particles": int(args.particles.split(",")[0]), "steer": float(args.steer.split(",")[0])}
    if args.what == "label":
        from dosmatgen_core.labels.labeller import iter_label_lines
        lines = [d for _, d in iter_label_lines([LABEL_DIR / "seed-000.jsonl.gz"]) if "failed" not in d]
        # the cheapest seed entries by their recorded time: a bench that fits in minutes
        lines = sorted(lines, key=lambda d: d["seconds"])[args.skip:args.skip + args.n]
        res = bench.bench_label(lines, workers=args.workers)
    elif args.what == "generate":
        res = bench_generation.bench_generate(n=args.n, steps=args.steps, quick=args.quick, guidance=args.guidance,
                                   lattice_guidance=args.lattice_guidance, timing_only=args.timing_only,
                                   per_site=args.per_site, steps_only=args.steps_only, **steering)
    elif args.what == "predictors":
        res = bench.bench_predictors(args.run_dir or [], pack=args.pack or "", label_dirs=[str(LABEL_DIR)],
                                     compare=args.compare or [])
    elif args.what == "val-loss":
        res = bench.bench_validation_loss(args.model or [str(MODEL_PATH)], pack=args.pack or "",
                                          label_dirs=[str(LABEL_DIR)], csvs=[str(c) for c in MP_CSVS])
    elif args.what == "models":
        res = bench_generation.bench_models(args.model or [str(MODEL_PATH)], n=args.n, steps=args.steps,
                                 guidance=args.guidance, on=args.on, **sites,
                                 baseline=bench_generation.baseline_sites(args.baseline) if args.baseline else None)
    elif args.what == "guidance":
        lw = [None if x == "w" else float(x) for x in args.lattice_weights.split(",")]
        res = bench_generation.bench_guidance(weights=[float(x) for x in args.weights.split(",")], lattice_weights=lw,
                                   m=args.n, steps=args.steps,
                                   type_temperatures=[float(x) for x in args.type_temperatures.split(",")],
                                   model=(args.model or [None])[0], guide=args.guide,
                                   particles=[int(x) for x in args.particles.split(",")],
                                   steers=[float(x) for x in args.steer.split(",")],
                                   on=args.on if args.on in ("tuning", "all") else "tuning",
                                   log=lambda m: print(m, flush=True), **sites)
    elif args.what == "dft":
        res = bench_generation.bench_dft(m=args.n, steps=args.steps, guidance=args.guidance,
                              max_atoms=args.max_atoms, workers=args.workers, model=(args.model or [None])[0],
                              kinds=args.kinds.split(","), log=lambda m: print(m, flush=True),
                              **steering, **sites)
    else:
        res = bench_generation.bench_evaluate(n=args.n, steps=args.steps, ref=args.ref, site=args.site, n_atoms=args.n_atoms)
    out = Path(args.out or RESULTS / f"{args.what}.json")
    bench.write(res, out)
    print(json.dumps(res, indent=2)[:4000])
    print(f"written to {out}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("what", choices=["label", "generate", "evaluate", "models", "dft", "guidance", "predictors", "val-loss"])
    p.add_argument("--n", type=int, default=6, help="structures (label), candidates per case (generate) or per site and kind (dft)")
    p.add_argument("--skip", type=int, default=20, help="label: skip this many of the cheapest seed entries")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--steps-only", action="store_true",
                    help="generate: only the wall time and the 100/--steps/1000-step comparison")
    p.add_argument("--quick", action="store_true", help="generate: skip the 1000-step comparison")
    p.add_argument("--timing-only", action="store_true", help="generate: only the wall time of n candidates")
    p.add_argument("--guidance", type=float, default=1.0, help="generate/types: guidance weight w")
    p.add_argument("--lattice-guidance", type=float, default=None, help="generate: guidance weight of the lattice (default w)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--ref", default=None, help="evaluate: reference material of the target (default the Au3Ni preset)")
    p.add_argument("--site", type=int, default=None, help="evaluate: its site (default its Ni site)")
    p.add_argument("--n-atoms", type=int, default=4, help="evaluate: atoms per candidate")
    p.add_argument("--model", action="append", help="models: a checkpoint to score (repeat; default assets/denoiser.pt)")
    p.add_argument("--run-dir", action="append", help="predictors: a predictor run (NAME-SEED runs also form ensembles)")
    p.add_argument("--compare", action="append", help="predictors: a shipped predictor file to score alongside")
    p.add_argument("--pack", default=None, help="predictors: labels from a pack (dosmatgen pack)")
    p.add_argument("--on", choices=["bench", "tuning", "all"], default="bench",
                    help="models: score the bench's 16 held-out sites, the disjoint tuning sites, or every held-out site")
    p.add_argument("--baseline", default=None,
                    help="models: pair each model site by site with an earlier run of the same seeds "
                         "(FILE: a bench generate JSON or one-model bench models JSON; FILE#MODEL)")
    p.add_argument("--sites", type=int, default=None,
                    help="dft: held-out reference sites (default 4); guidance and models --on tuning: tuning sites (default 24)")
    p.add_argument("--weights", default="0,1,2,4", help="guidance: guidance weights w to compare")
    p.add_argument("--type-temperatures", default="1",
                    help="guidance: element-draw temperatures of the conditioned atom, comma-separated")
    p.add_argument("--guide", default=None, help="guidance: the DOS guide (assets/guide.pt) that steers particles")
    p.add_argument("--particles", default="1", help="generate/guidance: DOS-steering particles per structure (1 = no steering); guidance: comma-separated")
    p.add_argument("--steer", default="10", help="generate/guidance: steering strength; guidance: comma-separated")
    p.add_argument("--per-site", type=int, default=None, help="generate: candidates per held-out site (default n/5, at least 4)")
    p.add_argument("--lattice-weights", default="w", help="guidance: lattice weights ('w' = same as w), comma-separated")
    p.add_argument("--kinds", default="conditional,unconditional",
                    help="dft: which candidates to calculate (conditional alone: compare with another model's baseline)")
    p.add_argument("--max-atoms", type=int, default=5, help="dft: largest reference cell taken (DFT cost)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    try:
        return _bench(args)
    except (ValueError, FileNotFoundError) as e:
        # bad input (a baseline file, a model path): one clear line, not a traceback
        print(f"benchmarks: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
