"""`dosmatgen bench label|predictors|val-loss` and shared helpers: measured numbers, written as JSON.

The generator's benches (generate, evaluate, models, guidance, dft) live in bench_generation."""
from __future__ import annotations

import fcntl
import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dosmatgen_core.paths import CACHE_DIR



def append_jsonl(path: Path, rec: dict) -> None:
    """One record added to a resumable cache; the lock keeps two benches' lines whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(rec) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    """A cache's records; none when it is not there yet."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue      # a line cut by a kill
    return out


def machine() -> dict:
    import torch
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def bench_label(seed_lines: list[dict], workers: int = 2, out_dir: str | Path = "runs/bench-label") -> dict:
    """Label the same seed structures with the seed recipe and the fast recipe, through Dask.

    Throughput = structures per minute of wall time with `workers` processes; accuracy = the fast
    recipe's site DOS against the seed recipe's on the same structures.
    """
    import shutil
    from dosmatgen_core.labels.labeller import FAST_RECIPE, SEED_RECIPE, run_labelling
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    tasks = [{"material_id": d["material_id"], "cif": d["cif"]} for d in seed_lines]
    res = {"machine": machine(), "workers": workers, "structures": [d["material_id"] for d in seed_lines]}
    lines = {}
    for name, recipe in (("seed", SEED_RECIPE), ("fast", FAST_RECIPE)):
        d = out_dir / name
        st = run_labelling(tasks, d, recipe=recipe, workers=workers, shard_size=10**6)
        got = {x["material_id"]: x for x in (json.loads(l) for l in (d / "labels.pending.jsonl").read_text().splitlines())}
        lines[name] = got
        res[name] = {"recipe": recipe.record(), "seconds": round(st.seconds, 1),
                     "structures_per_minute": round(60 * len(tasks) / st.seconds, 3),
                     "failure_share": st.failed / max(len(tasks), 1),
                     "mean_seconds_per_structure": round(float(np.mean([x.get("seconds", np.nan) for x in got.values()])), 2)}
    ref = {d["material_id"]: d for d in seed_lines}
    maes, maxes, efs, seed_maes = [], [], [], []
    for mid in ref:
        a, b = lines["seed"].get(mid), lines["fast"].get(mid)
        if not a or not b or "failed" in a or "failed" in b:
            continue
        A, Bf = np.array(a["site_dos"]), np.array(b["site_dos"])
        maes.append(float(np.abs(A - Bf).mean()))
        maxes.append(float(np.abs(A - Bf).max()))
        efs.append(abs(a["e_fermi_eV"] - b["e_fermi_eV"]))
        seed_maes.append(float(np.abs(A - np.array(ref[mid]["site_dos"])).mean()))
    res["fast_vs_seed"] = {"mae_mean": float(np.mean(maes)) if maes else None,
                           "mae_max": float(np.max(maes)) if maes else None,
                           "max_abs": float(np.max(maxes)) if maxes else None,
                           "e_fermi_abs_max": float(np.max(efs)) if efs else None, "per_structure_mae": maes}
    res["seed_recipe_vs_seed_labels_mae"] = float(np.mean(seed_maes)) if seed_maes else None
    res["speedup"] = round(res["fast"]["structures_per_minute"] / res["seed"]["structures_per_minute"], 3)
    res["queue"] = queue_effect()
    res["goal"] = {"speedup": 3.0, "mae": 0.02,
                   "met": bool(res["speedup"] >= 3.0 and maes and np.max(maes) <= 0.02)}
    return res


def queue_effect(label_dir: str | Path | None = None) -> dict:
    """Mean DFT seconds per structure that the cost-ordered queue picked, against the seed set's.

    Per structure the recipe costs the same; the queue gets more labels per hour by taking the
    structures predicted to be cheap first (see labelling.predicted_cost).
    """
    from dosmatgen_core.paths import LABEL_DIR
    from dosmatgen_core.labels.labeller import ShardWriter, iter_label_lines
    d = Path(label_dir or LABEL_DIR)
    seed = [x["seconds"] for _, x in iter_label_lines([d / "seed-000.jsonl.gz"]) if "failed" not in x]
    ours = [x for p in sorted(d.glob("labels-*.jsonl.gz")) for _, x in iter_label_lines([p])]
    ours += list(ShardWriter(d)._pending_lines())
    ok = [x["seconds"] for x in ours if "failed" not in x]
    return {"seed_mean_seconds": float(np.mean(seed)) if seed else None,
            "seed_median_seconds": float(np.median(seed)) if seed else None,
            "queue_structures": len(ours), "queue_failed": len(ours) - len(ok),
            "queue_mean_seconds": float(np.mean(ok)) if ok else None,
            "queue_median_seconds": float(np.median(ok)) if ok else None,
            "queue_mean_atoms": float(np.mean([len(x["site_dos"]) for x in ours if "failed" not in x])) if ok else None,
            "throughput_gain_vs_seed_mean": (float(np.mean(seed)) / float(np.mean(ok))) if ok and seed else None}


