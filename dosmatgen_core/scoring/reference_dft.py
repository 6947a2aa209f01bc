"""GPAW on a reference structure that has no label (an uploaded cell, an unlabelled Materials
Project structure), so that the target picked on it is a DFT curve, not the predictor's.

The cell is calculated as given (the labelling recipe with keep_cell: row i is site i, checked by
verify.dft_in_site_order) through the verifier, so it shares what the candidates' checks use: the
cores (one GPAW process per core, across every check), the cache of calculated cells (table
dft_cache, by CIF text and recipe: the same file again is answered at once) and the label shards
(a DFT result is a label, the next retrain's data). Each request's state is a row of table
reference_checks in the run store, keyed like the cache, so it outlives the page that asked.
"""
from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time

from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure

from dosmatgen_core.candidates.runs import to_cif
from dosmatgen_core.labels.labeller import FAST_RECIPE, Recipe, supported_elements
from dosmatgen_core.scoring.evaluate import same_compound, volume_ratio
from dosmatgen_core.scoring.verify import INTERRUPTED, STALE_S, Verifier, cache_key, dft_in_site_order
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.structures import atoms_from_cif, to_structure

SCHEMA = """CREATE TABLE IF NOT EXISTS reference_checks (key TEXT PRIMARY KEY, material_id TEXT, name TEXT,
            status TEXT, started REAL, finished REAL, error TEXT, owner TEXT)"""
ACTIVE = ("queued", "running")
# the cells this process is calculating (every ReferenceChecks of it): a row queued or running
# whose process is gone (the app restarted, the CLI was interrupted) is over, not left to spin
_CALCULATING: set[str] = set()
_HOST = socket.gethostname()


def why_not(s: Structure, max_atoms: int = SHIPPED.max_dft_atoms) -> str | None:
    """Why the app will not calculate this cell, or None. The atom limit is the candidates' checks'
    (every label here has at most 8 atoms: GPAW took a median 45-80 s on them, a larger cell much
    longer than a page is kept open for)."""
    if len(s) == 0:
        return "the cell holds no atoms"
    missing = sorted({e.symbol for e in s.composition.elements} - supported_elements())
    if missing:
        return (f"the DFT recipe has no basis set for {', '.join(missing)} here (lanthanides and actinides "
                "are left out)")
    if len(s) > max_atoms:
        return (f"it has {len(s)} atoms, and targets are calculated here for cells of at most {max_atoms} (a few "
                "minutes each); `dosmatgen label --cif FILE` calculates a larger one as a label")
    return None


# the same cell but for its volume: lengths within 2 %, positions within 5 % (same_compound allows
# 10 % and 20 %: rock salt stretched to c/a 1.15 at its volume still matches it)
EXACT = {"ltol": 0.02, "stol": 0.05, "angle_tol": 1.0}


def labelled_copy(s: Structure, labelled: list[tuple[str, Structure]]) -> tuple[str, float, bool] | None:
    """(id, volume per atom of s over its, same shape) of the first labelled structure that is s's
    compound (evaluate.same_compound: shape and positions within its tolerances, the volume scaled
    away), else None. An upload of a labelled compound has DFT curves already, close to its own
    where the volumes agree (relaxed-match.json: 0.034 states/eV apart within RELAXED_VOLUME_TOL,
    0.177 beyond it) and the shapes do (EXACT)."""
    for mid, t in labelled:
        if t.composition.reduced_formula == s.composition.reduced_formula and same_compound(s, t):
            return mid, volume_ratio(s, t), bool(StructureMatcher(**EXACT).fit(s, t))
    return None


# the same cell as calculated, written by another file (a candidate's relaxed CIF, downloaded and
# uploaded): lengths within 0.5 %, positions within about 0.015 Å (a CIF's rounding, not a
# displacement: 0.04 Å is another cell, calculated afresh)
SAME_CELL = {"ltol": 0.005, "stol": 0.005, "angle_tol": 0.5}
SAME_VOLUME = 0.01


def same_cell_order(s: Structure, t: Structure) -> list[int] | None:
    """For each site of s, the site of t that it is, when s is the cell t as calculated (the same
    atoms, volume within SAME_VOLUME, shape and positions within SAME_CELL, no rescaling), laid
    site for site by the matcher; None when it is not. The DOS rows of t, taken in this order, are
    s's."""
    if len(s) != len(t) or s.composition != t.composition or abs(volume_ratio(s, t) - 1.0) > SAME_VOLUME:
        return None
    tagged = t.copy()
    tagged.add_site_property("index", list(range(len(t))))
    like = StructureMatcher(**SAME_CELL, primitive_cell=False, scale=False).get_s2_like_s1(s, tagged)
    if like is None:
        return None
    order = [int(x.properties["index"]) for x in like]
    return order if sorted(order) == list(range(len(t))) else None


