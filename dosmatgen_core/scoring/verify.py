"""DFT verification of a generated candidate: the labelling recipe run on it, in the background.

Results sit next to the run in the run store (table `verifications`), keyed by run id and
candidate rank, so a verification never touches the run's own rows: a failure (no convergence,
a missing basis set, a timeout) is recorded with its reason and nothing else is lost.
Calculations are cached by structure (table `dft_cache`, keyed by the CIF and the recipe), so a
candidate met again in any run is not calculated twice; and each one becomes a label (a line in
the `generated` shards beside the labeller's), so the predictor and the guide retrain on the
generator's own distribution.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import numpy as np
from pymatgen.core import Structure

from dosmatgen_core import dos as dosmod
from dosmatgen_core.candidates.runs import RunStore, dumps, structure_of
from dosmatgen_core.labels.labeller import (
    FAST_RECIPE,
    Recipe,
    ShardWriter,
    label_isolated,
)
from dosmatgen_core.paths import DB_URL, LABEL_DIR
from dosmatgen_core.scoring.evaluate import known_match, spacegroups, volume_ratio
from dosmatgen_core.scoring.prototypes import structure_type
from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL, POTENTIALS, relax
from dosmatgen_core.scoring.twins import find_twin, rows_of_twin
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.structures import atoms_from_cif, to_structure

SCHEMA = """CREATE TABLE IF NOT EXISTS verifications (run_id TEXT, rank INTEGER, status TEXT, started REAL,
            finished REAL, result TEXT, error TEXT, PRIMARY KEY (run_id, rank));
            CREATE TABLE IF NOT EXISTS dft_cache (key TEXT PRIMARY KEY, line TEXT, created REAL);"""
# what a running check is doing, in the words the pages show (a walk's check spent 413 s relaxing
# and 22 s in GPAW while the page said only "running")
STAGES = {"relax": f"relaxing with {POTENTIALS[DEFAULT_POTENTIAL]}", "wait": "waiting for a free core",
          "gpaw": "GPAW", "twin": "waiting for #{rank}'s check: the same crystal once relaxed"}
# no check runs this long (GPAW's timeout is an hour; a relaxation of ≤ 8 atoms takes minutes)
STALE_S = 3 * 3600.0
INTERRUPTED = "interrupted: the process running this check stopped before it finished; check it again"
LABEL_PREFIX = "generated"      # shard name of verified candidates (data/labels/generated-*.jsonl.gz)


def cache_key(cif: str, recipe: Recipe) -> str:
    """The same structure (same CIF text, so the same sites in the same order) and recipe."""
    return hashlib.sha256(f"{recipe.name}|{cif}".encode()).hexdigest()[:24]


def rows_out_of_order(candidate_cif: str, calculated_cif: str) -> str | None:
    """Why the DFT rows (in the calculated cell's order) are not the candidate's sites in its
    own order, or None when they are. Only a check: labelling keeps the order by construction."""
    want = atoms_from_cif(candidate_cif).get_chemical_symbols()
    got = atoms_from_cif(calculated_cif).get_chemical_symbols()
    if want != got:
        return (f"the DFT rows follow the atoms {got}, not the candidate's {want}; "
                "nothing was scored (report this: the site order was lost)")
    return None


def dft_in_site_order(cif: str, recipe: Recipe = FAST_RECIPE, timeout: float = 3600,
                      material_id: str | None = None, order_of: str | None = None, cpu: bool = False) -> dict:
    """GPAW (the labelling recipe) on the cell exactly as written: the label line, whose row i is
    the CIF's site i, or {"material_id", "failed": reason}. A line whose rows follow other atoms
    than order_of's (default: the cell's own; a relaxed cell passes the drawn candidate) comes back
    failed, so no caller can score the wrong atom. cpu: the timeout counts CPU seconds
    (label_isolated), for benches; the app's checks keep the clock a user waits by."""
    mid = material_id or f"gen:{hashlib.sha256(cif.encode()).hexdigest()[:20]}"
    line = label_isolated({"material_id": mid, "cif": cif, "keep_cell": True}, recipe, timeout, cpu=cpu)
    if "failed" not in line and (bad := rows_out_of_order(order_of or cif, line["cif"])):
        return {"material_id": mid, "failed": bad}
    return line


