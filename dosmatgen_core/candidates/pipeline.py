"""One generation run, from a validated request to a stored, scored result.

request → task specs → sampler (conditional candidates + an unconditional baseline of the same
sizes) → evaluation (validity, predicted DOS match, symmetry, uniqueness, novelty) → ranking →
RunStore. Used by the app, the CLI and the benchmarks alike.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
import json
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable

import numpy as np

from dosmatgen_core import checks
from dosmatgen_core.candidates.runs import RunStore, StoreError, to_cif
from dosmatgen_core.candidates.seeding import (Seed, beats, bound_text, candidate_seed, find_seeds, is_one_of,
                                               seeded_specs, substitution_specs)
from dosmatgen_core.labels.labeller import supported_elements
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.paths import DB_URL, GUIDE_PATH, missing_mp_tables
from dosmatgen_core.sampling import cores
from dosmatgen_core.sampling import sampler as sampling
from dosmatgen_core.sampling import modes
from dosmatgen_core.scoring import certify, evaluate
from dosmatgen_core.scoring import stability
from dosmatgen_core.scoring.search import site_index
from dosmatgen_core.scoring.stability import assess
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.structures import Crystal, to_structure
from dosmatgen_core.training.dataset import mp_structures, mp_structures_loaded, mp_tables_parsed

REDRAWS = 2      # a collapsed cell is drawn again (twice at most) rather than shown as a candidate
MAX_PARTICLES = SHIPPED.max_particles
SCORE_CHUNK = 4  # candidates scored (and stored) at a time, so an interrupted run keeps what it scored


MODES = ("seeded", "masked", "template", "fixed_type", "unconditional")


@dataclass
class Request:
    mode: str                               # seeded | masked | template | fixed_type | unconditional
    n_atoms: int = SHIPPED.n_atoms
    targets: list = field(default_factory=list)        # target DOS curves (400 values each)
    window: list | None = None                          # [lo, hi] eV where the targets are known (an
    # upload that covers part of the grid): they are compared there only; None: the whole grid
    cond_sites: list = field(default_factory=list)     # site index → targets[k] for the k-th site
    fixed: dict = field(default_factory=dict)          # site → element (fixed_type / masked)
    template_id: str | None = None
    template: dict | None = None                        # {"numbers", "frac", "lattice"}
    strength: float = SHIPPED.strength
    pinned: list = field(default_factory=list)
    n_candidates: int = SHIPPED.n_candidates
    guidance: float = SHIPPED.guidance
    steps: int = SHIPPED.steps
    particles: int = SHIPPED.particles                  # DOS steering: trajectories per candidate (1 = off)
    steer: float = SHIPPED.steer                        # ... and its strength (sampling._sample)
    seed: int = SHIPPED.seed
    device: str = "auto"
    baseline: bool = True
    stability: bool = False                             # CHGNet relaxation + ML hull per candidate
    title: str = ""
    target_source: str = ""                             # where the target curve came from (for the record)
    reference_id: str | None = None                     # the known structure it is a site of (rounds keep it)
    target_element: str = ""                            # the element of the site whose DOS is the target, where
    # a material gives it ('' for a DOS file): a card says when the atom carrying it is another element
    n_seeds: int = SHIPPED.n_seeds                      # seeded: known structures taken as templates
    seed_by: str = SHIPPED.seed_by                      # seeded: ... the closest by "mae" or by "cosine"
    fix_element: bool = False                           # seeded: the matching site keeps its element
    substitutions: bool = SHIPPED.substitutions         # seeded: the seeds' isovalent substitutions as candidates too
    distant_swaps: bool = SHIPPED.distant_swaps         # ... one atom beyond the matched site's first shell each
    seed_exclude: list = field(default_factory=list)    # material ids never to seed from (seeded; later rounds)
    db_url: str = DB_URL                                # seeded: where the known sites are searched
    grow_from: list = field(default_factory=list)       # seeded: candidates to grow from instead of the search's
    # known sites (the next round around what DFT confirmed): candidate_seed's keyword arguments each
    seed_above: float | None = None                     # seeded: only known sites whose DFT cosine to the target
    # is above this (a round from known sites shaped better than the rounds' best check)
    seed_mae_at_most: float | None = None               # ... and whose DFT MAE to it is at most this (no
    # worse than that check's: a Cl p band can have a Ni d band's shape at twice its height)
    top_up: float = SHIPPED.top_up                      # seeded: draw again this much further from the seeds when
    # fewer than SHIPPED.dft_top candidates are new crystals a DFT check would take (top_up_specs)

    def __post_init__(self):
        if self.mode == "unconditional":
            self.particles = 1    # nothing is conditioned, so there is nothing to steer towards
        self._seeds = None        # seeded: (what they were searched for, the seeds); not a field, so not in asdict
        self._completed = None    # window: (what was completed, the whole-grid curves the model is given)

    def model_targets(self) -> list[np.ndarray]:
        """The targets as the generator and the steering take them, on the whole grid
        (SiteIndex.completed). Scoring, the seeds' search and the DFT ranking compare on the window
        alone."""
        targets = [np.asarray(t, dtype=float) for t in self.targets]
        if self.window is None:
            return targets
        key = (tuple(t.tobytes() for t in targets), tuple(self.window), str(self.db_url))
        if self._completed is None or self._completed[0] != key:
            index = site_index(self.db_url)
            self._completed = (key, [index.completed(t, self.window) for t in targets])
        return self._completed[1]

    def seeds(self) -> list[Seed]:
        """seeded: the known structures closest to the target, searched once per target (the app,
        the CLI and the job queue call specs() more than once per run)."""
        if self.grow_from:
            key = ("given", hashlib.sha256(json.dumps(self.grow_from, sort_keys=True, default=str).encode()).hexdigest())
            if self._seeds is None or self._seeds[0] != key:
                self._seeds = (key, [candidate_seed(**g) for g in self.grow_from])
            return self._seeds[1]
        target = np.asarray(self.targets[0], dtype=float)
        key = (target.tobytes(), self.n_seeds, self.seed_by, tuple(sorted(self.seed_exclude)), str(self.db_url),
               self.seed_above, self.seed_mae_at_most, tuple(self.window or ()))
        if self._seeds is None or self._seeds[0] != key:
            bounded = self.seed_above is not None or self.seed_mae_at_most is not None
            admit = functools.partial(beats, cosine=self.seed_above, mae=self.seed_mae_at_most) if bounded else None
            try:
                seeds = find_seeds(target, self.db_url, k=self.n_seeds, by=self.seed_by,
                                   exclude=set(self.seed_exclude), max_atoms=SHIPPED.max_dft_atoms, admit=admit,
                                   window=self.window)
            except ValueError:
                if not bounded:
                    raise
                raise checks.UserError(f"no known site of at most {SHIPPED.max_dft_atoms} atoms has "
                                       f"{bound_text(self.seed_above, self.seed_mae_at_most)} to the target",
                                       "grow from a candidate instead", "seed_above") from None
            self._seeds = (key, seeds)
        return self._seeds[1]

    def grows(self) -> bool:
        """A round: seeded from a candidate (grow_from) or from the known sites shaped better than a
        check (seed_above), as benchmarks.refine and benchmarks.pool measured it."""
        return bool(self.grow_from) or self.seed_above is not None

    def check(self) -> None:
        """The values a user sets, checked as the form checks them (checks.request_errors): the
        first problem is raised."""
        errors = checks.request_errors({f.name: getattr(self, f.name) for f in fields(self)})
        if errors:
            raise errors[0]

    def specs(self) -> list[sampling.SampleSpec]:
        self.check()
        if len(self.cond_sites) != len(self.targets) and self.mode != "seeded":
            raise ValueError("each conditioned site needs one target curve")
        model = self.model_targets() if self.mode != "unconditional" else []
        targets = {int(i): model[k] for k, i in enumerate(self.cond_sites)}
        fixed = {int(k): v for k, v in (self.fixed or {}).items()}
        if self.mode == "masked":
            return modes.masked(self.n_atoms, targets, self.n_candidates, fixed)
        if self.mode == "fixed_type":
            return modes.fixed_type(self.n_atoms, targets, fixed, self.n_candidates)
        if self.mode == "template":
            if not self.template:
                raise ValueError("template mode needs a template structure")
            c = Crystal(np.asarray(self.template["numbers"]), np.asarray(self.template["frac"]),
                        np.asarray(self.template["lattice"]))
            return modes.template(c, self.strength, targets, self.pinned, self.n_candidates)
        if self.mode == "unconditional":
            return modes.unconditional(self.n_atoms, self.n_candidates)
        if self.mode == "seeded":
            if len(self.targets) != 1:
                raise checks.UserError("seeded generation matches one target curve", "give one target DOS")
            return seeded_specs(model[0], self.seeds(), self.n_candidates, self.strength, self.fix_element)
        raise ValueError(f"unknown mode '{self.mode}' ({', '.join(MODES)})")


def checkable_new(structs: list, db_url: str | None) -> int:
    """How many of structs a DFT check would take (certify.dft_eligibility: valid, small enough, no
    copy of an earlier one) that are new crystals, matching no known structure."""
    return sum(1 for s, u in zip(structs, evaluate.unique_flags(structs))
               if certify.dft_eligibility({"unique": u, "n_atoms": len(s),
                                           "structurally_valid": evaluate.validity(s)["structurally_valid"]}) is None
               and evaluate.known_match(s, db_url) is None)


def may_top_up(req: Request, check_novelty: bool) -> bool:
    """Whether a run could draw a second batch (top_up_specs), before its draws are known."""
    return (req.mode == "seeded" and not req.grows() and check_novelty and req.top_up > 0
            and req.strength < 1.0)


def top_up_specs(req: Request, structs: list, db_url: str | None, check_novelty: bool) -> list[sampling.SampleSpec]:
    """seeded (not a round): n_candidates more template specs at strength + req.top_up when fewer
    than SHIPPED.dft_top of the run's draws and swaps (structs) are new crystals a check would take;
    else none. Once earlier checks have made a target's neighbourhood labels, the seeds' draws come
    back as those labels (the preset: 13 of 13 known); a little more noise gives new crystals."""
    if not may_top_up(req, check_novelty) or checkable_new(structs, db_url) >= SHIPPED.dft_top:
        return []
    strength = round(min(1.0, req.strength + req.top_up), 3)
    specs = seeded_specs(req.model_targets()[0], req.seeds(), req.n_candidates, strength, req.fix_element)
    for sp in specs:
        sp.tag["top_up"] = strength
    return specs


def left_out(req: Request) -> list:
    """The structures of req.seed_exclude in its database (the reference the target came from, and
    in later rounds the seeds tried already): no candidate should merely hand them back. Ids the
    database lacks are skipped."""
    return _structures(req.seed_exclude, req.db_url)


def reference_formula(req: Request) -> str | None:
    """The reduced formula of the material the target came from (req.reference_id); None without
    one, or where the database lacks it."""
    found = _structures([req.reference_id] if req.reference_id else [], req.db_url)
    return found[0].composition.reduced_formula if found else None


def _structures(ids, db_url) -> list:
    if not ids:
        return []
    db = open_db(str(db_url))
    out = []
    for mid in ids:
        try:
            out.append(to_structure(db.get(mid).atoms))
        except checks.NotFound:
            continue
    return out


def substituted(req: Request, reference: list | None = None) -> list[tuple[Crystal, sampling.SampleSpec]]:
    """seeded with substitutions: the seeds' isovalent substitutions (at most n_candidates, within
    the elements the DFT recipe calculates; with distant_swaps, one atom beyond the matched site's
    first shell each), candidates beside the generator's draws, none of them the reference
    (reference: left_out's answer, when the caller has it); else none. In a round (grown from a
    candidate or from known sites shaped better than a check), both kinds (at most n_candidates
    each), as the refinement round was measured (benchmarks.refine)."""
    if req.mode != "seeded" or not req.substitutions:
        return []
    kinds = (False, True) if req.grows() else (req.distant_swaps,)
    reference = left_out(req) if reference is None else reference
    return [v for far in kinds
            for v in substitution_specs(req.model_targets()[0], req.seeds(), supported_elements(),
                                        req.n_candidates, distant=far, max_atoms=SHIPPED.max_dft_atoms,
                                        left_out=reference)]


def check_novelty_tables() -> None:
    """Novelty is judged against the shared MP tables: without them it would call everything
    novel, so a run that checks novelty refuses to start."""
    if missing := missing_mp_tables():
        raise checks.UserError(f"the Materials Project table(s) {', '.join(missing)} are missing, so novelty "
                               "cannot be judged", "put them there (or set DOSMATGEN_SHARED), or turn the "
                               "novelty check off (--no-novelty)")


# built by a process's first run and reused after, so the first run takes longer than the
# measured rates say (benchmarks/startup.py times each; the app adds them while they are cold).
# "MP structures parsed" happens once per install (the parsed tables are kept on disk), the
# others once per process.
COLD_PARTS = ("MP structures parsed", "novelty tables", "relaxation potential")


def cold_parts(relaxed: bool, check_novelty: bool = True) -> list[str]:
    """The COLD_PARTS this process has not built yet that a run would: the novelty tables when
    novelty is checked (and the MP tables' parse before them, where no process has kept it on disk),
    the relaxation potential when candidates are relaxed (the DFT check's)."""
    novelty_cold = check_novelty and not evaluate.known_tables_loaded()
    # on disk, or in memory where it could not be kept; asked only while cold (mp_tables_parsed hashes
    # the tables' files, and the Generate page estimates at every rerun)
    parse_cold = novelty_cold and not (mp_structures_loaded() or mp_tables_parsed())
    return [p for p, cold in (("MP structures parsed", parse_cold),
                              ("novelty tables", novelty_cold),
                              ("relaxation potential", relaxed and not stability.potential_loaded()))
            if cold]


def warm_up(part: str, db_url: str = DB_URL) -> None:
    """Build one of COLD_PARTS now (the startup bench times each in a fresh process)."""
    if part == "MP structures parsed":
        mp_structures()
    elif part == "novelty tables":
        evaluate.load_known_tables(db_url)
    elif part == "relaxation potential":
        stability.load_potential()
    else:
        raise ValueError(f"unknown part {part!r}: one of {', '.join(COLD_PARTS)}")


def shipped_guide(device: str = "cpu", trust: bool = False):
    """The shipped DOS guide that steering needs, or a UserError that says it is missing."""
    if not GUIDE_PATH.exists():
        raise checks.UserError(f"DOS steering needs the DOS guide {GUIDE_PATH}, which is missing",
                               "turn steering off (--particles 1) or restore the file")
    kw = {"trust": trust} if "trust" in inspect.signature(load_guide).parameters else {}
    return load_guide(GUIDE_PATH, device=device, **kw)


def site_targets(spec, cond_sites) -> dict[int, int]:
    """Conditioned site → its row in the run's targets: the spec's own map where the sites vary
    by candidate (seeded: each seed's matching site), else the request's sites."""
    if "site_to_target" in spec.tag:
        return {int(s): int(k) for s, k in spec.tag["site_to_target"].items()}
    return {int(site): k for k, site in enumerate(cond_sites) if site < spec.n_atoms and spec.cond_mask[site]}


def rank_key(c: dict) -> tuple:
    """A candidate's place in its run: valid geometry first, then new structures before known ones
    (a known crystal, the reference included, is the lookup's answer, with its stored DFT label:
    the app's checks, the truth bench and a run's "best new" all skip it), then cells with no
    pressed contact (evaluate.pressed: the predictor's curve for those is least reliable), then by
    predicted DOS MAE of the conditioned sites. Unchecked novelty (None) counts as new."""
    return (not c["structurally_valid"], c.get("novel") is False or bool(c.get("is_reference")),
            evaluate.pressed(c), float(np.nan_to_num(c.get("dos_mae", np.inf), nan=np.inf)))


# what a candidate takes from its known copy: the match and the reference flag
KNOWN_KEYS = ("novel", "matches", "matches_spacegroup", "is_reference")


def known_through_copies(records: list[dict], reps: list[int | None], n_candidates: int, structs: list) -> bool:
    """A new candidate that matches a known one of the run (evaluate.duplicate_of over the run in
    rank order: the records' reps; structs: their cells) is known too. StructureMatcher's
    tolerances do not chain: a walk's FePt draw read "unique · novel" while its copy, ranked below
    it, read "the reference itself". One hop only: the candidate must itself match a record the
    novelty check found known (not one made known here), so a chain of near-copies does not spread
    a match. Each such candidate (the first n_candidates records; baselines only lend their match)
    takes that record's match, and known_via names it ({'baseline', 'index'}; the caller names it by
    its final rank). True when any record changed."""
    groups: dict[int, list[int]] = {}
    for k, rep in enumerate(reps):
        groups.setdefault(k if rep is None else rep, []).append(k)
    sm = evaluate.matcher()
    changed = False
    for members in groups.values():
        known = [j for j in members if records[j].get("novel") is False and "known_via" not in records[j]]
        for k in members:
            c = records[k]
            if k >= n_candidates or c.get("novel") is not True or not known:    # known already, or never compared
                continue
            j = next((j for j in known if sm.fit(structs[k], structs[j])), None)
            if j is None:
                continue
            c.update({key: records[j][key] for key in KNOWN_KEYS if key in records[j]})
            c["known_via"] = {"baseline": bool(records[j].get("baseline")), "index": records[j]["index"]}
            for key in ("same_formula", "same_formula_n", "seed_type", "same_as_template"):
                c.pop(key, None)
            changed = True
    return changed


def rank_candidates(cands: list[dict], base: list[dict], structs: list, n: int) -> list[dict]:
    """The candidates in rank order (rank_key), each with its rank and whether it is unique in the
    run; structs: the run's cells, candidate i at its index, baseline j at n + its index. Over the
    whole run as one set, in rank order: the best-ranked of equivalent candidates is the unique one,
    the lower-ranked ones its duplicates (baselines after every candidate); a new one whose copy is
    known is known too (known_through_copies), and the run is ranked again."""
    cands = list(cands)
    while True:         # ends: each pass that changes something turns a new candidate known
        cands.sort(key=rank_key)
        for r, c in enumerate(cands):
            c["rank"] = r + 1
        ordered = [structs[c["index"]] for c in cands] + [structs[n + b["index"]] for b in base]
        reps = evaluate.duplicate_of(ordered)
        if not known_through_copies(cands + base, reps, len(cands), ordered):
            break
    rank_of = {c["index"]: c["rank"] for c in cands}
    for c, rep in zip(cands + base, reps):
        c["unique"] = rep is None
        if isinstance(via := c.get("known_via"), dict):        # the copy's place, now that the ranks are final
            c["known_via"] = (f"baseline sample {via['index'] + 1}" if via["baseline"] else f"#{rank_of[via['index']]}")
    return cands


def _candidate_record(i, g, spec, ev, targets_map, reference=(), seed_cells=None, own_formula=None) -> dict:
    """seed_cells: seed id → its cell (seeded runs), to tell whether a new candidate keeps its seed's
    arrangement of sites (other elements on them) or is another arrangement. own_formula: the
    reduced formula of the material the target came from (reference_formula)."""
    s = g.crystal.to_structure()
    rec = {k: v for k, v in ev.items() if k != "seconds_per_check"}
    if rec.get("novel") is False and is_one_of(s, reference):
        rec["is_reference"] = True          # a draw that came back as the reference: its label is the target
    elif rec.get("novel") and own_formula and s.composition.reduced_formula == own_formula:
        # a new arrangement of the reference's own compound: its DOS being close is expected, not found
        # (walk 18's "best new" LiCoO2 beside the LiCoO2 target)
        rec["reference_compound"] = True
    if "seed" in spec.tag:
        rec["seed"] = spec.tag["seed"]        # the known structure this candidate was grown from
        rec["origin"] = spec.tag.get("origin", "generator")     # ... by the generator or by substitution
        if rec.get("novel") and (seed_cell := (seed_cells or {}).get(spec.tag["seed"]["material_id"])) is not None:
            # a decoration of the seed's framework, or a new arrangement: a scientist reads them apart
            rec["seed_type"] = evaluate.same_arrangement(s, seed_cell)
    if "top_up" in spec.tag:
        rec["top_up"] = spec.tag["top_up"]    # drawn again further from the seeds, at this strength
    rec.update({"index": i, "cif": to_cif(s), "formula": s.composition.reduced_formula,
                "n_atoms": len(s), "site_to_target": site_targets(spec, targets_map),
                "fixed_sites": {int(j): int(z) for j, z in enumerate(spec.fixed_z) if z > 0},
                "pinned_sites": [int(j) for j in np.flatnonzero(spec.pinned)] if spec.pinned is not None else []})
    known_seed = spec.tag.get("mode") == "seeded" and spec.tag["seed"].get("known", True)
    if rec.get("novel") and spec.template is not None and not known_seed and spec.tag.get("origin") != "substitution":
        # a template that is no known structure (an upload, a grown-from candidate) can come back
        # as itself: new to the known tables, yet nothing new to the user. A known seed never is a
        # novel draw, and a swap is its own template (nothing is drawn)
        rec["same_as_template"] = bool(evaluate.matcher().fit(s, spec.template.to_structure()))
    return rec


class _Keeper:
    """Keeps a run as it goes: in the store, or, once the store fails, in a JSON file (run
    ['saved_to'] says where, run['store_error'] why). No store: nothing is kept."""

    def __init__(self, store: RunStore | None, run: dict):
        self.store, self.run = store, run

    def _guard(self, fn) -> None:
        if self.store is None:
            return
        if "saved_to" not in self.run:
            try:
                fn()
                return
            except StoreError as exc:
                self.run["store_error"] = str(exc)
        self.run["saved_to"] = str(self.store.rescue(self.run))

    def start(self) -> None:
        self._guard(lambda: self.store.start(self.run))

    def append(self, kind: str, records: list[dict]) -> None:
        self.run[kind].extend(records)
        self._guard(lambda: self.store.append(self.run["id"], kind, records))

    def finish(self, status: str, error: str | None = None) -> None:
        self.run["status"] = status
        if error:
            self.run["error"] = error
        self._guard(lambda: self.store.finish(self.run, status, error))


def run_generation(req: Request, loaded, predictor=None, *, guide=None, store: RunStore | None = None,
                   db_url: str | None = None, progress: Callable[[float, float, str], None] | None = None,
                   cancel: Callable[[], bool] | None = None, check_novelty: bool = True, hull=None) -> dict:
    """Check, sample, evaluate, rank and (if a store is given) keep. Bad input raises before
    anything is stored. The run is stored when sampling starts (status running), its candidates
    as they are scored, and it ends done, failed or cancelled. guide: the DOS guide for steering
    (req.particles > 1); the shipped one is loaded when none is given."""
    specs = req.specs()
    reference = left_out(req)
    variants = substituted(req, reference)
    device = checks.check_device(req.device)
    if check_novelty:
        check_novelty_tables()
    if req.particles > 1 and guide is None:
        guide = shipped_guide(device)
    base_specs = []
    if req.baseline and req.mode != "unconditional":
        base_specs = [modes.unconditional(s.n_atoms)[0] for s in specs]
    settings = asdict(req)
    settings.update({"device": device, "checkpoint_sha256": loaded.sha256,
                     "predictor_sha256": (predictor.card.get("sha256") if predictor else None),
                     # the calibration the stored spreads carry (None: the ensemble's raw spread)
                     "spread_calibration": (predictor.spread_calibration if predictor else None),
                     "guide_sha256": (guide.card.get("sha256") if req.particles > 1 else None),
                     "checkpoint_card": {k: loaded.card.get(k) for k in ("epoch", "val_loss", "date", "n_labelled_structures")}})
    run = {"created": time.time(), "title": req.title or f"{req.mode}, N={req.n_atoms}", "status": "running",
           "settings": settings, "summary": {}, "candidates": [], "baseline": []}
    keep = _Keeper(store, run)
    keep.start()
    try:
        _generate(req, loaded, predictor, guide, specs, base_specs, keep, db_url, progress, cancel, check_novelty, hull,
                  variants, reference)
    except (sampling.Cancelled, KeyboardInterrupt):
        keep.finish("cancelled")
        raise
    except BaseException as exc:
        keep.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    keep.finish("done")
    if progress:
        progress(1.0, 0.0, "done")
    return run


def _generate(req, loaded, predictor, guide, specs, base_specs, keep, db_url, progress, cancel, check_novelty, hull,
              variants=(), reference=()):
    run = keep.run
    t0 = time.perf_counter()
    own_formula = reference_formula(req)       # a tried seed of a later round is not the target's compound

    # what the progress bar says it is doing (steering needs a conditioned atom to steer)
    steered = req.particles > 1 and any(sp.cond_mask.any() for sp in specs)
    drawing = f"sampling {len(specs)} candidate{'s' * (len(specs) != 1)}" + (
        f" × {req.particles} steered trajectories" if steered else "")

    # a steered run draws its unsteered baseline apart, after the candidates: each part takes its
    # share of the bar by its trajectories (the baseline ran for minutes at "step 100/100")
    share = 1.0
    if req.particles > 1 and base_specs:
        share = req.particles * len(specs) / (req.particles * len(specs) + len(base_specs))
    # a run that may draw a second batch keeps the last third of the sampling bar for it, so the
    # bar never goes back
    span = 0.6 if may_top_up(req, check_novelty) else 0.9

    def prog(f, eta, msg):
        if progress:
            progress(span * share * f, eta, f"{drawing}: {msg}")

    def prog_base(f, eta, msg):
        if progress:
            progress(span * (share + (1 - share) * f), eta,
                     f"drawing {len(base_specs)} unconditional baseline samples (what the target adds is measured "
                     f"against them): {msg}")

    kw = dict(steps=req.steps, guidance=req.guidance, device=run["settings"]["device"], cancel=cancel, redraws=REDRAWS)
    # one torch thread per core other work leaves free: a thread that waits for a busy core stalls
    # every step (cores.py); the draws are the same whatever the count
    more = []
    with cores.sampling_threads(run["settings"]["device"]) as threads:
        if req.particles > 1:
            # steered candidates and the plain baseline apart: the baseline is not steered, so its
            # particles would be wasted (K times the work); the baseline takes the next seed
            gen = sampling.sample(loaded, specs, seed=req.seed, progress=prog, guide=guide, particles=req.particles,
                                  steer=req.steer, **kw)
            if base_specs:
                gen += sampling.sample(loaded, base_specs, seed=req.seed + 1, progress=prog_base, **kw)
        else:
            gen = sampling.sample(loaded, specs + base_specs, seed=req.seed, progress=prog, **kw)
        # too few new crystals among the draws and swaps: one more batch, further from the seeds
        if progress and may_top_up(req, check_novelty):      # top_up_specs matches the draws only then
            progress(span, 0.0, "checking which draws are new crystals (against the known structures)")
        more = top_up_specs(req, [g.crystal.to_structure() for g in gen[:len(specs)]]
                            + [c.to_structure() for c, _ in variants], db_url, check_novelty)
        if more:
            again = (f"few of the draws are new crystals: drawing {len(more)} more at strength "
                     f"{more[0].tag['top_up']:g}")

            def prog_more(f, eta, msg):      # the second batch's own steps and time left
                if progress:
                    progress(span + (0.9 - span) * f, eta, f"{again}: {msg}")
            steer_kw = dict(guide=guide, particles=req.particles, steer=req.steer) if req.particles > 1 else {}
            extra = sampling.sample(loaded, more, seed=req.seed + 2, progress=prog_more, **steer_kw, **kw)
            gen = gen[:len(specs)] + extra + gen[len(specs):]     # after the first draws, before the baseline
            specs = specs + more
    t_sample = time.perf_counter() - t0
    # substituted seeds join the drawn candidates (after them, before the baseline): nothing sampled
    n_drawn = len(specs)
    gen = gen[:n_drawn] + [sampling.Generated(c, n_drawn + k) for k, (c, _) in enumerate(variants)] + gen[n_drawn:]
    specs = specs + [sp for _, sp in variants]
    # each candidate is scored on its own conditioned sites (a baseline on its partner's)
    cand_targets = [{s: np.asarray(req.targets[k]) for s, k in site_targets(sp, req.cond_sites).items()}
                    for sp in specs + specs[:len(base_specs)]]
    structs = [g.crystal.to_structure() for g in gen]
    n = len(specs)
    evs, timing = [], {}
    what = f"{n_drawn} drawn and {len(variants)} substituted candidates" if variants else f"{n} candidates"
    what += f" and {len(base_specs)} unconditional baseline samples" if base_specs else ""
    seed_cells = {sd.hit.material_id: sd.crystal.to_structure() for sd in req.seeds()} if req.mode == "seeded" else {}
    t_score = time.perf_counter()
    # the bar moves through scoring too (about 30 s on 2 cores): to the end, or to where the hull's
    # relaxations (slower per structure) take over
    stab_from = 0.93 if req.stability and hull is not None else 1.0
    for a in range(0, len(structs), SCORE_CHUNK):   # scored a few at a time, each kept as soon as scored
        if cancel is not None and cancel():
            raise sampling.Cancelled("generation cancelled")
        if progress:
            # time left from the chunks scored so far (unknown, 0, before the first one lands)
            eta = (time.perf_counter() - t_score) / a * (len(structs) - a) if a else 0.0
            progress(0.9 + (stab_from - 0.9) * a / len(structs), eta, f"scoring structures {a + 1}-{min(a + SCORE_CHUNK, len(structs))} of "
                               f"{len(structs)} ({what})")
        part = evaluate.evaluate_candidates(structs[a:a + SCORE_CHUNK], cand_targets[a:a + SCORE_CHUNK],
                                            predictor, db_url=db_url, check_novelty=check_novelty,
                                            window=req.window)
        for ev in part:
            for k, v in ev.pop("seconds_per_check").items():
                timing[k] = timing.get(k, 0.0) + v
        recs = []
        for j, ev in enumerate(part, start=a):
            if j < n:
                recs.append(("candidates", _candidate_record(j, gen[j], specs[j], ev, req.cond_sites, reference,
                                                              seed_cells, own_formula)))
            else:
                b = _candidate_record(j - n, gen[j], base_specs[j - n], ev, req.cond_sites)
                # baseline atoms were not conditioned; they are scored on the same sites
                b["site_to_target"] = site_targets(specs[j - n], req.cond_sites)
                b["baseline"] = True
                recs.append(("baseline", b))
            recs[-1][1]["rank"] = recs[-1][1]["index"] + 1     # provisional, until all are ranked
        for kind in ("candidates", "baseline"):
            if any(k == kind for k, _ in recs):
                keep.append(kind, [r for k, r in recs if k == kind])
        evs += part
    cands, base = run["candidates"], run["baseline"]
    if req.stability and hull is not None:
        t_st = time.perf_counter()
        for k, c in enumerate(cands):
            if cancel is not None and cancel():
                raise sampling.Cancelled("generation cancelled")
            if progress:
                progress(stab_from + (1 - stab_from) * k / len(cands), 0.0, f"CHGNet relaxation {k + 1}/{len(cands)}")
            if c["structurally_valid"]:
                c.update(assess(structs[k], hull))
            else:
                c.update({"e_above_hull": None, "hull_note": "not relaxed: geometry invalid", "stable_0.1": None})
        t_stab = (time.perf_counter() - t_st) / max(len(cands), 1)
    else:
        t_stab = None
    t = time.perf_counter()
    run["candidates"] = cands = rank_candidates(cands, base, structs, n)
    timing["uniqueness"] = time.perf_counter() - t
    maes = [c["dos_mae"] for c in cands if np.isfinite(c.get("dos_mae", np.nan))]
    bmaes = [c["dos_mae"] for c in base if np.isfinite(c.get("dos_mae", np.nan))]
    n_all = max(len(structs), 1)
    run["summary"] = {"n": len(cands), "valid": int(sum(c["valid"] for c in cands)),
                      "structurally_valid": int(sum(c["structurally_valid"] for c in cands)),
                      "mean_dos_mae": float(np.mean(maes)) if maes else None,
                      "baseline_mean_dos_mae": float(np.mean(bmaes)) if bmaes else None,
                      "seconds_sampling": round(t_sample, 2), "sampling_threads": threads,
                      "seconds_per_check": dict({k: v / n_all for k, v in timing.items()}, stability=t_stab),
                      "stable_0.1": int(sum(bool(c.get("stable_0.1")) for c in cands)) if req.stability else None,
                      "seconds_total": round(time.perf_counter() - t0, 2)}
    if more:
        run["summary"]["top_up"] = {"strength": more[0].tag["top_up"], "drawn": len(more)}