def label_id(material_key: str, s: Structure, recipe: Recipe = FAST_RECIPE) -> str:
    """The label's material id, for the app's key of a material (catalogue.Material.key) and its
    cell: 'upload:a.cif#1f0c9e2a' (the file, told apart from other files of that name by its cell's
    hash), 'mp:mp-1234#…' (an MP structure calculated here as given: the labeller's own 'mp-1234'
    line, of the Niggli cell, stays a line of its own)."""
    return f"{material_key}#{cache_key(to_cif(s), recipe)[:8]}"


def _owner() -> str:
    return f"{_HOST}:{os.getpid()}"


def _gone(owner: str | None, key: str) -> bool:
    """Whether the process that queued this cell no longer calculates it: this process when the
    key is not among its calculations, another of this host when it has exited; a row of another
    host is taken at its word (its age still ends it: STALE_S)."""
    if not owner:
        return True
    host, _, pid = owner.rpartition(":")
    if host != _HOST or not pid.isdigit():      # another host's row, or an owner not written here
        return False
    if int(pid) == os.getpid():
        return key not in _CALCULATING
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class ReferenceChecks:
    def __init__(self, verifier: Verifier, recipe: Recipe = FAST_RECIPE, timeout: float = 3600.0):
        self.verifier = verifier
        self.recipe = recipe
        self.timeout = timeout
        self._submitting = threading.Lock()      # a cell's status read and set as one step
        self._cells: dict[str, tuple[str, int, str]] = {}      # _calculated_cells
        self._cells_seen = 0         # the last dft_cache rowid read into it
        self._cells_lock = threading.Lock()
        with sqlite3.connect(verifier.store.path, timeout=30) as con:
            con.executescript(SCHEMA)
            if "owner" not in {r[1] for r in con.execute("PRAGMA table_info(reference_checks)")}:
                con.execute("ALTER TABLE reference_checks ADD COLUMN owner TEXT")
            con.execute("UPDATE reference_checks SET status='failed', finished=?, error=? WHERE status IN "
                        "('queued', 'running') AND started < ?", (time.time(), INTERRUPTED, time.time() - STALE_S))

    def key(self, s: Structure) -> str:
        return cache_key(to_cif(s), self.recipe)

    def _done_line(self, s: Structure, cif: str) -> dict | None:
        """The label line of this cell calculated here: by its CIF text, else (same_cell_order) a
        cell it is, written otherwise, its rows put in s's order (walk 18 uploaded a checked
        candidate's relaxed CIF, read "predicted", and GPAW ran again)."""
        line = self.verifier.cached(cif, self.recipe)
        if line is not None:
            return line
        formula = s.composition.reduced_formula
        for key, other in self._calculated_cells().items():
            if other[0] != formula or other[1] != len(s):
                continue
            try:
                order = same_cell_order(s, to_structure(atoms_from_cif(other[2])))
            except Exception:           # a stored cell that cannot be read or matched is not this one
                continue
            if order is not None:
                with sqlite3.connect(self.verifier.store.path, timeout=30) as con:
                    (text,) = con.execute("SELECT line FROM dft_cache WHERE key=?", (key,)).fetchone()
                line = json.loads(text)
                return {**line, "site_dos": [line["site_dos"][j] for j in order], "cif": cif}
        return None

    def _calculated_cells(self) -> dict[str, tuple[str, int, str]]:
        """key → (reduced formula, atoms, CIF) of every cell calculated here with this recipe
        (dft_cache), read once and then only the rows written since (by rowid: a row's `created` is
        taken before its commit, which may wait on the lock): its lines are large, their formulas and
        CIFs small."""
        with self._cells_lock, sqlite3.connect(self.verifier.store.path, timeout=30) as con:
            rows = con.execute("SELECT rowid, key, json_extract(line, '$.formula'), "
                               "json_array_length(line, '$.site_dos'), json_extract(line, '$.cif') FROM dft_cache "
                               "WHERE rowid > ? AND json_extract(line, '$.recipe.variant.name') = ?",
                               (self._cells_seen, self.recipe.name)).fetchall()
            for rowid, key, formula, n, cif in rows:
                try:
                    self._cells[key] = (Composition(formula).reduced_formula, int(n), str(cif))
                except (ValueError, TypeError):      # a line without its formula, rows or cell cannot be matched
                    pass
                self._cells_seen = max(self._cells_seen, int(rowid))
            return dict(self._cells)

    def status(self, s: Structure) -> dict | None:
        """{'status': queued | running | done | failed, 'started', 'finished', 'error', 'material_id',
        'line' (the label line, when done)} of this cell, or None when it was never asked for. A cell
        calculated before (here, or as a candidate's check) is done whether or not it was asked, under
        the id its label has; one whose process stopped before it finished has failed (INTERRUPTED)."""
        cif = to_cif(s)
        key = cache_key(cif, self.recipe)
        line = self._done_line(s, cif)
        with sqlite3.connect(self.verifier.store.path, timeout=30) as con:
            con.row_factory = sqlite3.Row
            r = con.execute("SELECT * FROM reference_checks WHERE key=?", (key,)).fetchone()
        out = dict(r) if r else None
        if line is not None:
            base = out or {"key": key, "name": None, "started": None, "finished": None, "owner": None}
            return {**base, "status": "done", "error": None, "material_id": line.get("material_id"), "line": line}
        if out and out["status"] in ACTIVE and _gone(out.get("owner"), key):
            self._set(key, status="failed", finished=time.time(), error=INTERRUPTED)
            out.update(status="failed", finished=time.time(), error=INTERRUPTED)
        return out

    def calculated(self, cells: dict[str, Structure]) -> set[str]:
        """Which of these cells (name → structure) have a calculated line here, in one query: a
        list of materials marks those its page shows DFT for."""
        keys: dict[str, list[str]] = {}
        for name, s in cells.items():          # two entries of one cell text share its line
            keys.setdefault(self.key(s), []).append(name)
        if not keys:
            return set()
        with sqlite3.connect(self.verifier.store.path, timeout=30) as con:
            hits = con.execute(f"SELECT key FROM dft_cache WHERE key IN ({', '.join('?' * len(keys))})",
                               list(keys)).fetchall()
        return {name for (k,) in hits for name in keys[k]}

    def all(self) -> list[dict]:
        """Every cell asked for, newest first: key, material_id, name, status, started, finished, error."""
        with sqlite3.connect(self.verifier.store.path, timeout=30) as con:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM reference_checks ORDER BY started DESC")]

    def _set(self, key: str, **kw) -> None:
        with sqlite3.connect(self.verifier.store.path, timeout=30) as con:
            cols = ", ".join(kw)
            con.execute(f"INSERT INTO reference_checks (key, {cols}) VALUES (?{', ?' * len(kw)}) "
                        f"ON CONFLICT(key) DO UPDATE SET " + ", ".join(f"{k}=excluded.{k}" for k in kw),
                        (key, *kw.values()))

    def run(self, s: Structure, material_id: str, name: str) -> dict:
        """Calculate the cell now (waiting for a free core) and return its status(): done with the
        label line, or failed with the reason (a refused cell, GPAW's error, a timeout). Stopped on
        the way (Ctrl-C), the row says so before the stop goes on."""
        cif, key = to_cif(s), self.key(s)
        if (why := why_not(s)) is not None:
            self._set(key, material_id=material_id, name=name, status="failed", started=time.time(),
                      finished=time.time(), error=f"not calculated: {why}", owner=_owner())
            return self.status(s)
        if self._done_line(s, cif) is not None:
            return self.status(s)              # calculated before: under the id its label has
        _CALCULATING.add(key)
        try:
            self._set(key, material_id=material_id, name=name, status="queued", started=time.time(),
                      finished=None, error=None, owner=_owner())
            with self.verifier.cores:
                self._set(key, status="running", started=time.time())
                line = dft_in_site_order(cif, self.recipe, self.timeout, material_id=material_id)
            if "failed" in line:
                self._set(key, status="failed", finished=time.time(), error=line["failed"])
                return self.status(s)
            self.verifier.remember(cif, self.recipe, line, {"reference": {"name": name}})
            self._set(key, status="done", finished=time.time(), error=None)
        except BaseException as exc:
            self._set(key, status="failed", finished=time.time(),
                      error=f"{INTERRUPTED} ({type(exc).__name__}: {exc})" if not isinstance(exc, Exception)
                      else f"{type(exc).__name__}: {exc}")
            raise
        finally:
            _CALCULATING.discard(key)
        return self.status(s)

    def submit(self, s: Structure, material_id: str, name: str) -> bool:
        """run() in a background thread; follow it with status(). False when this cell is queued or
        running already (two pages asked at once): one calculation serves both."""
        key = self.key(s)
        with self._submitting:
            now = self.status(s)
            if now and now["status"] in ACTIVE:
                return False
            _CALCULATING.add(key)         # queued by this process from now on, not only once run() starts
            self._set(key, material_id=material_id, name=name, status="queued", started=time.time(),
                      finished=None, error=None, owner=_owner())

        def work():
            try:
                self.run(s, material_id, name)
            except Exception:             # run() recorded the reason; the page shows it
                pass
            finally:
                _CALCULATING.discard(key)

        threading.Thread(target=work, daemon=True).start()
        return True
