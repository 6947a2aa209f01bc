"""`python -m benchmarks.truth`: does the conditioned atom's DFT DOS match the target? Every method
side by side, every number checked with GPAW, on held-out sites no model trained on.

Methods, per target site (its own material is never a seed, a lookup hit or a novelty reference
for itself):
- lookup: the nearest labelled site among every label (exact DFT: no calculation needed);
- unconditional: plain samples of the target's cell size, the predictor picks the best site;
- masked: site 0 conditioned on the target;
- steered: masked + DOS steering (the shipped guide, K = 4);
- seeded: the top-3 labelled sites' structures as templates, the matching site conditioned;
- seeded_steered: seeded + DOS steering with the shipped particles and strength;
- seeded_kept: seeded_steered with every site keeping its seed's element (a variant, not run
  by default: novelty from the geometry alone);
- seeded_shell: seeded_steered with the matched site's first shell pinned, in the seed's cell
  doubled where it fits (a variant, not run by default: the rest of the crystal changes around an
  intact first shell);
- substituted: no generator at all: the top-3 seeds with one element (not the matched site)
  replaced by a same-group neighbour, volume rescaled (a variant, not run by default: the classic
  substitution route to a new compound, as a baseline for the seeded generator);
- substituted_far: substituted with one atom beyond the matched site's first shell swapped, in
  the seed's cell or the smallest doubling that has such an atom (a variant: the site's own shell
  stays the seed's, so its DOS should stay near the lookup hit's while the compound is new);
- seeded_steered_subs (seeded_subs unsteered): seeded_steered's and substituted's candidates
  ranked together by the predictor: the app's default flow (Request's defaults, with the shipped
  substitutions); `app_default` in the record names the one the shipped settings run;
- seeded_steered_subs_deep (seeded_subs_deep): the same pool, with DFT on each part's top 3 (up
  to 6: the app's per-source checks, SHIPPED.dft_per_source); its best of the checked is the top of
  the DFT ranking, so `dft_mae_best_of_3` is the best of the DFT-ranked top 3.
With --relaxed, each candidate is relaxed with the default potential before its DFT (the app's
"relax before the DFT check"); the same draws and pick, its own record. As the app's certifier
(scoring/certify.py), the app default then checks the next candidate of the site's ranking in place
of each check that relaxed into a known compound (checks_with_replacements): the
`..._with_replacements` numbers, beside the as-picked ones.
With --window LO HI, each target is known on that window only (a measured curve: photoemission's
occupied states), as the app takes a DOS file that covers part of the grid: the lookup, the seeds,
the predictor's ranking and the DFT scores compare on the window; the generator and the steering are
given the target completed outside it by the closest known site on the window (dos.complete, the
target's own material left out). Each candidate is scored against the whole DFT curve too
(`dft_mae_whole`), since the bench knows it.
Each generation method draws CANDIDATES candidates, ranks the structurally valid, novel,
DFT-calculable ones by the predictor, and calculates the top 3 with the GPAW recipe (rows read
in the candidate's own site order). Work is cached by candidate (runs/truth/), so the bench
resumes and grows run after run; `benchmarks/results/truth.json` is rewritten after every DFT
result. Every calculated candidate is also a label (data/labels/generated-*.jsonl.gz).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from ase.data import chemical_symbols

from benchmarks.common import append_jsonl, machine, read_jsonl
from benchmarks.generation import heldout_sites, spread_sites
# the candidate's DFT and the app's replacements have modules of their own; their names are
# benchmarks.truth's too (the other benchmarks and the tests take them from here)
from benchmarks.truth_dft import (calculate, calculate_relaxed, checked_candidates, cif_key, novel_after_check,
                                  relaxed_known, score_candidate, whole_metrics)
from benchmarks.truth_replacements import (BenchChecks, Pending, checks_with_replacements, site_replacements,
                                           source_kind)
from benchmarks.truth_settings import CACHE, MAX_DFT_ATOMS, RELAXED, TOP
from dosmatgen_core import dos as dosmod
from dosmatgen_core.candidates.seeding import Seed, find_seeds, seeded_specs, substitution_specs
from dosmatgen_core.labels.labeller import FAST_RECIPE, ShardWriter, iter_label_lines, supported_elements
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.names import GENERATED_PREFIX
from dosmatgen_core.paths import DB_URL, GUIDE_PATH, LABEL_DIR, MODEL_PATH, PREDICTOR_PATH, ROOT
from dosmatgen_core.sampling import modes, sampler
from dosmatgen_core.scoring.evaluate import evaluate_candidates, known_match, matcher
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.search import SiteHit, SiteIndex, site_index
from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL
from dosmatgen_core.settings import PRESET_ID, SHIPPED
from dosmatgen_core.structures import Crystal, atoms_from_cif, to_structure

RESULTS = ROOT / "benchmarks" / "results" / "truth.json"
SITES = CACHE / "sites.json"          # the pinned choice of target sites (set "a")
# A fresh set ("b", ...) holds sites of structures that no earlier set used: a choice made by
# measuring on one set (a default, a ranking) is then checked on targets it never saw.
SITE_SETS = ("a", "b", "c")


def sites_file(site_set: str = "a") -> Path:
    if site_set not in SITE_SETS:
        raise ValueError(f"unknown site set {site_set!r}: one of {', '.join(SITE_SETS)}")
    return SITES if site_set == "a" else CACHE / f"sites-{site_set}.json"
# the app's default mode is seeded, steered when the shipped settings steer (Request's defaults)
APP_DRAWN = "seeded_steered" if SHIPPED.particles > 1 else "seeded"      # the generator's part of it
# the app's default: with substitutions, both kinds ranked together; with per-source DFT checks,
# every part's top 3 checked (the deep variant of the same pool)
APP_DEFAULT = (APP_DRAWN + "_subs" + "_deep" * SHIPPED.dft_per_source) if SHIPPED.substitutions else APP_DRAWN
METHODS = tuple(dict.fromkeys((APP_DEFAULT, "seeded", "seeded_steered", "masked", "steered", "unconditional")))
SEEDED_METHODS = ("seeded", "seeded_steered", "seeded_kept", "seeded_shell")
SUBSTITUTED = ("substituted", "substituted_far")
# a method made of others' candidates ranked together (no draws of its own)
MIXED = {"seeded_steered_subs": ("seeded_steered", "substituted"), "seeded_subs": ("seeded", "substituted"),
         "seeded_steered_subs_deep": ("seeded_steered", "substituted"), "seeded_subs_deep": ("seeded", "substituted")}
# a seeded method with this suffix takes its seeds by the shape of the site's curve (the search's
# cosine) instead of its MAE: the cosine bar favours seeds of the right shape
BY_COSINE = "_cos"
MIXED.update({m + BY_COSINE: tuple(p + BY_COSINE for p in parts) for m, parts in list(MIXED.items())})
CANDIDATES = 8
# how many of a method's picks get DFT: a deep method keeps every pick of its parts (up to 6), so
# its best DFT-checked one is the top of a DFT ranking of 6 checks rather than the predictor's 3
DEPTH = {m: 2 * TOP for m in MIXED if "_deep" in m}
STEPS = SHIPPED.steps


# ---- targets and the lookup -------------------------------------------------------------------

def truth_sites(db, n: int, max_atoms: int, pinned: Path | None = SITES, exclude: frozenset = frozenset(),
                preset: bool = True) -> list[dict]:
    """n held-out sites (validation structures: no model trained on them), spread over
    structures and elements, plus the Au3Ni preset's Ni site (preset=True); none of the
    structures in exclude. Targets are Materials Project sites: a generated candidate's label
    (gen:...) was drawn for an earlier target.

    The choice is pinned in runs/truth/sites.json on first use: the spread walks the database in
    id order, so new labels would otherwise shift the set under the cache from run to run."""
    if pinned is not None and pinned.exists() and len(keys := json.loads(pinned.read_text())) >= n:
        chosen = []
        for mid, i in keys[:n]:
            ref = db.get(mid)
            chosen.append((mid, len(ref.symbols), int(i), ref.site_dos[int(i)], int(ref.atoms.numbers[int(i)])))
    else:
        chosen = spread_sites([s for s in heldout_sites(db, max_sites=10**6)
                               if s[1] <= max_atoms and s[0] not in exclude and not s[0].startswith("gen:")], n)
        if pinned is not None:
            pinned.parent.mkdir(parents=True, exist_ok=True)
            pinned.write_text(json.dumps([[m, int(i)] for m, _, i, _, _ in chosen]))
    out = [{"material_id": m, "n_atoms": int(nat), "site": int(i), "element": chemical_symbols[int(z)],
            "target": np.asarray(g, float)} for m, nat, i, g, z in chosen]
    if not preset:
        return out
    ref = db.get(PRESET_ID)
    ni = ref.symbols.index("Ni")
    out.append({"material_id": PRESET_ID, "n_atoms": len(ref.symbols), "site": ni, "element": "Ni",
                "target": np.asarray(ref.site_dos[ni], float)})
    return out


def set_sites(db, n: int, max_atoms: int, site_set: str = "a") -> list[dict]:
    """The pinned targets of a site set: set "a" is the first 30 and the preset; a later set takes
    none of the structures of the sets before it, and no preset (set "a" has it)."""
    if site_set == "a":
        return truth_sites(db, n, max_atoms, sites_file("a"))
    earlier = SITE_SETS[:SITE_SETS.index(site_set)]
    used = frozenset(s["material_id"] for e in earlier for s in set_sites(db, n, max_atoms, e))
    return truth_sites(db, n, max_atoms, sites_file(site_set), exclude=used, preset=False)


def label_index(label_dirs=(LABEL_DIR,)) -> tuple[SiteIndex, dict[str, str]]:
    """Every labelled site of every shard (the reference db may lag the labeller), and each
    labelled structure's CIF (rows in its site order)."""
    rows, cifs = {}, {}
    for _, d in iter_label_lines(label_dirs):
        if "failed" not in d and not d["material_id"].startswith("gen:"):
            rows[d["material_id"]] = (d["material_id"], d["formula"], atoms_from_cif(d["cif"]).get_chemical_symbols(),
                                      np.asarray(d["site_dos"]))
            cifs[d["material_id"]] = d["cif"]
    return SiteIndex.from_rows([rows[k] for k in sorted(rows)]), cifs