def relax_in_site_order(cif: str, potential: str = DEFAULT_POTENTIAL) -> tuple[str, dict]:
    """The candidate relaxed with the potential (positions and cell) as a CIF in the drawn site
    order, and what the relaxation did. Raises ValueError if the order changed: the DFT rows of the
    relaxed cell must still belong to the drawn sites."""
    drawn = to_structure(atoms_from_cif(cif))
    t = time.perf_counter()
    r = relax(drawn, potential=potential)
    out = r["structure"].to(fmt="cif")
    if atoms_from_cif(out).get_chemical_symbols() != [site.specie.symbol for site in drawn]:
        raise ValueError(f"the {POTENTIALS[potential]} relaxation changed the site order")
    return out, {"potential": potential, "relax_steps": r["steps"], "relax_converged": r["converged"],
                 "relax_seconds": round(time.perf_counter() - t, 1),
                 "volume_ratio": r["structure"].volume / drawn.volume}


def checked_type(cell: Structure) -> dict | None:
    """The checked cell's AFLOW structure type (prototypes.structure_type); None where it matches
    none or the matching fails (a name is not worth a check)."""
    try:
        return structure_type(cell)
    except Exception:
        return None


def relaxed_into(status: dict | None) -> str | None:
    """The known structure (id) a finished relaxed check's cell turned out to be (Verifier.run
    records it for a candidate novel as drawn), or None."""
    if not status or status.get("status") != "done":
        return None
    return (status.get("result") or {}).get("relaxed_into")


def dft_mae(status: dict | None, metric: str = "mae") -> float | None:
    """Mean DFT MAE (or another match metric) over the conditioned sites of a finished check, else None."""
    if not status or status.get("status") != "done" or not status.get("result"):
        return None
    m = status["result"].get("dos_match") or {}
    vals = [v[metric] for v in m.values() if v and np.isfinite(v.get(metric, np.nan))]
    return float(np.mean(vals)) if vals else None


def new_structure_maes(run: dict, dft: dict[int, dict], maes: dict[int, float]) -> dict[int, float]:
    """maes of the candidates that are new structures as DFT calculated them: novel as drawn, not
    the reference, and not relaxed into a known compound (stored labels of known ones left out)."""
    by_rank = {c["rank"]: c for c in run["candidates"]}
    return {r: m for r, m in maes.items() if (c := by_rank.get(r)) is not None and c.get("novel") is not False
            and not c.get("is_reference") and relaxed_into(dft.get(r)) is None}


def run_window(run: dict):
    """The window a run's targets are known on (Request.window), None for the whole grid."""
    return run["settings"].get("window")


def dft_maes(run: dict, dft: dict[int, dict], stored: dict[int, dict[int, dict]] | None = None,
             metric: str = "mae") -> dict[int, float]:
    """rank → DFT MAE (or cosine) over the conditioned sites: a finished check, else the stored DFT
    label of the known structure the candidate matches (stored: rank → site → {'y'}; the app's
    stored_labels)."""
    targets, window = run["settings"]["targets"], run_window(run)
    out = {}
    for c in run["candidates"]:
        m = dft_mae(dft.get(c["rank"]), metric)
        if m is None and (sites := (stored or {}).get(c["rank"])):
            row_of = {int(a): int(b) for a, b in c["site_to_target"].items()}
            vals = [getattr(dosmod, metric)(targets[row_of[k]], v["y"], window) for k, v in sites.items() if k in row_of]
            m = float(np.mean(vals)) if vals else None
        if m is not None:
            out[c["rank"]] = m
    return out


def checks_summary(run: dict, dft: dict[int, dict]) -> dict:
    """A run's GPAW checks in three numbers: how many finished, and the DFT MAE and cosine of its
    best new structure (the lowest DFT MAE among new_structure_maes: a known candidate, or one
    relaxed into a known compound, is the lookup's answer, not the run's); None where none has.
    Both numbers are that one structure's, as the Compare figure draws it."""
    maes, cosines = dft_maes(run, dft), dft_maes(run, dft, metric="cosine")
    new = new_structure_maes(run, dft, maes)
    best = min(new, key=new.get) if new else None
    return {"checks": len(maes), "best_new_mae": new[best] if new else None,
            "best_new_cosine": cosines.get(best) if new else None}


