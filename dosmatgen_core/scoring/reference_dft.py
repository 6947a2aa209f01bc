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

import sqlite3
import threading
import time

from pymatgen.core import Structure

from dosmatgen_core.candidates.runs import to_cif
from dosmatgen_core.labels.labeller import FAST_RECIPE, Recipe, supported_elements
from dosmatgen_core.scoring.verify import INTERRUPTED, STALE_S, Verifier, cache_key, dft_in_site_order
from dosmatgen_core.settings import SHIPPED

SCHEMA = """CREATE TABLE IF NOT EXISTS reference_checks (key TEXT PRIMARY KEY, material_id TEXT, name TEXT,
            status TEXT, started REAL, finished REAL, error TEXT)"""


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
        return (f"it has {len(s)} atoms, and the app calculates cells of at most {max_atoms} (a few minutes each "
                "here); `dosmatgen label --cif FILE` calculates a larger one from the command line")
    return None


def label_id(material_key: str, s: Structure) -> str:
    """The label's material id, for the app's key of a material (catalogue.Material.key): an MP
    structure keeps its own ('mp:mp-1234' → 'mp-1234'); an upload ('upload:<file>') is named by
    its file and told apart from other files of that name by its cell's hash ('upload:a.cif#1f0c9e2a')."""
    if material_key.startswith("mp:"):
        return material_key[3:]
    return f"{material_key}#{cache_key(to_cif(s), FAST_RECIPE)[:8]}"


class ReferenceChecks:
    def __init__(self, verifier: Verifier, recipe: Recipe = FAST_RECIPE, timeout: float = 3600.0):
        self.verifier = verifier
        self.recipe = recipe
        self.timeout = timeout
        self._submitting = threading.Lock()      # a cell's status read and set as one step
        with sqlite3.connect(verifier.store.path, timeout=30) as con:
            con.executescript(SCHEMA)
            # one left queued or running by a process that stopped (the app restarted) is over
            con.execute("UPDATE reference_checks SET status='failed', finished=?, error=? WHERE status IN "
                        "('queued', 'running') AND started < ?", (time.time(), INTERRUPTED, time.time() - STALE_S))

    def key(self, s: Structure) -> str:
        return cache_key(to_cif(s), self.recipe)

    def status(self, s: Structure) -> dict | None:
        """{'status': queued | running | done | failed, 'started', 'finished', 'error', 'material_id',
        'line' (the label line, when done)} of this cell, or None when it was never asked for. A cell
        calculated before (here, or as a candidate's check) is done whether or not it was asked."""
        cif = to_cif(s)
        with sqlite3.connect(self.verifier.store.path, timeout=30) as con:
            con.row_factory = sqlite3.Row
            r = con.execute("SELECT * FROM reference_checks WHERE key=?", (cache_key(cif, self.recipe),)).fetchone()
        out = dict(r) if r else None
        if out is None or out["status"] == "done":
            line = self.verifier.cached(cif, self.recipe)
            if line is not None:
                return {**(out or {"status": "done", "started": None, "finished": None, "error": None,
                                    "material_id": line.get("material_id")}), "status": "done", "line": line}
        return out

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
        label line, or failed with the reason (a refused cell, GPAW's error, a timeout)."""
        cif, key = to_cif(s), self.key(s)
        if (why := why_not(s)) is not None:
            self._set(key, material_id=material_id, name=name, status="failed", started=time.time(),
                      finished=time.time(), error=f"not calculated: {why}")
            return self.status(s)
        if self.verifier.cached(cif, self.recipe) is None:
            self._set(key, material_id=material_id, name=name, status="queued", started=time.time(),
                      finished=None, error=None)
            with self.verifier.cores:
                self._set(key, status="running", started=time.time())
                line = dft_in_site_order(cif, self.recipe, self.timeout, material_id=material_id)
            if "failed" in line:
                self._set(key, status="failed", finished=time.time(), error=line["failed"])
                return self.status(s)
            self.verifier.remember(cif, self.recipe, line, {"reference": {"name": name}})
        self._set(key, material_id=material_id, name=name, status="done", finished=time.time(), error=None)
        return self.status(s)

    def submit(self, s: Structure, material_id: str, name: str) -> bool:
        """run() in a background thread; follow it with status(). False when this cell is queued or
        running already (two pages asked at once): one calculation serves both."""
        key = self.key(s)
        with self._submitting:
            now = self.status(s)
            if now and now["status"] in ("queued", "running"):
                return False
            self._set(key, material_id=material_id, name=name, status="queued", started=time.time(),
                      finished=None, error=None)

        def work():
            try:
                self.run(s, material_id, name)
            except Exception as exc:       # recorded, never raised: the page shows the reason
                self._set(key, status="failed", finished=time.time(), error=f"{type(exc).__name__}: {exc}")

        threading.Thread(target=work, daemon=True).start()
        return True