def lookup(index: SiteIndex, site: dict) -> dict:
    window = site.get("window")
    hits = index.search(site["target"], top=TOP, exclude={site["material_id"]}, per_structure=True, window=window)
    out = []
    for h in hits:
        c = {"material_id": h.material_id, "site": h.site, "element": h.element,
             "dft_mae": h.mae, "dft_cosine": h.cosine, "novel": False}
        if window is not None:
            c.update(whole_metrics(site["target"], index.curves[index.row_of[h.material_id, h.site]]))
        out.append(c)
    return {"candidates": out}


def windowed(sites: list[dict], index: SiteIndex, window) -> list[dict]:
    """The targets as a scientist with a curve known on window alone has them: `window`, and the
    whole-grid `model_target` the generator is given (SiteIndex.completed, the target's own
    material left out)."""
    return [{**s, "window": tuple(window), "model_target": index.completed(s["target"], window, exclude={s["material_id"]})}
            for s in sites]


# ---- generation and the predictor's pick ------------------------------------------------------

def _calculable(s) -> bool:
    return len(s) <= MAX_DFT_ATOMS and {e.symbol for e in s.composition.elements} <= supported_elements()


def seed_order(method: str) -> tuple[str, str]:
    """(the method without its seed-order suffix, the search order of its seeds: "mae" or "cosine")."""
    if method.endswith(BY_COSINE) and method[:-len(BY_COSINE)] in SEEDED_METHODS + SUBSTITUTED:
        return method[:-len(BY_COSINE)], "cosine"
    return method, "mae"