def best_new_curve(run: dict, dft: dict[int, dict]) -> dict | None:
    """A run's best curve at its best candidate's first conditioned site, for comparing runs: the
    lowest DFT MAE among its new structures' finished checks (new_structure_maes: a seeded run's
    copies of its seeds carry the lookup's stored labels, the same in every run towards that
    target), else the predictor's curve of its top-ranked candidate still new (not known as drawn,
    not relaxed by its check into a known compound). {'y', 'target' (that site's target curve),
    'source' ('dft' or 'predicted'), 'rank', 'formula', 'site', 'element', 'mae', 'cosine'}; None
    for a run with no target or no new structure."""
    targets = run["settings"].get("targets") or []
    cands = [c for c in run.get("candidates", []) if c.get("site_to_target")]
    if not targets or not cands:
        return None
    by_rank = {c["rank"]: c for c in cands}
    maes = {r: m for r, m in new_structure_maes(run, dft, dft_maes(run, dft)).items() if r in by_rank}
    if maes:
        c, source = by_rank[min(maes, key=maes.get)], "dft"
    else:
        new = [c for c in cands if c.get("novel") is not False and not c.get("is_reference")
               and relaxed_into(dft.get(c["rank"])) is None and c.get("predicted_dos") is not None]
        if not new:
            return None
        c, source = min(new, key=lambda c: c["rank"]), "predicted"
    site, row = min(((int(s), int(r)) for s, r in c["site_to_target"].items()))
    y = dft[c["rank"]]["result"]["site_dos"][site] if source == "dft" else c["predicted_dos"][site]
    target, y, window = np.asarray(targets[row], float), np.asarray(y, float), run_window(run)
    return {"y": y, "target": target, "source": source, "rank": c["rank"], "formula": c["formula"],
            "site": site, "element": structure_of(c)[site].specie.symbol, "mae": dosmod.mae(target, y, window),
            "cosine": dosmod.cosine(target, y, window)}


def default_workers(top: int = SHIPPED.dft_top) -> int:
    """DFT calculations at once: SHIPPED.dft_workers, or one per CPU core (0), at most top.
    Each GPAW process is single-threaded, so more than the cores only splits them."""
    n = SHIPPED.dft_workers or (os.cpu_count() or 1)
    return max(1, min(n, top))


class CheckCancelled(Exception):
    """A check's batch was cancelled while the check waited for a free core."""


def _note(seen: list, rank: int, cell, cif: str, drop: tuple = ()) -> None:
    """Keep (rank, relaxed cell, CIF) as the run's check of that crystal, in place of this rank's
    earlier entry and of the ranks in drop (the caller holds Verifier._relaxed_lock)."""
    seen[:] = [e for e in seen if e[0] != rank and e[0] not in drop] + [(rank, cell, cif)]


