"""One generation run, from a validated request to a stored, scored result.

request → task specs → sampler (conditional candidates + an unconditional baseline of the same
sizes) → evaluation (validity, predicted DOS match, symmetry, uniqueness, novelty) → ranking →
RunStore. Used by the app, the CLI and the benchmarks alike.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from dosmatgen_core.scoring import evaluate
from dosmatgen_core.sampling import sampler as sampling
from dosmatgen_core.sampling import tasks
from dosmatgen_core.candidates.runs import RunStore, to_cif
from dosmatgen_core.structures import Crystal

REDRAWS = 2      # a collapsed cell is drawn again (twice at most) rather than shown as a candidate
MAX_PARTICLES = 16


@dataclass
class Request:
    mode: str                               # masked | template | fixed_type | unconditional
    n_atoms: int = 4
    targets: list = field(default_factory=list)        # target DOS curves (400 values each)
    cond_sites: list = field(default_factory=list)     # site index → targets[k] for the k-th site
    fixed: dict = field(default_factory=dict)          # site → element (fixed_type / masked)
    template_id: str | None = None
    template: dict | None = None                        # {"numbers", "frac", "lattice"}
    strength: float = 0.5
    pinned: list = field(default_factory=list)
    n_candidates: int = 8
    guidance: float = 1.0
    steps: int = 250
    particles: int = 1                                  # DOS steering: trajectories per candidate (1 = off)
    steer: float = 10.0                                 # ... and its strength (sampling._sample)
    seed: int = 0
    device: str = "auto"
    baseline: bool = True
    stability: bool = False                             # CHGNet relaxation + ML hull per candidate
    title: str = ""

    def specs(self) -> list[sampling.SampleSpec]:
        if not 1 <= int(self.particles) <= MAX_PARTICLES:
            raise ValueError(f"DOS steering takes 1 to {MAX_PARTICLES} particles per candidate, not {self.particles}")
        if self.particles > 1 and self.mode == "unconditional":
            raise ValueError("DOS steering needs a conditioned atom: unconditional runs cannot be steered")
        if len(self.cond_sites) != len(self.targets):
            raise ValueError("each conditioned site needs one target curve")
        targets = {int(i): np.asarray(self.targets[k]) for k, i in enumerate(self.cond_sites)}
        fixed = {int(k): v for k, v in (self.fixed or {}).items()}
        if self.mode == "masked":
            return tasks.masked(self.n_atoms, targets, self.n_candidates, fixed)
        if self.mode == "fixed_type":
            return tasks.fixed_type(self.n_atoms, targets, fixed, self.n_candidates)
        if self.mode == "template":
            if not self.template:
                raise ValueError("template mode needs a template structure")
            c = Crystal(np.asarray(self.template["numbers"]), np.asarray(self.template["frac"]),
                        np.asarray(self.template["lattice"]))
            return tasks.template(c, self.strength, targets, self.pinned, self.n_candidates)
        if self.mode == "unconditional":
            return tasks.unconditional(self.n_atoms, self.n_candidates)
        raise ValueError(f"unknown mode '{self.mode}' (masked, template, fixed_type, unconditional)")


def _candidate_record(i, g, spec, ev, targets_map) -> dict:
    s = g.crystal.to_structure()
    rec = {k: v for k, v in ev.items() if k != "seconds_per_check"}
    rec.update({"index": i, "cif": to_cif(s), "formula": s.composition.reduced_formula,
                "n_atoms": len(s), "site_to_target": {int(site): k for k, site in enumerate(targets_map)
                                                      if spec.cond_mask[site]},
                "fixed_sites": {int(j): int(z) for j, z in enumerate(spec.fixed_z) if z > 0},
                "pinned_sites": [int(j) for j in np.flatnonzero(spec.pinned)] if spec.pinned is not None else []})
    return rec


def run_generation(req: Request, loaded, predictor=None, *, guide=None, store: RunStore | None = None,
                   db_url: str | None = None, progress: Callable[[float, float, str], None] | None = None,
                   cancel: Callable[[], bool] | None = None, check_novelty: bool = True, hull=None) -> dict:
    """Validate, sample, evaluate, rank and (if a store is given) save. Raises on bad input or
    cancel before anything is stored. guide: the DOS guide that steering (req.particles > 1) needs."""
    specs = req.specs()
    if req.particles > 1 and guide is None:
        raise ValueError("DOS steering needs the DOS guide (assets/guide.pt), which is not loaded")
    t0 = time.perf_counter()
    base_specs = []
    if req.baseline and req.mode != "unconditional":
        base_specs = [tasks.unconditional(s.n_atoms)[0] for s in specs]
    all_specs = specs + base_specs

    def prog(f, eta, msg):
        if progress:
            progress(0.9 * f, eta, msg)

    kw = dict(steps=req.steps, guidance=req.guidance, device=req.device, cancel=cancel, redraws=REDRAWS)
    if req.particles > 1:
        # steered candidates and the plain baseline apart: the baseline is not steered, so its
        # particles would be wasted (K times the work); the baseline takes the next seed
        gen = sampling.sample(loaded, specs, seed=req.seed, progress=prog, guide=guide, particles=req.particles, steer=req.steer, **kw)
        if base_specs:
            gen += sampling.sample(loaded, base_specs, seed=req.seed + 1, **kw)
    else:
        gen = sampling.sample(loaded, all_specs, seed=req.seed, progress=prog, **kw)
    t_sample = time.perf_counter() - t0
    if progress:
        progress(0.9, 0.0, "scoring candidates")
    targets = {int(i): np.asarray(req.targets[k]) for k, i in enumerate(req.cond_sites)}
    structs = [g.crystal.to_structure() for g in gen]
    cand_targets = [{i: t for i, t in targets.items()} for _ in specs] + [dict(targets) for _ in base_specs]
    evs = evaluate.evaluate_candidates(structs, cand_targets, predictor, db_url=db_url, check_novelty=check_novelty)
    cands = [_candidate_record(i, gen[i], specs[i], evs[i], req.cond_sites) for i in range(len(specs))]
    base = [_candidate_record(i, gen[len(specs) + i], base_specs[i], evs[len(specs) + i], req.cond_sites)
            for i in range(len(base_specs))]
    for b in base:   # baseline atoms were not conditioned; they are scored on the same sites
        b["site_to_target"] = {int(i): k for k, i in enumerate(req.cond_sites) if i < b["n_atoms"]}
        b["baseline"] = True
    if req.stability and hull is not None:
        from dosmatgen_core.scoring.stability import assess
        t_st = time.perf_counter()
        for k, c in enumerate(cands):
            if cancel is not None and cancel():
                from dosmatgen_core.sampling.sampler import Cancelled
                raise Cancelled("generation cancelled")
            if progress:
                progress(0.9 + 0.1 * k / len(cands), 0.0, f"CHGNet relaxation {k + 1}/{len(cands)}")
            if c["structurally_valid"]:
                c.update(assess(structs[k], hull))
            else:
                c.update({"e_above_hull": None, "hull_note": "not relaxed: geometry invalid", "stable_0.1": None})
        t_stab = (time.perf_counter() - t_st) / max(len(cands), 1)
    else:
        t_stab = None
    # rank: valid first, then by predicted DOS MAE of the conditioned sites
    order = sorted(range(len(cands)), key=lambda i: (not cands[i]["structurally_valid"],
                                                     np.nan_to_num(cands[i].get("dos_mae", np.inf), nan=np.inf)))
    for r, i in enumerate(order):
        cands[i]["rank"] = r + 1
    cands = [cands[i] for i in order]
    maes = [c["dos_mae"] for c in cands if np.isfinite(c.get("dos_mae", np.nan))]
    bmaes = [c["dos_mae"] for c in base if np.isfinite(c.get("dos_mae", np.nan))]
    settings = asdict(req)
    settings.update({"device": sampling._device(req.device), "checkpoint_sha256": loaded.sha256,
                     "predictor_sha256": (predictor.card.get("sha256") if predictor else None),
                     "checkpoint_card": {k: loaded.card.get(k) for k in ("epoch", "val_loss", "date", "n_labelled_structures")}})
    run = {"created": time.time(), "title": req.title or f"{req.mode}, N={req.n_atoms}",
           "status": "done", "settings": settings, "candidates": cands, "baseline": base,
           "summary": {"n": len(cands), "valid": int(sum(c["valid"] for c in cands)),
                       "structurally_valid": int(sum(c["structurally_valid"] for c in cands)),
                       "mean_dos_mae": float(np.mean(maes)) if maes else None,
                       "baseline_mean_dos_mae": float(np.mean(bmaes)) if bmaes else None,
                       "seconds_sampling": round(t_sample, 2),
                       "seconds_per_check": dict(evs[0]["seconds_per_check"] if evs else {}, stability=t_stab),
                       "stable_0.1": int(sum(bool(c.get("stable_0.1")) for c in cands)) if req.stability else None,
                       "seconds_total": round(time.perf_counter() - t0, 2)}}
    if store is not None:
        store.save(run)
    if progress:
        progress(1.0, 0.0, "done")
    return run