def generate(method: str, site: dict, res: dict, seed: int, n_draw: int = CANDIDATES, seeds=None,
             top: int = TOP, novel_of: Callable | None = None) -> dict:
    """CANDIDATES candidates of one method for one site, scored by the predictor; the top TOP
    novel, valid, calculable ones (by predicted MAE of their conditioned site). seeds: a seeded
    method's seeds, instead of the search's (a refinement grows from a checked candidate); top: how
    many to keep as candidates (the rest of the ranking are `spares`); novel_of: a structure's
    novelty test instead of the reference db's (redraw_spares)."""
    method, by = seed_order(method)
    window = site.get("window")
    g = site.get("model_target", site["target"])      # the whole-grid curve the generator is given
    n = site["n_atoms"]
    t0 = time.perf_counter()
    kw = dict(steps=STEPS, guidance=SHIPPED.guidance, seed=seed, device="cpu", redraws=2)
    structs = None
    if seeds is None and method in SEEDED_METHODS + SUBSTITUTED:
        seeds = find_seeds(site["target"], DB_URL, k=3, by=by, window=window, exclude={site["material_id"]}, max_atoms=MAX_DFT_ATOMS, index=res["index"],
                           crystal_of=lambda m: Crystal.from_structure(to_structure(atoms_from_cif(res["cifs"][m]))))
    if method == "unconditional":
        specs = modes.unconditional(n, n_draw)
    elif method in ("masked", "steered"):
        specs = modes.masked(n, {0: g}, n_draw)
        if method == "steered":
            kw.update(guide=res["guide"], particles=SHIPPED.particles, steer=SHIPPED.steer)
    elif method in SEEDED_METHODS:
        specs = seeded_specs(g, seeds, n_draw, res["strength"], keep_composition=method == "seeded_kept",
                             keep_shell=method == "seeded_shell", max_atoms=MAX_DFT_ATOMS)
        if method != "seeded":
            kw.update(guide=res["guide"], particles=SHIPPED.particles, steer=SHIPPED.steer)
    elif method in SUBSTITUTED:       # nothing to sample: the swapped seeds are the candidates
        variants = substitution_specs(g, seeds, supported_elements(), n_draw, distant=method == "substituted_far",
                                      max_atoms=MAX_DFT_ATOMS)
        specs, structs = [sp for _, sp in variants], [c.to_structure() for c, _ in variants]
    else:
        raise ValueError(f"unknown method {method!r}")
    if structs is None:
        structs = [x.crystal.to_structure() for x in sampler.sample(res["model"], specs, **kw)]
    if method == "unconditional":
        # the predictor picks the best site of each candidate
        preds = res["predictor"].predict([(np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix) for s in structs])
        cond = [int(np.nanargmin([dosmod.mae(g, p[i], window) if np.all(np.isfinite(p[i])) else np.inf for i in range(len(p))]))
                for p in preds]
    elif method in SEEDED_METHODS + SUBSTITUTED:
        cond = [int(next(iter(sp.tag["site_to_target"]))) for sp in specs]
    else:
        cond = [0] * len(specs)
    evs = evaluate_candidates(structs, [{c: g} for c in cond], res["predictor"], db_url=DB_URL, window=window,
                              check_novelty=novel_of is None)
    if novel_of is not None:
        for s, ev in zip(structs, evs):
            ev["novel"] = bool(novel_of(s)) if ev["structurally_valid"] else None
    rows = []
    for k, (s, ev, c, sp) in enumerate(zip(structs, evs, cond, specs)):
        ok = ev["structurally_valid"] and bool(ev.get("novel")) and _calculable(s) and np.isfinite(ev.get("dos_mae", np.nan))
        rows.append({"k": k, "ok": ok, "cif": s.to(fmt="cif"), "site": c, "element": s[c].specie.symbol,
                     "formula": s.composition.reduced_formula, "predicted_mae": ev.get("dos_mae"),
                     "predicted_cosine": ev["dos_match"][c]["cosine"] if ev.get("dos_match") else None,
                     "novel": bool(ev.get("novel")), "valid": bool(ev["structurally_valid"]),
                     "seed": sp.tag.get("seed")})
    ranked = sorted([r for r in rows if r["ok"]], key=lambda r: r["predicted_mae"])
    return {"seconds": round(time.perf_counter() - t0, 1), "drawn": len(rows),
            "valid": sum(r["valid"] for r in rows), "novel": sum(r["novel"] for r in rows),
            "candidates": [{k: v for k, v in r.items() if k not in ("ok", "k")} for r in ranked[:top]],
            # the rest of the ranking, next in line when a check relaxes into a known compound (the
            # app's spares: checks_with_replacements)
            "spares": [{k: v for k, v in r.items() if k not in ("ok", "k")} for r in ranked[top:]],
            "seeds": [s.record() for s in seeds or []]}