def write(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def semi_supervised_gain(state_a: str | Path, state_b: str | Path, entries, names=("all structures", "labelled only"),
                         n_draws: int = 8) -> dict:
    """Held-out loss of two training states (EMA weights) on labelled crystals neither has seen.

    Same noise draws for both (fixed seeds), conditional branch on (every site conditioned),
    so the difference is the data each run was trained on.
    """
    import torch

    from dosmatgen_core.training import dataset as datamod
    from dosmatgen_core.model.diffusion import Schedules, training_loss
    from dosmatgen_core.training.denoiser import load_run_state
    sch = Schedules.make()
    out = {"n_crystals": len(entries), "n_sites": int(sum(len(e.z) for e in entries))}
    for name, path in zip(names, (state_a, state_b)):
        m, mean, std, st = load_run_state(path)
        b = datamod.collate(entries, mean, std)
        parts = {"loss": [], "lattice": [], "coord": [], "type": []}
        with torch.no_grad():
            for k in range(n_draws):
                r = training_loss(m, b, sch, p_uncond=0.0, p_atom=1.0, gen=torch.Generator().manual_seed(k))
                for key in parts:
                    parts[key].append(float(r[key]))
        out[name] = {"steps": int(st["step"]), **{k: float(np.mean(v)) for k, v in parts.items()}}
    a, b_ = out[names[0]]["loss"], out[names[1]]["loss"]
    out["relative_gain"] = (b_ - a) / b_
    return out


def bench_predictors(run_dirs, pack: str = "", label_dirs=(), compare=()) -> dict:
    """Held-out error of predictor runs, one by one and as ensembles of the runs that differ only
    in their seed (run names NAME-SEED), next to already shipped predictor files (`compare`)."""
    import re

    import torch

    from dosmatgen_core.training import dataset as datamod
    from dosmatgen_core.scoring.predictor import load_predictor, model_from_blob
    from dosmatgen_core.training.predictor import heldout_metrics, labelled_entries
    val = [e for e in labelled_entries(label_dirs, pack)[0] if datamod.is_validation(e.material_id, datamod.PREDICTOR_HOLDOUT)]
    if not val:
        raise ValueError("no held-out labelled structures (the predictor's 15 % split) to score on")
    brief = lambda m: {"mae": m["all"]["mae"], "cosine": m["all"]["cosine"], "d_block_mae": m.get("d-block", {}).get("mae")}
    res = {"n_heldout_structures": len(val), "n_heldout_sites": sum(len(e.z) for e in val),
           "runs": {}, "ensembles": {}, "compare": {}}
    groups: dict = {}
    for d in map(Path, run_dirs):
        st = torch.load(d / "last.pt", map_location="cpu", weights_only=True)
        res["runs"][d.name] = {"config": st["config"], "epoch": int(st["epoch"]),
                               **brief(heldout_metrics(model_from_blob({"config": st["config"], "state_dict": st["ema"]}), val))}
        groups.setdefault(re.sub(r"-\d+$", "", d.name), []).append(st)
    for name, states in groups.items():
        if len(states) > 1:
            model = model_from_blob({"config": states[0]["config"], "members": [s["ema"] for s in states]})
            res["ensembles"][name] = {"members": len(states), **brief(heldout_metrics(model, val))}
    for path in compare:
        res["compare"][str(path)] = brief(heldout_metrics(load_predictor(path, trust=True).model, val))
    return res


def bench_validation_loss(paths, pack: str = "", label_dirs=(), csvs=()) -> dict:
    """The training loss (fixed noise draw) of shipped checkpoints on the generator's validation
    crystals, all of them and the labelled ones with their DOS as condition: the same numbers the
    training log reports, for models from different runs on one footing."""
    from dosmatgen_core.training import dataset as datamod
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.model.diffusion import Schedules
    from dosmatgen_core.training.denoiser import validation_loss
    if pack:
        lab, unl, meta = datamod.load_pack(pack)
        shards = meta.get("label_shards", [])
    else:
        lab = datamod.load_labelled(label_dirs)
        unl = datamod.merge(lab, datamod.load_unlabelled(csvs, cache_dir=CACHE_DIR))[len(lab):]
        shards = datamod.label_shard_names(label_dirs)
    val = [e for e in lab + unl if datamod.is_validation(e.material_id)]
    val_lab = [e for e in val if e.site_dos is not None]
    sch = Schedules.make()
    res = {"machine": machine(), "n_validation": len(val), "n_validation_labelled": len(val_lab),
           "label_shards": shards, "models": {}}
    for path in paths:
        m = load_model(path, trust=True)   # the researcher's own checkpoints
        res["models"][str(path)] = {
            "epoch": m.card.get("epoch"), "steps": m.card.get("steps"), "sha256": m.sha256,
            "train": m.card.get("train"),
            "val_loss": validation_loss(m.model, val, m.dos_mean, m.dos_std, sch, "cpu"),
            "val_labelled_loss": validation_loss(m.model, val_lab, m.dos_mean, m.dos_std, sch, "cpu")}
    return res
