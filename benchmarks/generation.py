"""`dosmatgen bench generate|evaluate|models|guidance|dft`: how well the shipped generator's
conditioned atoms match their target DOS on held-out reference sites, scored by the site-DOS
predictor, and by DFT on a few of them."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from dosmatgen_core import dos as dosmod
from benchmarks.common import machine


def _resources():
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH
    return load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), open_db(DB_URL), DB_URL


def _score(gen, predictor, site: int, *targets) -> tuple[list[list[float]], list[int]]:
    """Predicted-DOS MAE of `site` against each target (one predictor pass), and the element placed there."""
    crystals = [(g.crystal.numbers, g.crystal.frac, g.crystal.lattice) for g in gen]
    preds = predictor.predict(crystals)
    return ([[dosmod.mae(t, p[site]) for p in preds] for t in targets], [int(g.crystal.numbers[site]) for g in gen])


def heldout_sites(db, max_sites: int = 16):
    """(material_id, n_atoms, site, DOS, Z) for one site per element of each validation structure
    (ids the generator never trains on), in id order, at most max_sites."""
    from dosmatgen_core.training import dataset as datamod
    out = []
    for row in sorted(db.db.select(), key=lambda r: r.material_id):
        if not datamod.is_validation(row.material_id) or row.natoms > 20:
            continue
        dos_rows = np.asarray(row.data["site_dos"])
        seen = set()
        for i, z in enumerate(row.numbers):
            if int(z) not in seen:
                seen.add(int(z))
                out.append((row.material_id, row.natoms, i, dos_rows[i], int(z)))
    return out[:max_sites]


def spread_sites(sites, n: int) -> list:
    """n of the held-out sites, each from a different structure where there are enough (the k-th
    structure gives its site k mod its site count, so elements vary too), in id order."""
    by_id: dict = {}
    for s in sites:
        by_id.setdefault(s[0], []).append(s)
    picked = [v[k % len(v)] for k, v in enumerate(by_id.values())]
    taken = {(s[0], s[2]) for s in picked}
    rest = [s for s in sites if (s[0], s[2]) not in taken] if len(picked) < n else []
    return (picked + rest)[:n]


def heldout_scores(loaded, predictor, db, sites, m: int, steps: int, guidance: float, seed: int,
                   sample=None, uncond_cache: dict | None = None, chunk: int = 200,
                   m_uncond: int | None = None) -> dict:
    """Conditional against unconditional sampling on held-out reference sites, m candidates each.

    The conditioned atom (site 0 of an N-atom candidate, N = the reference's atom count) is scored
    by the predictor against the DFT target. The predictor has its own error, so the same score of
    the reference crystal itself (`oracle_mae`) is the floor no generator can beat; it is reported
    with the share of the reachable gain that conditioning takes, (u − c) / (u − oracle).
    `vs_predicted_reference` scores against the predictor's DOS of the reference site instead,
    which cancels the predictor's own error on that site.

    The unconditional baseline: m_uncond (default max(m, 40)) samples per cell size, shared by the
    sites of that size, and **every** atom of each scored against the target. Nothing is
    conditioned and the denoiser is permutation-equivariant, so the atoms are exchangeable: this
    has the mean of scoring atom 0 alone, with N·m_uncond draws instead of m. (Scoring atom 0 of
    m = 10 samples let the baseline, and so the ratio, move by ±5 % between checkpoints whose
    conditional scores were the same.)

    All sites' candidates go through the sampler together (`chunk` crystals a call: the sampler
    works on a flat atom batch, so mixing cell sizes costs nothing), and the predictor scores
    them all in one pass.
    """
    from dosmatgen_core.sampling import sampler as sampling
    from dosmatgen_core.sampling import modes
    sample = sample or sampling.sample
    uncond_cache = {} if uncond_cache is None else uncond_cache
    if not sites:
        raise ValueError("no held-out sites to score")
    refs = [db.get(mid).atoms for mid, *_ in sites]
    ref_pred = [p[i] for p, (_, _, i, _, _) in zip(
        predictor.predict([(a.numbers, a.get_scaled_positions(), np.asarray(a.cell)) for a in refs]), sites)]
    specs = [s for _, nat, _, g, _ in sites for s in modes.masked(nat, {0: g}, m)]
    cs = []
    for k in range(0, len(specs), chunk):
        cs += sample(loaded, specs[k:k + chunk], steps=steps, guidance=guidance, seed=seed + k)
    # unconditional samples depend on neither the site nor w: one set per cell size, reused
    mu = m_uncond or max(m, 40)
    todo = sorted({nat for _, nat, *_ in sites if (nat, mu, steps, seed) not in uncond_cache})
    if todo:
        us = sample(loaded, [s for nat in todo for s in modes.unconditional(nat, mu)], steps=steps, seed=seed + 1)
        for j, nat in enumerate(todo):
            uncond_cache[(nat, mu, steps, seed)] = us[j * mu:(j + 1) * mu]
    # one predictor pass over every candidate (CHGNet's per-call overhead is paid once)
    sizes = sorted({nat for _, nat, *_ in sites})
    u_all = [g for nat in sizes for g in uncond_cache[(nat, mu, steps, seed)]]
    preds = predictor.predict([(g.crystal.numbers, g.crystal.frac, g.crystal.lattice) for g in cs + u_all])
    c_pred = [p[0] for p in preds[:len(cs)]]
    u_pred = {nat: np.concatenate(preds[len(cs) + k * mu:len(cs) + (k + 1) * mu]) for k, nat in enumerate(sizes)}
    per = []
    for j, (mid, nat, i, g, z) in enumerate(sites):
        c_gen, u_gen = cs[j * m:(j + 1) * m], uncond_cache[(nat, mu, steps, seed)]
        c_p, u_p = c_pred[j * m:(j + 1) * m], u_pred[nat]      # u_p: every atom of every sample
        c_mae, c_ref = [dosmod.mae(g, p) for p in c_p], [dosmod.mae(ref_pred[j], p) for p in c_p]
        u_mae, u_ref = [dosmod.mae(g, p) for p in u_p], [dosmod.mae(ref_pred[j], p) for p in u_p]
        c_z, u_z = [int(x.crystal.numbers[0]) for x in c_gen], [int(zz) for x in u_gen for zz in x.crystal.numbers]
        per.append({"material_id": mid, "n_atoms": nat, "site": i, "element_z": z,
                    "conditional_mae": _mean(c_mae), "unconditional_mae": _mean(u_mae),
                    "oracle_mae": dosmod.mae(g, ref_pred[j]),
                    "conditional_mae_vs_predicted_reference": _mean(c_ref),
                    "unconditional_mae_vs_predicted_reference": _mean(u_ref),
                    "unscored_conditional": int(np.isnan(c_mae).sum()),
                    "unscored_unconditional": int(np.isnan(u_mae).sum()) // nat,   # in crystals
                    "share_same_element_conditional": float(np.mean(np.array(c_z) == z)),
                    "share_same_element_unconditional": float(np.mean(np.array(u_z) == z))})
    return {**summarise_sites(per), "candidates_per_site": m, "unconditional_per_size": mu,
            "unconditional_scored": "every atom", "per_site": per}


def _mean(xs) -> float:
    """Mean over the scored candidates (a collapsed cell gets no score: NaN); NaN if none was."""
    xs = np.asarray(xs, float)
    return float(xs[~np.isnan(xs)].mean()) if (~np.isnan(xs)).any() else float("nan")


def summarise_sites(per: list[dict]) -> dict:
    """Means over per-site scores (each site weighs the same) and the ratios built from them;
    candidates the predictor refused (collapsed cells) are counted, not scored."""
    mean = lambda key: _mean([p[key] for p in per])
    c, u, o = mean("conditional_mae"), mean("unconditional_mae"), mean("oracle_mae")
    cr, ur = mean("conditional_mae_vs_predicted_reference"), mean("unconditional_mae_vs_predicted_reference")
    return {"n_sites": len(per), "n_structures": len({p["material_id"] for p in per}),
            "conditional_mae": c, "unconditional_mae": u, "ratio": c / u if u else None, "goal_ratio": 0.5,
            "oracle_mae": o, "oracle_ratio": o / u if u else None,
            "share_of_reachable_gain": (u - c) / (u - o) if u > o else None,
            "vs_predicted_reference": {"conditional_mae": cr, "unconditional_mae": ur, "ratio": cr / ur if ur else None},
            "share_same_element_conditional": mean("share_same_element_conditional"),
            "share_same_element_unconditional": mean("share_same_element_unconditional"),
            "unscored_candidates": {k: int(sum(p.get(f"unscored_{k}", 0) for p in per))
                                    for k in ("conditional", "unconditional")}}


def by_cell_size(per: list[dict]) -> dict:
    """The site summary per reference-cell size: larger cells leave more of the environment to
    the free atoms, so this shows where the conditioning falls short."""
    sizes = sorted({p["n_atoms"] for p in per})
    keys = ("n_sites", "ratio", "oracle_ratio", "share_of_reachable_gain", "share_same_element_conditional")
    return {str(n): {k: v for k, v in summarise_sites([p for p in per if p["n_atoms"] == n]).items() if k in keys}
            for n in sizes}


def paired_change(base: list[dict], new: list[dict]) -> dict:
    """new − base conditional MAE on the sites both scored (matched by structure and site, so two
    runs over the same held-out sites and seeds compare site by site): the mean change with its
    standard error, and on how many sites the new one is closer to the target."""
    ref = {(p["material_id"], p["site"]): p["conditional_mae"] for p in base}
    d = np.array([p["conditional_mae"] - ref[(p["material_id"], p["site"])] for p in new
                  if (p["material_id"], p["site"]) in ref])
    if len(d) == 0:
        raise ValueError("the two runs share no site: were they scored on the same held-out sites?")
    return {"n_sites": int(len(d)), "mean_change": float(d.mean()),
            "standard_error": float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else None,
            "sites_better": int((d < 0).sum()), "sites_worse": int((d > 0).sum())}


def baseline_sites(spec: str) -> list[dict]:
    """Per-site results to pair with: 'FILE' (a `bench generate` JSON: its every-held-out-site
    results; or a `bench models` JSON of one model) or 'FILE#MODEL' (that model of a models JSON)."""
    path, _, key = spec.partition("#")
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"baseline {path}: cannot read it as JSON ({e})") from None
    if "models" in d:
        models = d["models"]
        if not key and len(models) != 1:
            raise ValueError(f"baseline {path} holds {len(models)} models: name one as {path}#MODEL "
                             f"(one of {', '.join(models)})")
        entry = models.get(key) if key else next(iter(models.values()))
        if entry is None:
            raise ValueError(f"baseline {path} has no model {key!r} (it has {', '.join(models)})")
        return entry["per_site"]
    for k in ("all_heldout_sites", "heldout_sites"):
        if k in d and "per_site" in d[k]:
            return d[k]["per_site"]
    raise ValueError(f"baseline {path}: no per-site results in it (a bench generate or bench models JSON?)")


def bootstrap_ratio(per: list[dict], n: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    """Percentile interval of the conditional/unconditional MAE ratio, resampling whole reference
    structures (sites of one crystal are not independent)."""
    ids = sorted({p["material_id"] for p in per})
    by_id = {k: [p for p in per if p["material_id"] == k] for k in ids}
    rng = np.random.default_rng(seed)
    ratios = []
    for _ in range(n):
        rows = [p for k in rng.choice(len(ids), len(ids)) for p in by_id[ids[k]]]
        ratios.append(_mean([p["conditional_mae"] for p in rows]) / _mean([p["unconditional_mae"] for p in rows]))
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return {"level": level, "low": float(lo), "high": float(hi), "resamples": n, "unit": "reference structure",
            "share_at_or_below_goal": float(np.mean(np.array(ratios) <= 0.5))}


def shipped_steering(particles: int, steer: float) -> tuple[dict, dict | None]:
    """(sampler keywords, JSON record) for DOS steering by the shipped guide; ({}, None) at one particle."""
    if particles <= 1:
        return {}, None
    from dosmatgen_core.model.guide import load_guide
    from dosmatgen_core.paths import GUIDE_PATH
    guide = load_guide(GUIDE_PATH)
    return ({"guide": guide, "particles": particles, "steer": steer},
            {"particles": particles, "steer": steer, "guide_sha256": guide.card.get("sha256")})


def steps_comparison(loaded, predictor, target, sample, n: int, steps: int, guidance: float, seed: int) -> dict:
    """The paper case (N = 4, atom 0 on Au3Ni's Ni site) at 100, `steps` and 1000 steps: time,
    DOS match, share of Ni and structural validity, so a reduced step count is chosen on data."""
    from dosmatgen_core.sampling import modes
    from dosmatgen_core.scoring.evaluate import validity
    comp = {}
    for st_ in sorted({100, steps, 1000}):
        t = time.perf_counter()
        cs = sample(loaded, modes.masked(4, {0: target}, n), steps=st_, guidance=guidance, seed=seed)
        sec = time.perf_counter() - t
        (c_mae,), c_z = _score(cs, predictor, 0, target)
        valid = np.mean([validity(g.crystal.to_structure())["structurally_valid"] for g in cs])
        comp[str(st_)] = {"seconds": round(sec, 2), "conditional_mae": _mean(c_mae),
                          "share_ni": float(np.mean(np.array(c_z) == 28)), "structurally_valid": float(valid)}
    return comp


def bench_generate(n: int = 50, steps: int = 250, quick: bool = False, seed: int = 0, guidance: float = 1.0,
                   lattice_guidance: float | None = None, timing_only: bool = False,
                   max_sites: int = 10**6, particles: int = 1, steer: float = 10.0,
                   per_site: int | None = None, steps_only: bool = False) -> dict:
    """Timing, conditional-vs-unconditional DOS match, and the paper's Au3Ni case.

    particles > 1: every conditional draw is DOS-steered (the shipped guide, `steer`); the
    unconditional baseline is never steered. per_site: candidates per held-out site (default
    max(4, n // 5)). steps_only: the timing and the steps comparison alone."""
    from dosmatgen_core.sampling import sampler as sampling
    from dosmatgen_core.sampling import modes
    from dosmatgen_core.settings import PRESET_ID
    import functools
    loaded, predictor, db, _ = _resources()
    steering, steering_record = shipped_steering(particles, steer)
    plain = functools.partial(sampling.sample, lattice_guidance=lattice_guidance)
    sample = functools.partial(plain, **steering)      # a batch with nothing conditioned is not steered
    res = {"machine": machine(), "load_average": os.getloadavg(), "steps": steps, "guidance": guidance,
           "lattice_guidance": guidance if lattice_guidance is None else lattice_guidance,
           "checkpoint": {k: loaded.card.get(k) for k in ("epoch", "val_loss", "n_labelled_structures", "date",
                                                         "sha256", "type_diffusion")},
           "scored_by": "site-DOS predictor (assets/predictor.pt)",
           "steering": steering_record,
           "predictor_heldout_mae": predictor.card.get("heldout", {}).get("all", {}).get("mae")}
    au = db.get(PRESET_ID)
    ni = au.symbols.index("Ni")
    target = au.site_dos[ni]

    # 1. wall time: n masked candidates of 4-7 atoms, one conditioned atom, CFG on
    specs = [modes.masked(4 + k % 4, {0: target})[0] for k in range(n)]
    t = time.perf_counter()
    sample(loaded, specs, steps=steps, guidance=guidance, seed=seed)
    res["wall_seconds_masked_4to7"] = {"candidates": n, "seconds": round(time.perf_counter() - t, 2), "goal": 60}
    if timing_only:
        return res
    if steps_only:
        res["steps_comparison"] = steps_comparison(loaded, predictor, target, sample, n, steps, guidance, seed)
        return res

    # 2. held-out reference sites (never seen by the generator): conditional vs unconditional.
    # One site per element of each validation structure, so the score spreads over chemistries.
    # All of them are scored; `heldout_sites` keeps the first 16 (the sites earlier benches
    # reported), `all_heldout_sites` has every one with a bootstrap interval, and the subset
    # without the tuning sites (those that chose w and the model) is reported on its own.
    sites = heldout_sites(db, max_sites=max_sites)
    if sites:
        sc = heldout_scores(loaded, predictor, db, sites, m=per_site or max(4, n // 5), steps=steps,
                            guidance=guidance, seed=seed, sample=sample)
        per = sc.pop("per_site")
        first = {(s[0], s[2]) for s in sites[:16]}
        tune = {(s[0], s[2]) for s in tuning_sites(db)}
        res["heldout_sites"] = {**summarise_sites([p for p in per if (p["material_id"], p["site"]) in first]),
                                "candidates_per_site": sc["candidates_per_site"],
                                "per_site": [p for p in per if (p["material_id"], p["site"]) in first]}
        untouched = [p for p in per if (p["material_id"], p["site"]) not in tune]
        res["all_heldout_sites"] = {**sc, "ratio_interval": bootstrap_ratio(per), "by_cell_size": by_cell_size(per),
                                    "excluding_tuning_sites": {**summarise_sites(untouched),
                                                               "ratio_interval": bootstrap_ratio(untouched)},
                                    "per_site": per}
    else:
        res["heldout_sites"] = {"n_sites": 0, "note": "no held-out labelled sites in the reference database yet"}

    # 3. the paper's case: atom 0 conditioned on Ni in Au3Ni, N = 4..7
    paper = {}
    for N in (4, 5, 6, 7):
        cs = sample(loaded, modes.masked(N, {0: target}, n), steps=steps, guidance=guidance, seed=seed)
        us = plain(loaded, modes.unconditional(N, n), steps=steps, seed=seed + 1)
        (c_mae,), c_z = _score(cs, predictor, 0, target)
        (u_mae,), u_z = _score(us, predictor, 0, target)
        paper[str(N)] = {"share_ni_conditional": float(np.mean(np.array(c_z) == 28)),
                         "share_ni_unconditional": float(np.mean(np.array(u_z) == 28)),
                         "conditional_mae": _mean(c_mae), "unconditional_mae": _mean(u_mae),
                         "unscored": int(np.isnan(c_mae).sum() + np.isnan(u_mae).sum())}
    res["au3ni_ni_site"] = paper

    # 4. reduced steps against 1000 on the paper case, N = 4
    if not quick:
        res["steps_comparison"] = steps_comparison(loaded, predictor, target, sample, n, steps, guidance, seed)
    return res


def bench_evaluate(n: int = 50, steps: int = 250, seed: int = 0, ref: str | None = None, site: int | None = None,
                   n_atoms: int = 4) -> dict:
    """Predictor held-out error; validity / uniqueness / novelty / hull shares and timing on n
    candidates conditioned on one reference site (default: Ni in the Au3Ni preset)."""
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.settings import PRESET_ID
    loaded, predictor, db, db_url = _resources()
    r = db.get(ref or PRESET_ID)
    if site is None:
        site = r.symbols.index("Ni") if "Ni" in r.symbols else 0
    target = r.site_dos[site]
    from dosmatgen_core.scoring.stability import Hull
    from dosmatgen_core.paths import HULL_PATH
    req = Request(mode="masked", n_atoms=n_atoms, targets=[target.tolist()], cond_sites=[0], n_candidates=n,
                  steps=steps, seed=seed, stability=True, particles=1)   # this bench measures plain sampling
    t = time.perf_counter()
    run = run_generation(req, loaded, predictor, db_url=db_url, hull=Hull(HULL_PATH, db_url))
    c = run["candidates"]
    share = lambda key, xs: float(np.mean([bool(x.get(key)) for x in xs])) if xs else None
    return {"machine": machine(), "target": {"material_id": r.material_id, "site": site, "element": r.symbols[site],
                                             "heldout_from_generator": _is_val(r.material_id), "n_atoms": n_atoms},
            "checkpoint": {k: loaded.card.get(k) for k in ("epoch", "sha256", "type_diffusion")},
            "predictor": predictor.card.get("heldout"),
            "predictor_mean_dos_baseline_mae": predictor.card.get("heldout_mean_dos_baseline_mae"),
            "candidates": n, "steps": steps, "seconds_total": round(time.perf_counter() - t, 1),
            "share_valid": share("valid", c), "share_structurally_valid": share("structurally_valid", c),
            "share_charge_neutral": share("charge_neutral", c), "share_unique": share("unique", c),
            "share_novel": share("novel", c),
            "share_within_0.1_eV_of_hull": share("stable_0.1", c),
            "share_with_hull_energy": float(np.mean([x.get("e_above_hull") is not None for x in c])) if c else None,
            "hull_note": "CHGNet-relaxed (100 FIRE steps max) candidates on a CHGNet hull of known structures",
            "conditional_dos_mae": run["summary"]["mean_dos_mae"],
            "unconditional_dos_mae": run["summary"]["baseline_mean_dos_mae"],
            "seconds_per_candidate_per_check": run["summary"]["seconds_per_check"]}


def _is_val(mid: str) -> bool:
    from dosmatgen_core.training.dataset import is_validation
    return is_validation(mid)


def bench_models(paths, n: int = 50, steps: int = 250, guidance: float = 1.0, seed: int = 0,
                 on: str = "bench", n_sites: int = 24, baseline: list[dict] | None = None) -> dict:
    """Several checkpoints (type diffusions, training recipes), same predictor, same held-out sites
    and seeds: does the conditioned atom take the reference element, and how close is its
    predicted DOS? `on="tuning"` scores the tuning sites, so a model can be chosen without
    looking at the sites `bench generate` reports; `on="all"` every held-out site, with a
    bootstrap interval of each model's ratio. baseline: per-site results of an earlier run with
    the same seeds (e.g. `bench/generate.json`'s); each model then gets its `paired_change`."""
    from dosmatgen_core.model.checkpoint import load_model
    _, predictor, db, _ = _resources()
    if on not in ("bench", "tuning", "all"):
        raise ValueError(f"on must be 'bench', 'tuning' or 'all', not {on!r}")
    sites = {"bench": lambda: heldout_sites(db), "tuning": lambda: tuning_sites(db, n_sites),
             "all": lambda: heldout_sites(db, max_sites=10**6)}[on]()
    res = {"machine": machine(), "steps": steps, "guidance": guidance, "sites": on, "n_sites": len(sites),
           "predictor_heldout_mae": predictor.card.get("heldout", {}).get("all", {}).get("mae"), "models": {}}
    m = max(4, n // 5)
    for path in paths:
        loaded = load_model(path, trust=True)  # a benchmark compares the researcher's own runs
        t = time.perf_counter()
        sc = heldout_scores(loaded, predictor, db, sites, m=m, steps=steps, guidance=guidance, seed=seed)
        res["models"][str(path)] = {    # the path: two runs may both ship a denoiser.pt
            "file": str(path), "type_diffusion": loaded.card.get("type_diffusion"),
            "epoch": loaded.card.get("epoch"), "steps": loaded.card.get("steps"), "sha256": loaded.sha256,
            "train": loaded.card.get("train"),
            "share_conditioned_atom_takes_reference_element": sc["share_same_element_conditional"],
            **{k: sc[k] for k in ("conditional_mae", "unconditional_mae", "ratio", "oracle_mae",
                                  "share_of_reachable_gain", "vs_predicted_reference")},
            "ratio_interval": bootstrap_ratio(sc["per_site"]),
            "seconds": round(time.perf_counter() - t, 1), "per_site": sc["per_site"]}
        if baseline is not None:
            res["models"][str(path)]["paired_change_vs_baseline"] = paired_change(baseline, sc["per_site"])
    return res


def tuning_sites(db, n_sites: int = 24) -> list:
    """Validation sites the generation bench does not score (past its first 16), spread over
    structures: the place to choose sampling settings without looking at the bench's sites."""
    bench_keys = {(s[0], s[2]) for s in heldout_sites(db)}
    rest = [s for s in heldout_sites(db, max_sites=10**6) if (s[0], s[2]) not in bench_keys]
    return spread_sites(rest, n_sites)


def bench_guidance(weights=(0.0, 1.0, 2.0, 4.0), lattice_weights=(None,), n_sites: int = 24, m: int = 4,
                   steps: int = 250, seed: int = 0, type_temperatures=(1.0,), model: str | None = None,
                   guide: str | None = None, particles=(1,), steers=(10.0,), on: str = "tuning", log=print) -> dict:
    """Guidance weight w (and the lattice's, None = w), the element-draw temperature of the
    conditioned atom, and DOS steering (particles per structure, steering strength; see
    sampling._sample) against the DOS match on tuning sites (on="all": every held-out site, to
    confirm a choice)."""
    import functools

    from dosmatgen_core.sampling import sampler as sampling
    from dosmatgen_core.model.checkpoint import load_model
    loaded, predictor, db, _ = _resources()
    if model:
        loaded = load_model(model, trust=True)  # a benchmark compares the researcher's own runs
    g = None
    if guide:
        from dosmatgen_core.model.guide import load_guide
        g = load_guide(guide, trust=True)  # a benchmark compares the researcher's own runs
    elif any(k > 1 for k in particles):
        raise ValueError("steering (particles > 1) needs a guide (--guide assets/guide.pt)")
    if on not in ("tuning", "all"):
        raise ValueError(f"on must be 'tuning' or 'all', not {on!r}")
    sites = tuning_sites(db, n_sites) if on == "tuning" else heldout_sites(db, max_sites=10**6)
    uncond: dict = {}
    res = {"machine": machine(), "steps": steps, "candidates_per_site": m, "on": on,
           "checkpoint": {k: loaded.card.get(k) for k in ("epoch", "sha256", "type_diffusion")},
           "guide": {k: g.card.get(k) for k in ("file", "sha256", "epoch", "val_mse")} if g else None,
           "sites": [{"material_id": s[0], "site": s[2], "element_z": s[4]} for s in sites], "settings": []}
    for tau in type_temperatures:
        for wl in lattice_weights:
            for k, st in [(k, st) for k in particles for st in (steers if k > 1 else steers[:1])]:
                sample = functools.partial(sampling.sample, lattice_guidance=wl, cond_type_temperature=tau,
                                           guide=g, particles=k, steer=st)
                for w in weights:
                    t = time.perf_counter()
                    sc = heldout_scores(loaded, predictor, db, sites, m=m, steps=steps, guidance=w, seed=seed,
                                        sample=sample, uncond_cache=uncond)
                    row = {"guidance": w, "lattice_guidance": w if wl is None else wl, "cond_type_temperature": tau,
                           "particles": k, "steer": st if k > 1 else None,
                           **{k: sc[k] for k in ("conditional_mae", "unconditional_mae", "ratio", "oracle_mae",
                                                 "share_of_reachable_gain", "share_same_element_conditional",
                                                 "unscored_candidates")},
                           "ratio_vs_predicted_reference": sc["vs_predicted_reference"]["ratio"],
                           "ratio_interval": bootstrap_ratio(sc["per_site"]), "seconds": round(time.perf_counter() - t, 1)}
                    log(json.dumps(row))
                    res["settings"].append({**row, "per_site": sc["per_site"]})
    return res


def _first_computable(gen, supported, m: int) -> tuple[list, int]:
    """The first m candidates the labelling recipe can calculate (no lanthanides/actinides, GPAW
    data), and how many were drawn to find them."""
    from ase.data import chemical_symbols
    ok, n = [], 0
    for g in gen:
        if len(ok) == m:
            break
        n += 1
        if {chemical_symbols[int(z)] for z in g.crystal.numbers} <= supported:
            ok.append(g)
    return ok, n


def bench_dft(n_sites: int = 4, m: int = 3, steps: int = 250, guidance: float = 1.0, seed: int = 0,
              max_atoms: int = 5, workers: int = 1, cache: str | Path = "runs/bench-dft/results.jsonl",
              log=print, draws: int = 4, model: str | None = None,
              kinds=("conditional", "unconditional"), particles: int = 1, steer: float = 10.0) -> dict:
    """The DOS match checked with DFT, not the predictor: m conditional and m unconditional
    candidates for each of n_sites held-out reference sites (cells of at most max_atoms atoms, so
    the calculations stay cheap), each run through the labelling recipe in its generated cell.

    Both kinds are drawn until m candidates the recipe can calculate are in hand (at most
    `draws` × m drawn; lanthanide/actinide candidates are counted, not calculated), so the
    unconditional baseline is not thinned by the recipe's element list.

    Reports the DFT site-DOS MAE of the conditioned atom against the target, conditional against
    unconditional, and how far the predictor's score of the same candidates is from DFT's.
    Calculations are cached by the candidate's CIF (with the DFT DOS of its atom 0), so an
    interrupted bench resumes and a crystal shared by several sites (unconditional samples depend
    only on the cell size) is calculated once. `model` checks another checkpoint than the shipped
    one; `kinds` may leave out the unconditional baseline (to compare against another run's).
    particles > 1: the conditional candidates are DOS-steered by the shipped guide.
    """
    import fcntl
    import hashlib
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from dosmatgen_core.sampling import sampler as sampling
    from dosmatgen_core.sampling import modes
    from dosmatgen_core.labels.labeller import SEED_RECIPE, label_isolated, supported_elements
    from dosmatgen_core.model.checkpoint import load_model
    loaded, predictor, db, _ = _resources()
    if model:
        loaded = load_model(model, trust=True)  # a benchmark compares the researcher's own runs
    steering, steering_record = shipped_steering(particles, steer)
    if not kinds or set(kinds) - {"conditional", "unconditional"}:
        raise ValueError(f"kinds must name 'conditional' and/or 'unconditional', not {kinds!r}")
    supported = supported_elements()
    sites = spread_sites([s for s in heldout_sites(db, max_sites=10**6) if s[1] <= max_atoms], n_sites)
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            d = json.loads(line)
            if "cif_key" in d:       # older rows (keyed by site, no DOS) are kept as history only
                done[d["cif_key"]] = d
    jobs, drawn = [], {"conditional": [0, 0], "unconditional": [0, 0]}   # [drawn, not calculable]
    for mid, nat, i, g, z in sites:
        for kind, sd in (("conditional", seed), ("unconditional", seed + 1)):
            if kind not in kinds:
                continue
            specs = modes.masked(nat, {0: g}, draws * m) if kind == "conditional" else modes.unconditional(nat, draws * m)
            gen = sampling.sample(loaded, specs, steps=steps, guidance=guidance, seed=sd, **steering)
            ok, n = _first_computable(gen, supported, m)
            drawn[kind][0] += n
            drawn[kind][1] += n - len(ok)
            if not ok:
                continue
            (p_mae,), zs = _score(ok, predictor, 0, g)
            for k, cand in enumerate(ok):
                cif = cand.crystal.to_structure().to(fmt="cif")
                cif_key = f"cif:{hashlib.sha256(cif.encode()).hexdigest()[:20]}/{SEED_RECIPE.name}/site-order"  # rows before the order fix do not count
                how = f"/p{particles}x{steer}" if steering and kind == "conditional" else ""
                jobs.append({"key": f"{loaded.sha256[:12]}/{mid}/{i}/{kind}/{k}/w{guidance}/s{steps}/seed{seed}{how}",
                             "cif_key": cif_key, "material_id": mid, "site": i, "kind": kind, "element_z": z,
                             "candidate_z": zs[k], "predictor_mae": p_mae[k], "target": g, "cif": cif})

    def score(job, calc):
        out = {k: v for k, v in job.items() if k not in ("target", "cif")}
        if "failed" in calc:
            out["failed"] = calc["failed"]
        else:
            out["dft_mae"] = dosmod.mae(job["target"], np.asarray(calc["site_dos_0"]))
        out["seconds"] = calc.get("seconds")
        return out

    write_lock = threading.Lock()

    def work(job):
        if job["cif_key"] in done:
            return score(job, done[job["cif_key"]])
        t = time.perf_counter()
        line = label_isolated({"material_id": job["key"], "cif": job["cif"], "keep_cell": True}, SEED_RECIPE, 900, cpu=True)
        calc = {"key": job["key"], "cif_key": job["cif_key"], "seconds": round(time.perf_counter() - t, 1)}
        if "failed" in line:
            calc["failed"] = line["failed"]
        else:
            calc["site_dos_0"] = np.round(np.asarray(line["site_dos"])[0], 5).tolist()
        done[job["cif_key"]] = calc
        out = score(job, calc)
        # one whole line per result, whichever thread or process (two benches may share the cache)
        with write_lock, cache.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.write(json.dumps({**out, **calc}) + "\n")
        log(f"{job['key']}: {out.get('dft_mae', out.get('failed'))}")
        return out

    # unconditional crystals repeat across sites of one size: calculate each once, first
    firsts, repeats, seen = [], [], set()
    for j in jobs:
        (repeats if j["cif_key"] in seen else firsts).append(j)
        seen.add(j["cif_key"])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = dict(zip((j["key"] for j in firsts), pool.map(work, firsts)))
    rows.update({j["key"]: work(j) for j in repeats})
    rows = [rows[j["key"]] for j in jobs]
    ok = [r for r in rows if "dft_mae" in r]
    summary = {}
    for kind in ("conditional", "unconditional"):
        rs = [r for r in ok if r["kind"] == kind]
        summary[kind] = {"candidates": len(rs), "failed": sum(1 for r in rows if r["kind"] == kind and "failed" in r),
                         "drawn": drawn[kind][0], "skipped_not_calculable": drawn[kind][1],
                         "dft_mae": float(np.mean([r["dft_mae"] for r in rs])) if rs else None,
                         "predictor_mae": _mean([r["predictor_mae"] for r in rs]) if rs else None,
                         "share_same_element": float(np.mean([r["candidate_z"] == r["element_z"] for r in rs])) if rs else None}
    c, u = summary["conditional"]["dft_mae"], summary["unconditional"]["dft_mae"]
    return {"machine": machine(), "steps": steps, "kinds": list(kinds), "guidance": guidance, "recipe": SEED_RECIPE.record(),
            "steering": steering_record,
            "checkpoint": {k: loaded.card.get(k) for k in ("epoch", "sha256", "type_diffusion")},
            "sites": [{"material_id": s[0], "n_atoms": s[1], "site": s[2], "element_z": s[4]} for s in sites],
            "candidates_per_site": m, **summary, "ratio": c / u if c is not None and u else None, "goal_ratio": 0.5,
            "predictor_vs_dft_on_candidates": _mean([abs(r["predictor_mae"] - r["dft_mae"]) for r in ok]) if ok else None,
            "rows": rows}