def merge_picks(parts: list[dict], top: int = TOP) -> dict:
    """Methods drawn side by side and ranked together (the app's seeded run with substitutions:
    the generator's draws and the seeds' swaps in one list): the top TOP of their picks by
    predicted MAE, which are the top TOP of all their candidates, since each part kept its own top
    TOP of the same filter. top > TOP keeps more of them (a deep method)."""
    cands = sorted((c for p in parts for c in p["candidates"]), key=lambda c: c["predicted_mae"])[:top]
    return {"seconds": round(sum(p["seconds"] for p in parts), 1), "drawn": sum(p["drawn"] for p in parts),
            "valid": sum(p["valid"] for p in parts), "novel": sum(p["novel"] for p in parts),
            "candidates": cands, "seeds": parts[0].get("seeds", [])}


# ---- a record's spares, redrawn for the app's replacements (truth_replacements) ---------------
# here, not there: a redraw is generate's draws again

def seeds_of(rec: dict, cifs: dict[str, str]) -> list[Seed] | None:
    """A generated record's seeds again (their labelled cells, from `cifs`), so that a redraw starts
    from the seeds the record's draws did, whatever the search finds today; None: no seeds."""
    out = []
    for s in rec.get("seeds") or []:
        if s.get("known") is False:
            raise ValueError(f"seed {s['material_id']} is a candidate, not a labelled structure")
        crystal = Crystal.from_structure(to_structure(atoms_from_cif(cifs[s["material_id"]])))
        out.append(Seed(SiteHit(s["material_id"], s["formula"], int(s["site"]), s["element"], len(crystal.numbers),
                                float(s["mae"]), float(s["cosine"]), 0.0), crystal))
    return out or None


def checked_candidates_in_db(db_url: str = DB_URL) -> frozenset:
    """The reference db's DFT-checked candidates (gen:...): among them the bench's own checks."""
    return frozenset(m for m in site_index(db_url).material_ids if str(m).startswith(GENERATED_PREFIX))


def redraw_spares(method: str, k: int, site: dict, rec: dict, res: dict, seed: int = 0,
                  candidates: int = CANDIDATES) -> dict:
    """The spares of a generated record made before records kept them: the same draws again (the
    seed run() gave them, the record's own seeds), ranked as generate ranks, less the record's
    candidates. A redraw is the same crystals to float noise (the CIFs differ in their last
    digits), so `reproduced` asks that each of the record's candidates is one of the redrawn ones
    (the same formula and predicted MAE within 1e-3, StructureMatcher's fit); else the record gets
    no spares. A spare must be new against the known structures (the MP tables, the elements, the
    reference db) less the db's checked candidates: the db has since taken in the bench's own checks
    of these very draws, so it would call every one of them known (`known`: the draws left out so,
    each with the structure it matches).
    For runs/truth/spares.jsonl, keyed as the record (whose key, and so the cache, stays as it was)."""
    t = time.perf_counter()
    # every valid, calculable draw (novel_of: all), the record's candidates among them whatever
    # today's novelty test says of them
    again = generate(method, site, res, seed + 1000 * k, candidates, seeds=seeds_of(rec, res["cifs"]), top=0,
                     novel_of=lambda s: True)
    fit, left, found = matcher().fit, list(again["spares"]), 0
    for c in rec["candidates"]:
        s = to_structure(atoms_from_cif(c["cif"]))
        twin = next((r for r in left if r["formula"] == c["formula"] and abs(r["predicted_mae"] - c["predicted_mae"]) < 1e-3
                     and fit(s, to_structure(atoms_from_cif(r["cif"])))), None)
        if twin is not None:
            left.remove(twin)
            found += 1
    skip = checked_candidates_in_db()
    hits = [known_match(to_structure(atoms_from_cif(r["cif"])), DB_URL, skip=skip) for r in left]
    reproduced = found == len(rec["candidates"])
    return {"key": rec["key"], "reproduced": reproduced,
            "spares": [r for r, h in zip(left, hits) if h is None] if reproduced else [],
            "known": [[r["formula"], h[0]] for r, h in zip(left, hits) if h is not None],     # left out
            "seconds": round(time.perf_counter() - t, 1)}


# ---- the summary: each method's numbers -------------------------------------------------------