class Verifier:
    def __init__(self, store: RunStore, label_dir: str | Path | None = LABEL_DIR, workers: int | None = None):
        self.store = store
        self.label_dir = label_dir
        with sqlite3.connect(store.path) as con:
            con.executescript(SCHEMA)
            # what a running check is doing (STAGES): added to stores made before it was kept
            if "stage" not in {r[1] for r in con.execute("PRAGMA table_info(verifications)")}:
                con.execute("ALTER TABLE verifications ADD COLUMN stage TEXT")
            # a check still "running" long past any check's time was cut off (the app or the CLI
            # stopped under it): said so, not left to read as at work, and keep pages ticking
            con.execute("UPDATE verifications SET status='failed', finished=?, error=? WHERE status IN "
                        "('queued', 'running') AND started < ?",
                        (time.time(), INTERRUPTED, time.time() - STALE_S))
        # at most this many relaxations and GPAW processes at once beside the app (one per core by default)
        self.cores = threading.Semaphore(workers or default_workers())
        # run id → (rank, relaxed cell, its CIF) of this process's relaxed checks: a later candidate
        # that relaxes into one of them takes its rows (twins.py) instead of a GPAW run of its own
        self._relaxed: dict[str, list[tuple[int, object, str]]] = {}
        self._relaxed_lock = threading.Lock()

    def _set(self, run_id, rank, **kw):
        with sqlite3.connect(self.store.path, timeout=30) as con:
            cur = con.execute("SELECT status FROM verifications WHERE run_id=? AND rank=?", (run_id, rank)).fetchone()
            if cur is None:
                con.execute("INSERT INTO verifications (run_id, rank, status, started) VALUES (?,?,?,?)",
                            (run_id, rank, "queued", time.time()))
            for k, v in kw.items():
                con.execute(f"UPDATE verifications SET {k}=? WHERE run_id=? AND rank=?", (v, run_id, rank))

    def status(self, run_id: str, rank: int) -> dict | None:
        with sqlite3.connect(self.store.path, timeout=30) as con:
            con.row_factory = sqlite3.Row
            r = con.execute("SELECT * FROM verifications WHERE run_id=? AND rank=?", (run_id, rank)).fetchone()
        if r is None:
            return None
        out = dict(r)
        out["result"] = json.loads(out["result"]) if out["result"] else None
        return out

    def statuses(self, run: dict) -> dict[int, dict]:
        """rank → status of each of the run's candidates that has a check (queued, running, done,
        failed), in one query rather than one per candidate."""
        with sqlite3.connect(self.store.path, timeout=30) as con:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT * FROM verifications WHERE run_id=?", (run["id"],)).fetchall()
        ranks = {c["rank"] for c in run["candidates"]}
        out = {}
        for r in map(dict, rows):
            if r["rank"] in ranks:
                r["result"] = json.loads(r["result"]) if r["result"] else None
                out[r["rank"]] = r
        return out

    def summaries(self, run_ids, get=None) -> dict[str, dict]:
        """run id → checks_summary; a run is read in full (get, the store's by default: a page
        passes its memoised reader so that a run it shows is read once) only when it has a
        finished check."""
        done = {v["run_id"] for v in self.all() if v["status"] == "done"}
        get = get or self.store.get
        return {rid: checks_summary(run, self.statuses(run)) if rid in done and (run := get(rid))
                else {"checks": 0, "best_new_mae": None, "best_new_cosine": None} for rid in run_ids}

    def all(self, results: bool = False) -> list[dict]:
        """Every check, newest first; results=True also gives each finished one's match and cell as
        result {'dos_match', 'relaxed', 'relaxed_into'}, for a table that shows them (read in SQL: the stored
        result's DFT curves stay on disk)."""
        with sqlite3.connect(self.store.path, timeout=30) as con:
            con.row_factory = sqlite3.Row
            rows = con.execute("SELECT run_id, rank, status, started, finished, error"
                               + (", json_extract(result, '$.dos_match') AS dos_match, "
                                  "json_extract(result, '$.relaxed') AS relaxed, "
                                  "json_extract(result, '$.relaxed_into') AS relaxed_into" if results else "")
                               + " FROM verifications ORDER BY started DESC").fetchall()
        out = [dict(r) for r in rows]
        for r in out if results else ():
            match, relaxed, into = r.pop("dos_match"), r.pop("relaxed"), r.pop("relaxed_into")
            r["result"] = ({"dos_match": json.loads(match), "relaxed": bool(relaxed), "relaxed_into": into}
                           if match else None)
        return out

    def fail(self, run_id: str, rank: int, error: str) -> None:
        self._set(run_id, rank, status="failed", finished=time.time(), error=error)

    def run(self, run_id: str, rank: int, recipe: Recipe = FAST_RECIPE, timeout: float = 3600,
            relaxed: bool = False, cancelled: Callable[[], bool] | None = None) -> dict | None:
        """Synchronous verification (the CLI and the background thread both call this).

        relaxed: calculate the relaxed candidate (the one from the stability check, or relaxed now
        with the default potential); relaxation keeps the site order, so rows still match the
        conditioned sites. cancelled: asked while the check waits for its first free core; when it
        says so, the check is dropped as if never started (its row goes) and None is returned.
        """
        run = self.store.get(run_id)
        cand = next((c for c in run["candidates"] if c.get("rank") == rank), None)
        if cand is None:
            raise KeyError(f"run {run_id} has no candidate ranked {rank}")
        self._set(run_id, rank, status="running", started=time.time(), stage=None)
        try:
            return self._run(run, cand, recipe, timeout, relaxed, cancelled)
        except CheckCancelled:
            self._forget(run_id, rank)
            return None

    @contextmanager
    def _slot(self, run_id: str, rank: int, stage: str, cancelled: Callable[[], bool] | None, first: bool):
        """One of the slots (a core each) for a relaxation or a GPAW run; first: the check's clock
        starts now, not when it began to wait (a check that waited half an hour is not overdue)."""
        self._set(run_id, rank, stage=STAGES["wait"])
        while not self.cores.acquire(timeout=0.5):
            # only before its first slot: a relaxed check goes on to GPAW (its relaxation is not thrown
            # away, and "stopped before it started" stays true)
            if first and cancelled is not None and cancelled():
                raise CheckCancelled
        if first and cancelled is not None and cancelled():     # stopped the moment a core came free
            self.cores.release()
            raise CheckCancelled
        try:
            self._set(run_id, rank, stage=STAGES[stage], **({"started": time.time()} if first else {}))
            yield
        finally:
            self.cores.release()

    def _forget(self, run_id: str, rank: int) -> None:
        with sqlite3.connect(self.store.path, timeout=30) as con:
            con.execute("DELETE FROM verifications WHERE run_id=? AND rank=? AND status='running'", (run_id, rank))

    def _run(self, run: dict, cand: dict, recipe: Recipe, timeout: float, relaxed: bool,
             cancelled: Callable[[], bool] | None) -> dict:
        run_id, rank = run["id"], cand["rank"]
        cif, relax_s = cand["cif"], None
        if relaxed:
            cif, relax_s = cand.get("relaxed_cif"), 0.0      # relaxed by the stability check: no time now
            if not cif:
                # a relaxation takes a core as GPAW does, from the same slots, across every run's
                # batch: a walk saw three checks of two runs at once on 2 cores, one relaxation
                # taking 725 s. Not held between the two: a twin waits for its twin's GPAW outside
                with self._slot(run_id, rank, "relax", cancelled, first=True):
                    try:
                        cif, info = relax_in_site_order(cand["cif"])
                    except Exception as exc:
                        self._set(run_id, rank, status="failed", finished=time.time(),
                                  error=f"{POTENTIALS[DEFAULT_POTENTIAL]} relaxation before DFT failed: "
                                        f"{type(exc).__name__}: {exc}")
                        return self.status(run_id, rank)
                relax_s = info["relax_seconds"]
        twin = self._register_relaxed(run_id, rank, cif) if relaxed else None
        line = self.cached(cif, recipe)
        if line is not None and (mismatch := rows_out_of_order(cand["cif"], line["cif"])):
            line = {"failed": mismatch}       # a cached line is checked against this candidate too
        elif line is None and twin is not None and (line := self._twin_line(run_id, rank, twin, cif, recipe)) is not None:
            pass                              # the twin's rows, in this candidate's site order
        elif line is None:
            # rows checked against the drawn candidate, relaxed cell or not
            # its first slot unless it held one to relax here (a stored relaxed cell took none)
            with self._slot(run_id, rank, "gpaw", cancelled, first=not (relaxed and not cand.get("relaxed_cif"))):
                line = dft_in_site_order(cif, recipe, timeout, material_id=f"gen:{cache_key(cif, recipe)[:20]}",
                                         order_of=cand["cif"])
            if "failed" not in line:
                self.remember(cif, recipe, line, {"verify": {"run": run_id, "rank": rank, "relaxed": relaxed}})
        if "failed" in line:
            self._set(run_id, rank, status="failed", finished=time.time(), error=line["failed"])
            return self.status(run_id, rank)
        dft = np.asarray(line["site_dos"])     # keep_cell: rows are the candidate's sites in order
        targets = run["settings"]["targets"]
        metrics = {int(s): dosmod.match_metrics(np.asarray(targets[int(k)]), dft[int(s)], run_window(run))
                   for s, k in cand["site_to_target"].items()}
        result = {"site_dos": dft, "e_fermi_eV": line["e_fermi_eV"], "energy_eV": line["energy_eV"],
                  "relaxed": relaxed, "cif": line["cif"],
                  "seconds": line["seconds"], "relax_seconds": relax_s, "recipe": line["recipe"], "dos_match": metrics}
        if line.get("twin_of") is not None:
            result["same_crystal_as"] = line["twin_of"]
        cell = to_structure(atoms_from_cif(line["cif"]))      # the cell GPAW calculated, read once
        if relaxed:     # the checked cell's symmetry: a scientist knows F-43m GaP on sight, whatever the tables hold
            result["spacegroup"] = spacegroups(cell)["0.1"]
        # and its structure type, named (walk 12: the "best new" AlP was zincblende, new only to the tables)
        result["structure_type"] = checked_type(cell)
        if relaxed and cand.get("novel"):
            # novelty was judged on the drawn cell; the curve is the relaxed cell's, which can be
            # a known compound (benchmarks.relaxed_novelty: 19 of 611 checks), judged as one relaxed
            # cell against another (evaluate.same_compound)
            hit = known_match(cell, run["settings"].get("db_url") or DB_URL,
                              skip={f"gen:{cache_key(cif, recipe)[:20]}"}, relaxed=True)
            result["relaxed_into"] = hit[0] if hit else None
            if hit:       # the volumes of two relaxations of one compound can differ (the potential's error)
                result["relaxed_into_volume_ratio"] = round(volume_ratio(cell, hit[1]), 4)
        self._set(run_id, rank, status="done", finished=time.time(), result=dumps(result))
        return self.status(run_id, rank)

    def _register_relaxed(self, run_id: str, rank: int, cif: str) -> tuple[int, list[int], str] | None:
        """Note this check's relaxed cell; (rank, site map, relaxed CIF) of an earlier check of the
        run that relaxed into the same crystal, else None."""
        cell = to_structure(atoms_from_cif(cif))
        with self._relaxed_lock:
            seen = self._relaxed.setdefault(run_id, [])
            hit = find_twin(cell, [(r, c) for r, c, _ in seen if r != rank])
            if hit is None:
                _note(seen, rank, cell, cif)
                return None
            return hit[0], hit[1], next(c for r, _, c in seen if r == hit[0])

    def _take_over(self, run_id: str, failed: int, rank: int, cif: str) -> None:
        """A twin whose check failed hands its place to the candidate that now calculates itself,
        so that a third twin waits for that one instead of failing over again."""
        cell = to_structure(atoms_from_cif(cif))
        with self._relaxed_lock:
            _note(self._relaxed.setdefault(run_id, []), rank, cell, cif, drop=(failed,))

    def _twin_line(self, run_id: str, rank: int, twin: tuple[int, list[int], str], cif: str, recipe: Recipe,
                   poll: float = 1.0) -> dict | None:
        """The twin's label line with its rows in this candidate's order (no GPAW run, and no new
        label: it is the same crystal), once the twin's check has finished; None when it failed, so
        that this candidate is calculated itself."""
        twin_rank, mapping, twin_cif = twin
        self._set(run_id, rank, stage=STAGES["twin"].format(rank=twin_rank))
        while (line := self.cached(twin_cif, recipe)) is None:
            s = self.status(run_id, twin_rank)
            if s is None or s["status"] in ("failed", "done"):
                # done between the two reads: its line is cached now
                if (line := self.cached(twin_cif, recipe)) is not None:
                    break
                self._take_over(run_id, twin_rank, rank, cif)
                return None
            time.sleep(poll)
        return {**line, "cif": cif, "site_dos": rows_of_twin(line["site_dos"], mapping).tolist(),
                "seconds": 0.0, "twin_of": twin_rank}

    def cached(self, cif: str, recipe: Recipe) -> dict | None:
        """The label line of this cell (its CIF text) and recipe, if it was calculated here before."""
        with sqlite3.connect(self.store.path, timeout=30) as con:
            r = con.execute("SELECT line FROM dft_cache WHERE key=?", (cache_key(cif, recipe),)).fetchone()
        return json.loads(r[0]) if r else None

    def remember(self, cif: str, recipe: Recipe, line: dict, source: dict) -> None:
        """Cache a calculated line and append it to the label shards, with where it came from
        (source: {'verify': {run, rank, relaxed}} or, for a target cell, {'reference': {name}})."""
        with sqlite3.connect(self.store.path, timeout=30) as con:
            con.execute("INSERT OR REPLACE INTO dft_cache (key, line, created) VALUES (?,?,?)",
                        (cache_key(cif, recipe), json.dumps(line), time.time()))
        if self.label_dir is None:
            return
        try:     # a label for the next retrain; an installed app without a label folder just skips it
            ShardWriter(self.label_dir, prefix=LABEL_PREFIX).add({**line, "source": source})
        except OSError:
            pass

    def submit(self, run_id: str, rank: int, recipe: Recipe = FAST_RECIPE, relaxed: bool = False) -> None:
        """Queue a verification in a background thread; watch it with status()."""
        self._set(run_id, rank, status="queued", started=time.time(), error=None, result=None)

        def work():
            try:
                self.run(run_id, rank, recipe, relaxed=relaxed)
            except Exception as exc:
                self._set(run_id, rank, status="failed", finished=time.time(), error=f"{type(exc).__name__}: {exc}")

        threading.Thread(target=work, daemon=True).start()