def summarise(sites: list[dict], per_method: dict[str, dict[str, dict]], dft_cache: dict,
              spares: dict[str, dict[str, list | None]] | None = None) -> dict:
    """spares: per method and site, the candidates next in line (the rest of the site's ranking;
    None where unknown); a method that has them also gets the app's replacements
    (site_replacements) and the `..._with_replacements` numbers beside the as-picked ones."""
    spares = spares or {}
    methods, per_site = {}, []
    for site in sites:
        sk = f"{site['material_id']}#{site['site']}"
        per_site.append({"site": sk, "element": site["element"], "n_atoms": site["n_atoms"], "methods": {}})
    for name, by_site in per_method.items():
        best_mae, best_cos, novel, secs, pred, dft, complete = [], [], [], [], [], [], []
        top1_mae, top1_cos = [], []
        # the novel candidates judged on the cell DFT calculated (novel_after_check): a site whose
        # checked candidates all relaxed into known compounds has no novel match
        strict_cos, strict_mae, relaxed_in, none_left = [], [], 0, []
        whole_mae = []      # windowed targets: the whole-grid MAE of the best match on the window
        # the same with the app's replacements of the checks that relaxed into known compounds
        rep_cos, rep_mae, rep_complete, rep_none, rep_pending = [], [], [], [], {}
        n_rep, n_rep_known, n_unrep = 0, 0, 0
        for site, rec in zip(sites, per_site):
            got = by_site.get(rec["site"])
            if got is None:
                continue
            scored = [score_candidate(c, site["target"], dft_cache.get(cif_key(c["cif"])) if "cif" in c else None,
                                      site.get("window")) for c in got["candidates"]]
            rec["methods"][name] = {"candidates": scored, "drawn": got.get("drawn"), "seconds": got.get("seconds")}
            secs.append(got.get("seconds", 0.0))
            checked = [c for c in scored if "dft_mae" in c]
            if scored and "dft_mae" in scored[0]:
                top1_mae.append(scored[0]["dft_mae"])
                top1_cos.append(scored[0]["dft_cosine"])
            for c in checked:
                novel.append(bool(c.get("novel")))
                relaxed_in += bool(c.get("relaxed_into"))
                if "predicted_mae" in c:
                    pred.append(c["predicted_mae"])
                    dft.append(c["dft_mae"])
            # a site counts once all its chosen candidates are calculated (or failed)
            if got["candidates"] and len(checked) + sum("dft_failed" in c for c in scored) == len(scored) and checked:
                complete.append(rec["site"])
                best_mae.append(min(c["dft_mae"] for c in checked))
                best_cos.append(max(c["dft_cosine"] for c in checked))
                kept = [c for c in checked if novel_after_check(c) or name == "lookup"]
                strict_cos.append(max((c["dft_cosine"] for c in kept), default=-1.0))
                if kept:
                    strict_mae.append(min(c["dft_mae"] for c in kept))
                    best = min(kept, key=lambda c: c["dft_mae"])
                    if "dft_mae_whole" in best:
                        whole_mae.append(best["dft_mae_whole"])
                else:
                    none_left.append(rec["site"])
                if name in spares:
                    got_r = site_replacements(got, scored, site, spares[name].get(rec["site"]), dft_cache)
                    if "pending" in got_r:
                        rep_pending[rec["site"]] = rec["methods"][name]["replacements_pending"] = got_r["pending"]
                    else:
                        rec["methods"][name].update(replacements=got_r["replacements"], unreplaced=got_r["unreplaced"])
                        rep_complete.append(rec["site"])
                        n_rep += len(got_r["replacements"])
                        n_rep_known += sum(bool(r.get("relaxed_into")) for r in got_r["replacements"])
                        n_unrep += len(got_r["unreplaced"])
                        kept = [c for c in got_r["checked"] if novel_after_check(c)]
                        rep_cos.append(max((c["dft_cosine"] for c in kept), default=-1.0))
                        if kept:
                            rep_mae.append(min(c["dft_mae"] for c in kept))
                        else:
                            rep_none.append(rec["site"])
        methods[name] = {
            "sites_complete": len(complete),
            "dft_mae_best_of_3": float(np.mean(best_mae)) if best_mae else None,
            "share_cosine_0.9": float(np.mean(np.array(best_cos) >= 0.9)) if best_cos else None,
            "share_novel": float(np.mean(novel)) if novel else None,
            "sites_top1": len(top1_mae),
            "dft_mae_top1": float(np.mean(top1_mae)) if top1_mae else None,
            "share_cosine_0.9_top1": float(np.mean(np.array(top1_cos) >= 0.9)) if top1_cos else None,
            "seconds_per_site": float(np.mean(secs)) if secs else None,
            "dft_candidates": len(dft),
            "predicted_mae_of_checked": float(np.mean(pred)) if pred else None,
            "dft_mae_of_checked": float(np.mean(dft)) if dft else None,
            "complete_sites": complete,
            "checked_relaxed_into_known": relaxed_in,
            "share_cosine_0.9_novel_after_relaxation": float(np.mean(np.array(strict_cos) >= 0.9)) if strict_cos else None,
            "dft_mae_best_of_3_novel_after_relaxation": float(np.mean(strict_mae)) if strict_mae else None,
            "sites_without_novel_after_relaxation": none_left,
        }
        if whole_mae:
            methods[name]["dft_mae_whole_of_best_novel_after_relaxation"] = float(np.mean(whole_mae))
        if name in spares:
            methods[name].update({
                # the complete sites whose replacements are all checked too (the numbers' sites)
                "sites_complete_with_replacements": len(rep_complete),
                "complete_sites_with_replacements": rep_complete,
                "share_cosine_0.9_novel_after_relaxation_with_replacements":
                    float(np.mean(np.array(rep_cos) >= 0.9)) if rep_cos else None,
                "dft_mae_best_of_3_novel_after_relaxation_with_replacements":
                    float(np.mean(rep_mae)) if rep_mae else None,
                "sites_without_novel_after_relaxation_with_replacements": rep_none,
                "replacement_checks": n_rep,         # spares checked in place of checks that relaxed into known ones
                "replacement_checks_relaxed_into_known": n_rep_known,
                "checks_relaxed_into_known_unreplaced": n_unrep,    # none left, or as many replaced as picked
                "sites_with_replacements_pending": rep_pending,
            })
    # the lookup on exactly the sites each method completed: the paired comparison
    look = per_method.get("lookup", {})
    for name, m in methods.items():
        if name == "lookup" or not m["complete_sites"]:
            continue
        pairs = [min(c["dft_mae"] for c in look[s]["candidates"]) for s in m["complete_sites"] if s in look]
        m["lookup_dft_mae_same_sites"] = float(np.mean(pairs)) if pairs else None
        if m.get("complete_sites_with_replacements"):
            pairs = [min(c["dft_mae"] for c in look[s]["candidates"]) for s in m["complete_sites_with_replacements"]
                     if s in look]
            m["lookup_dft_mae_same_sites_with_replacements"] = float(np.mean(pairs)) if pairs else None
    windows = {tuple(s["window"]) for s in sites if s.get("window") is not None}
    return {"sites": len(sites), "app_default": APP_DEFAULT,
            **({"window_ev": list(next(iter(windows)))} if windows else {}),
            # the app relaxes before its DFT check when SHIPPED.dft_relaxed; a --relaxed record measures that
            "app_default_cell": "relaxed" if SHIPPED.dft_relaxed else "drawn",
            "methods": methods, "per_site": per_site}


# ---- the run ---------------------------------------------------------------------------------

def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


# the predictor that ranked every record before the settings named it: those records' tags were
# made without it, and still count for it
FIRST_PREDICTOR = "4525101976a132b7"


def settings_tag(settings: dict) -> str:
    """The cache tag of generated candidates: what the candidates and their ranking depend on."""
    keyed = {k: v for k, v in settings.items() if not (k == "predictor" and v == FIRST_PREDICTOR)}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:12]


def draw_settings(res: dict, candidates: int = CANDIDATES, strength: float = 0.5, seed: int = 0) -> dict:
    """What a run's draws and their ranking depend on (settings_tag keys the cache by it)."""
    return {"candidates": candidates, "top": TOP, "steps": STEPS, "strength": strength, "seed": seed,
            "checkpoint": res["model"].sha256[:16], "recipe": FAST_RECIPE.name,
            "predictor": str(res["predictor"].card.get("sha256", ""))[:16]}


def run(n_sites: int = 30, max_atoms: int = 6, strength: float = 0.5, methods=METHODS, max_minutes: float = 0.0,
        seed: int = 0, log=print, candidates: int = CANDIDATES, first: int = 0, results: Path = RESULTS,
        part: tuple[int, int] = (0, 1), dft: bool = True, predictor: Path = PREDICTOR_PATH,
        relaxed: bool = False, site_set: str = "a", window=None) -> dict:
    """candidates: draws per site and method; first: calculate only the first sites (a variant on
    a subset, compared on the same sites); results: where the record goes (a variant keeps its own);
    part (i, n): calculate only sites k with k % n == i, so n processes share the sites;
    dft=False: rewrite the record from the cache alone (no sampling, no DFT); predictor: the one
    that ranks (a candidate predictor before it ships; its sha names the records); relaxed: certify
    each candidate after relaxing it with the default potential (as the app's "relax before the
    DFT check"), a record of its own; site_set: which pinned targets ("b": a fresh set); window:
    (lo, hi) eV, the targets known there only (module doc)."""
    t_start = time.time()
    db = open_db(DB_URL)
    sites = set_sites(db, n_sites, max_atoms, site_set)
    res = {"model": load_model(MODEL_PATH), "predictor": load_predictor(predictor, trust=Path(predictor).resolve() != PREDICTOR_PATH.resolve()),
           "guide": load_guide(GUIDE_PATH), "strength": strength}
    res["index"], res["cifs"] = label_index()
    if window is not None:
        sites = windowed(sites, res["index"], dosmod.check_window(window))
    log(f"{len(sites)} sites; lookup over {len(res['index'])} labelled sites")
    gen_cache = {r["key"]: r for r in read_jsonl(CACHE / "generated.jsonl")}
    # relaxed: the relaxed cell's DFT stands in for the drawn cell's, under the drawn cell's key
    dft_cache = {r["key"]: r for r in read_jsonl(RELAXED if relaxed else CACHE / "dft.jsonl")}
    writer = ShardWriter(LABEL_DIR, prefix="generated")
    per_method: dict[str, dict] = {"lookup": {f"{s['material_id']}#{s['site']}": lookup(res["index"], s) for s in sites}}
    settings = draw_settings(res, candidates, strength, seed)
    if window is not None:      # other seeds and targets, so other draws: in the tag (absent, old tags stand)
        settings["window"] = list(dosmod.check_window(window))
    tag = settings_tag(settings)
    settings["site_set"] = site_set       # in the record, not the tag: the draws are keyed by site
    settings["cell"] = "relaxed" if relaxed else "drawn"
    if relaxed:       # in the record, not the tag: relaxing changes neither the draws nor the pick
        settings["relaxed"] = DEFAULT_POTENTIAL

    def generated(method: str, k: int, site: dict) -> dict:
        sk = f"{site['material_id']}#{site['site']}"
        key = f"{tag}/{method}/{sk}"
        if method in MIXED:       # the parts' picks, ranked together: nothing new to draw
            parts = [generated(m, k, site) for m in MIXED[method]]
            per_method.setdefault(method, {})[sk] = merge_picks(parts, DEPTH.get(method, TOP))
            return per_method[method][sk]
        if key not in gen_cache:
            rec = {"key": key, **generate(method, site, res, seed + 1000 * k, candidates)}
            append_jsonl(CACHE / "generated.jsonl", rec)
            gen_cache[key] = rec
            log(f"{method} {sk}: {len(rec['candidates'])} chosen of {rec['drawn']} ({rec['seconds']} s)")
        per_method.setdefault(method, {})[sk] = gen_cache[key]
        return gen_cache[key]

    spare_cache = {r["key"]: r for r in read_jsonl(CACHE / "spares.jsonl")}

    def spares_of(method: str, k: int, site: dict, redraw: bool = False) -> list[dict] | None:
        """The site's candidates next in line after the method's picks (the app's spares, before
        its eligibility rules): a record's own `spares`, else those redrawn for it
        (runs/truth/spares.jsonl; redraw: redraw them now, when missing); a mixed method's are the
        parts' candidates it did not pick and the parts' spares. None: unknown."""
        sk = f"{site['material_id']}#{site['site']}"
        if method in MIXED:
            parts = [spares_of(m, k, site, redraw) for m in MIXED[method]]
            if any(p is None for p in parts) or sk not in per_method.get(method, {}):
                return None
            picked = {cif_key(c["cif"]) for c in per_method[method][sk]["candidates"]}
            rest = [c for m in MIXED[method] for c in gen_cache[f"{tag}/{m}/{sk}"]["candidates"]
                    if cif_key(c["cif"]) not in picked]
            return rest + [c for p in parts for c in p]
        key = f"{tag}/{method}/{sk}"
        if (rec := gen_cache.get(key)) is None:
            return None
        if "spares" in rec:
            return rec["spares"]
        if key not in spare_cache:
            if not redraw:
                return None
            got = redraw_spares(method, k, site, rec, res, seed, candidates)
            append_jsonl(CACHE / "spares.jsonl", got)
            spare_cache[key] = got
            log(f"{method} {sk}: {len(got['spares'])} spares redrawn ({got['seconds']} s)"
                + ("" if got["reproduced"] else ": the redraw did not reproduce the record's candidates, so none"))
        return spare_cache[key]["spares"] if spare_cache[key]["reproduced"] else None

    def app_spares() -> dict:
        """The app default's spares per site (for summarise), from the caches alone."""
        if APP_DEFAULT not in per_method:
            return {}
        return {APP_DEFAULT: {f"{s['material_id']}#{s['site']}": spares_of(APP_DEFAULT, k, s) for k, s in enumerate(sites)
                              if f"{s['material_id']}#{s['site']}" in per_method[APP_DEFAULT]}}

    def replace(k: int) -> None:
        """The app's replacements on site k: once the app default's picks are checked, the next
        candidate in line is checked in place of each check that relaxed into a known compound
        (checks_with_replacements; the spares redrawn first where the record lacks them)."""
        site = sites[k]
        sk = f"{site['material_id']}#{site['site']}"
        cands = generated(APP_DEFAULT, k, site)["candidates"]
        calcs = [dft_cache.get(cif_key(c["cif"])) for c in cands]
        if not cands or any(x is None for x in calcs) or not any(
                c.get("novel") and relaxed_known(x) for c, x in zip(cands, calcs) if "site_dos" in x):
            return
        if (spare := spares_of(APP_DEFAULT, k, site, redraw=True)) is None:
            log(f"{APP_DEFAULT} {sk}: no spares, so no replacement")
            return

        def calc(c: dict) -> None:
            if max_minutes and time.time() - t_start > 60 * max_minutes:
                raise Pending("the run's time is up")
            t = time.perf_counter()
            prov = {"bench": "truth", "method": APP_DEFAULT, "target": sk, "replacement": True}
            got = (calculate_relaxed(c, dft_cache, writer, provenance=prov) if relaxed
                   else calculate(c, dft_cache, writer, prov))
            sc = score_candidate(c, site["target"], got, site.get("window"))
            log(f"DFT {APP_DEFAULT} {sk} replacement {c.get('formula')}: {sc.get('dft_mae', sc.get('dft_failed'))} "
                f"(predicted {sc.get('predicted_mae')}, relaxed into {sc.get('relaxed_into')}) "
                f"{time.perf_counter() - t:.0f} s")
            write()
        checks_with_replacements(cands, spare, dft_cache, calc=calc, name=sk,
                                 log=lambda m: None if "has its GPAW check already" in m else log(f"{APP_DEFAULT} {m}"))

    def write():
        out = {"command": " ".join(["python -m benchmarks.truth", *sys.argv[1:]]), "commit": commit(),
               "machine": machine(), "settings": settings,
               "note": "lookup = the nearest labelled site (exact DFT); generation methods: DFT (GPAW, fast "
                       "recipe) of the conditioned site of the top-3 novel candidates by the predictor; a "
                       "method's numbers cover its complete sites only (sites_complete)",
               **summarise(sites, per_method, dft_cache, app_spares())}
        results.write_text(json.dumps(out, indent=1))
        return out

    # what is cached already counts at once
    for method in methods:
        for k, site in enumerate(sites):
            if all(f"{tag}/{m}/{site['material_id']}#{site['site']}" in gen_cache for m in MIXED.get(method, (method,))):
                generated(method, k, site)
    if not dft:
        return write()
    # the app default's top 3 on every site first (the bar is about it), and the app's
    # replacements of those that relaxed into known compounds ("replace"), then every other
    # method's best site after site, their ranks 2-3 last, site by site (a site counts only once
    # complete). A partial run thus grows the number that decides the issue first, and still
    # compares like with like (complete sites only).
    others = [m for m in methods if m != APP_DEFAULT]
    jobs = [(k, APP_DEFAULT, r) for k in range(len(sites))
            for r in range(DEPTH.get(APP_DEFAULT, TOP))] if APP_DEFAULT in methods else []
    jobs += [(k, APP_DEFAULT, "replace") for k in range(len(sites))] if APP_DEFAULT in methods else []
    jobs += [(k, m, 0) for k in range(len(sites)) for m in others]
    jobs += [(k, m, r) for k in range(len(sites)) for m in others for r in range(1, DEPTH.get(m, TOP))]
    for k, method, r in jobs:
        if (first and k >= first) or k % part[1] != part[0]:
            continue
        if max_minutes and time.time() - t_start > 60 * max_minutes:
            break
        if r == "replace":
            replace(k)
            continue
        site = sites[k]
        sk = f"{site['material_id']}#{site['site']}"
        cands = generated(method, k, site)["candidates"]
        if r >= len(cands) or cif_key(cands[r]["cif"]) in dft_cache:
            continue
        t = time.perf_counter()
        prov = {"bench": "truth", "method": method, "target": sk}
        calc = (calculate_relaxed(cands[r], dft_cache, writer, provenance=prov) if relaxed
                else calculate(cands[r], dft_cache, writer, prov))
        sc = score_candidate(cands[r], site["target"], calc, site.get("window"))
        log(f"DFT {method} {sk} #{r + 1}: {sc.get('dft_mae', sc.get('dft_failed'))} "
            f"(predicted {sc.get('predicted_mae')}) {time.perf_counter() - t:.0f} s")
        write()
    writer.seal()
    return write()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.truth", description=__doc__.splitlines()[0])
    p.add_argument("--sites", type=int, default=30)
    p.add_argument("--max-atoms", type=int, default=6, help="largest target cell (its size sets the candidates')")
    p.add_argument("--strength", type=float, default=0.5, help="seeded: template strength")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-minutes", type=float, default=0.0, help="stop starting DFT after this long (0: no limit)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--candidates", type=int, default=CANDIDATES, help="draws per site and method")
    p.add_argument("--first", type=int, default=0, help="calculate only the first K sites (0: all)")
    p.add_argument("--out", type=Path, default=RESULTS, help="the record (a variant keeps its own)")
    p.add_argument("--summarise", action="store_true", help="rewrite the record from the cache; calculate nothing")
    p.add_argument("--relaxed", action="store_true", help="certify relaxed candidates (the default potential)")
    p.add_argument("--predictor", type=Path, default=PREDICTOR_PATH, help="the predictor that ranks (default: the shipped one)")
    p.add_argument("--site-set", default="a", choices=SITE_SETS,
                   help="the pinned targets: a (the first 30 and the preset), b (30 fresh ones, no structure of a), "
                        "c (30 more, no structure of a or b; grown a few sites a session)")
    p.add_argument("--part", default="0/1", help="i/n: this process calculates sites k with k %% n == i")
    p.add_argument("--window", type=float, nargs=2, metavar=("LO", "HI"),
                   help="targets known on LO..HI eV only (default record: truth-window-SET.json)")
    args = p.parse_args(argv)
    if args.window is not None:
        try:
            dosmod.check_window(args.window)
        except ValueError as exc:
            p.error(str(exc))
        if args.out == RESULTS:
            args.out = RESULTS.with_name(f"truth-window-{args.site_set}.json")
    part = tuple(int(x) for x in args.part.split("/"))
    if len(part) != 2 or not 0 <= part[0] < part[1]:
        p.error(f"--part takes i/n with 0 <= i < n, not {args.part!r}")
    import torch
    torch.set_num_threads(args.threads)
    out = run(args.sites, args.max_atoms, args.strength, tuple(args.methods.split(",")), args.max_minutes,
              log=lambda m: print(m, flush=True), candidates=args.candidates, first=args.first, results=args.out,
              part=part, dft=not args.summarise, predictor=args.predictor, relaxed=args.relaxed,
              site_set=args.site_set, window=args.window)
    print(json.dumps({k: v for k, v in out["methods"].items()}, indent=1)[:3000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
