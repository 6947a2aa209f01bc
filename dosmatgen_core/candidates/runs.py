"""Persisted generation runs (SQLite) and their exports.

A run keeps everything needed to repeat it exactly (settings, seed, device, checkpoint hashes) and
everything it produced (candidates as P1 CIF, the map from conditioned sites to target rows,
scores, the unconditional baseline). Exports: CIF (symmetrised and P1), POSCAR, extxyz, DOS CSV,
run JSON.
"""
from __future__ import annotations

import functools
import io
import json
import os
import socket
import sqlite3
import tempfile
import time
import uuid
from contextlib import closing, contextmanager
from pathlib import Path

import numpy as np
from ase.io import write
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.io.cif import CifWriter
from pymatgen.io.vasp import Poscar
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from dosmatgen_core import dos as dosmod
from dosmatgen_core.checks import UserError, store_fallback_dir
from dosmatgen_core.scoring.evaluate import PRESSED
from dosmatgen_core.structures import read_structure

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, created REAL, status TEXT, title TEXT,
                                 settings TEXT, summary TEXT);
CREATE TABLE IF NOT EXISTS candidates (run_id TEXT, idx INTEGER, kind TEXT, data TEXT,
                                       PRIMARY KEY (run_id, kind, idx));
"""
# added later: stores made before them gain them when opened
EXTRA_COLUMNS = {"pid": "INTEGER", "host": "TEXT", "updated": "REAL", "error": "TEXT"}
STATUSES = ("running", "done", "failed", "cancelled")   # as stored; list() and get() add "interrupted"
BUSY_MS = 30_000


class StoreError(UserError):
    """The run store cannot be opened or written (read-only, full disk, corrupt file)."""


def _json_default(o):
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.bool_):
        return bool(o)
    raise TypeError(type(o))


def dumps(o) -> str:
    return json.dumps(o, default=_json_default)


def _alive(pid) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # someone else's process with that id: it exists
        return True
    return True


def _status(row) -> str:
    """'interrupted' for a run still marked running whose process on this host is gone."""
    if row["status"] == "running" and row["host"] == socket.gethostname() and not _alive(row["pid"]):
        return "interrupted"
    return row["status"]


class RunStore:
    """SQLite store of runs. WAL mode and a busy timeout, so the app, CLI runs and readers can
    share one file; every failure to open or write it is a StoreError that names the file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise StoreError(f"run store {self.path} is a directory", f"give a file, e.g. {self.path / 'runs.db'}")
        with self._writing("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with closing(self._con()) as con, con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)
                have = {r[1] for r in con.execute("PRAGMA table_info(runs)")}
                for col, typ in EXTRA_COLUMNS.items():
                    if col not in have:
                        con.execute(f"ALTER TABLE runs ADD COLUMN {col} {typ}")

    def _con(self):
        con = sqlite3.connect(self.path, timeout=BUSY_MS / 1000)
        con.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        con.row_factory = sqlite3.Row
        return con

    @contextmanager
    def _writing(self, what: str):
        try:
            yield
        except (sqlite3.Error, OSError) as exc:
            msg = str(exc).strip() or type(exc).__name__
            raise StoreError(f"cannot {what} the run store {self.path} ({msg})",
                             "free disk space, make it writable, or choose another file with --runs PATH") from exc

    def _write(self, what: str, fn) -> None:
        with self._writing(what), closing(self._con()) as con, con:
            fn(con)

    # ---- a run as it goes ----------------------------------------------------------------------
    def start(self, run: dict) -> str:
        """Store a run that has begun (status running, this process's pid and host)."""
        rid = run.get("id") or uuid.uuid4().hex[:10]
        run.update(id=rid, status="running")
        now = time.time()
        self._write("write", lambda con: con.execute(
            "INSERT INTO runs (id, created, status, title, settings, summary, pid, host, updated) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (rid, run.get("created", now), "running", run.get("title", ""), dumps(run["settings"]),
             dumps(run.get("summary", {})), os.getpid(), socket.gethostname(), now)))
        return rid

    def append(self, rid: str, kind: str, records: list[dict]) -> None:
        """Add scored candidates (each with its 'index') to a running run."""
        def fn(con):
            for c in records:
                con.execute("INSERT OR REPLACE INTO candidates VALUES (?,?,?,?)", (rid, int(c["index"]), kind, dumps(c)))
            con.execute("UPDATE runs SET updated=? WHERE id=?", (time.time(), rid))
        self._write("write", fn)

    def finish(self, run: dict, status: str, error: str | None = None) -> str:
        """The run's final state: its candidates in rank order, its summary and its status."""
        if status not in STATUSES[1:]:
            raise ValueError(f"a run ends done, failed or cancelled, not {status!r}")
        run["status"] = status
        if error:
            run["error"] = error
        return self.save(run)

    def save(self, run: dict) -> str:
        """Insert or replace a whole run and its candidates in one transaction (all or nothing)."""
        rid = run.get("id") or uuid.uuid4().hex[:10]
        run["id"] = rid

        def fn(con):
            con.execute("INSERT OR REPLACE INTO runs (id, created, status, title, settings, summary, pid, host, "
                        "updated, error) VALUES (?,?,?,?,?,?,?,?,?,?)",
                        (rid, run.get("created", time.time()), run.get("status", "done"), run.get("title", ""),
                         dumps(run["settings"]), dumps(run.get("summary", {})), os.getpid(),
                         socket.gethostname(), time.time(), run.get("error")))
            con.execute("DELETE FROM candidates WHERE run_id=?", (rid,))
            for kind in ("candidates", "baseline"):
                for i, c in enumerate(run.get(kind, [])):
                    con.execute("INSERT INTO candidates VALUES (?,?,?,?)", (rid, i, kind, dumps(c)))
        self._write("write", fn)
        return rid

    def rescue(self, run: dict) -> Path:
        """Write a run that the store could not take to a JSON file beside the store (or in the
        temp dir when that folder is read-only), and say where."""
        rid = run.get("id") or uuid.uuid4().hex[:10]
        run["id"] = rid
        for folder in (store_fallback_dir(self.path), Path(tempfile.gettempdir())):
            out = folder / f"{self.path.stem}-run-{rid}.json"
            try:
                tmp = out.with_suffix(".json.tmp")
                tmp.write_text(run_json(run))
                tmp.replace(out)
                return out
            except OSError:
                continue
        raise StoreError(f"run {rid} could not be stored in {self.path} nor written as JSON",
                         "free disk space and run it again")

    # ---- reading -------------------------------------------------------------------------------
    def _read(self, fn):
        with self._writing("read"), closing(self._con()) as con:
            return fn(con)

    def list(self) -> list[dict]:
        """Every run, newest first: id, created, status (with 'interrupted'), title, mode, window
        (the energies its target is compared on; None: the whole grid), settings (without the
        target curves: runs of one target differ in them), summary, how many candidates it holds,
        and how many of its valid ones press two atoms together (evaluate.pressed)."""
        def fn(con):
            rows = con.execute("SELECT id, created, status, title, summary, pid, host, "
                               "json_extract(settings, '$.mode') AS mode, json_extract(settings, '$.window') AS window, "
                               "json_remove(settings, '$.targets') AS settings, "
                               "(SELECT COUNT(*) FROM candidates c WHERE c.run_id = runs.id AND c.kind='candidates') "
                               "AS n, "
                               # evaluate.pressed, for the Runs table's count of valid cells with no atoms pressed
                               "(SELECT COUNT(*) FROM candidates c WHERE c.run_id = runs.id AND c.kind='candidates' "
                               "AND json_extract(c.data, '$.structurally_valid') "
                               "AND json_extract(c.data, '$.shortest_contact.ratio') < ?) AS pressed "
                               "FROM runs ORDER BY created DESC", (PRESSED,)).fetchall()
            return [{"id": r["id"], "created": r["created"], "status": _status(r), "title": r["title"],
                     "mode": r["mode"], "window": json.loads(r["window"]) if r["window"] else None,
                     "settings": json.loads(r["settings"] or "{}"),
                     "summary": json.loads(r["summary"] or "{}"), "candidates": r["n"], "pressed": r["pressed"]}
                    for r in rows]
        return self._read(fn)

    def ids(self) -> list[str]:
        return self._read(lambda con: [r[0] for r in con.execute("SELECT id FROM runs")])

    def get(self, rid: str) -> dict:
        def fn(con):
            r = con.execute("SELECT * FROM runs WHERE id=?", (rid,)).fetchone()
            if r is None:
                raise KeyError(f"no run with id '{rid}'")
            cands = con.execute("SELECT kind, idx, data FROM candidates WHERE run_id=? ORDER BY kind, idx",
                                (rid,)).fetchall()
            return r, cands
        r, cands = self._read(fn)
        run = {"id": r["id"], "created": r["created"], "status": _status(r), "title": r["title"],
               "settings": json.loads(r["settings"]), "summary": json.loads(r["summary"] or "{}"),
               "candidates": [], "baseline": []}
        if r["error"]:
            run["error"] = r["error"]
        for c in cands:
            run[c["kind"]].append(json.loads(c["data"]))
        return run

    def delete(self, rid: str) -> None:
        def fn(con):
            con.execute("DELETE FROM candidates WHERE run_id=?", (rid,))
            con.execute("DELETE FROM runs WHERE id=?", (rid,))
        self._write("write", fn)


# ---- exports -----------------------------------------------------------------------------------

def structure_of(candidate: dict) -> Structure:
    """The candidate in its own site order (site i is the atom whose DOS rows say i). Read strictly:
    a stored CIF whose order cannot be kept is refused by name rather than scored on another atom's
    rows (3347 stored candidates of the walks and the truth bench all read strictly)."""
    return read_structure(candidate["cif"], "cif", source=f"candidate {candidate.get('rank', '')}".strip(),
                          strict_order=True)


def to_cif(s: Structure, symmetrised: bool = False, symprec: float = 0.1) -> str:
    if symmetrised:
        try:
            return str(CifWriter(s, symprec=symprec))
        except Exception:
            pass  # no symmetry found at this tolerance: P1 is the honest answer
    return str(CifWriter(s))


# a downloaded CIF says how its atoms are ordered: the DOS CSV's target_site2 and the app's "site 2"
# are the third atom of the P1 file, but pymatgen's CIF reader regroups atoms by element (a walk's
# pymatgen user took S for the conditioned O); it keeps the labels, so each label carries its site
ORDER_NOTE = ("# Atoms in the candidate's site order: site i in the app and in its DOS CSV is atom i below,\n"
              "# labelled with its element and i (O2: site 2). pymatgen's CIF reader regroups atoms by element\n"
              "# but keeps the labels (structure[k].label); ase.io.read keeps this order.\n")
SYMMETRISED_NOTE = ("# Symmetrised: one atom per set of symmetry-equivalent sites, in the conventional cell. Each\n"
                    "# label names the app's site at that very position (O2: site 2; the site numbers of the app\n"
                    "# and of its DOS CSV are the P1 CIF's atoms); its copies by symmetry are other sites.\n")
# where a label could not be tied to a site (no position within SITE_MATCH_A), the file says so
SYMMETRISED_UNNUMBERED_NOTE = ("# Symmetrised: atoms grouped by symmetry, not in the candidate's site order; the labels are\n"
                               "# not site numbers: those of the app and of its DOS CSV are the P1 CIF's atoms.\n")
SITE_MATCH_A = 0.25     # symmetrising moves an atom by up to the tolerance (0.1 Å): a little more


def site_labelled(s: Structure) -> Structure:
    """A copy whose atoms are labelled by element and site number (O2: site 2), whatever labels the
    cell carried from the file it came from."""
    out = s.copy()
    for i, site in enumerate(out):
        site.label = f"{site.specie.symbol}{i}"
    return out


def symmetrised_site_labels(s: Structure, symprec: float = 0.1) -> str | None:
    """s's symmetrised CIF (to_cif) with each atom labelled by the site of s at its position ('Cl0'),
    where CifWriter numbers them by element group ('Na0', 'Cl1': a reader took Na0 for site 0); None
    when a written atom is at no site of s of its element (then its labels are no site numbers).
    spglib's standard cell is x_std = P·x + p (mod 1) of s's fractional coordinates."""
    text = to_cif(s, symmetrised=True, symprec=symprec)
    try:
        data = SpacegroupAnalyzer(s, symprec).get_symmetry_dataset()
        back = np.linalg.inv(np.asarray(data.transformation_matrix, float))
        shift = np.asarray(data.origin_shift, float)
    except Exception:
        return None
    lines = text.splitlines()
    try:
        first = lines.index(" _atom_site_occupancy") + 1     # the atom rows follow the loop's last tag
    except ValueError:
        return None
    symbols = np.array([site.specie.symbol for site in s])
    for k in range(first, len(lines)):
        parts = lines[k].split()
        if len(parts) != 7:
            break
        symbol, label, *_ = parts
        d = (back @ (np.array(parts[3:6], float) - shift)) - s.frac_coords
        d -= np.round(d)
        dist = np.where(symbols == symbol, np.linalg.norm(s.lattice.get_cartesian_coords(d), axis=1), np.inf)
        j = int(np.argmin(dist))
        if dist[j] > SITE_MATCH_A:
            return None
        lines[k] = lines[k].replace(f" {label} ", f" {symbol}{j} ", 1)
    return "\n".join(lines) + "\n"


def cif_file(s: Structure | str, symmetrised: bool = False) -> str:
    """A candidate's CIF as downloaded, under a note on its atom order: to_cif's text, or a stored
    CIF read in its own order; in P1 each atom labelled with its site (site_labelled), symmetrised
    each atom labelled with the site at its position (symmetrised_site_labels)."""
    if symmetrised:
        if isinstance(s, str):
            return SYMMETRISED_UNNUMBERED_NOTE + s
        text = symmetrised_site_labels(s)
        return SYMMETRISED_NOTE + text if text else SYMMETRISED_UNNUMBERED_NOTE + to_cif(s, symmetrised=True)
    return _labelled_cif_text(s) if isinstance(s, str) else ORDER_NOTE + to_cif(site_labelled(s))


@functools.lru_cache(maxsize=512)
def _labelled_cif_text(text: str) -> str:
    # each card offers its CIF at every redraw of the page: read and written again only for new text
    return ORDER_NOTE + to_cif(site_labelled(read_structure(text, source="the stored CIF")))


def to_poscar(s: Structure, comment: str = "DOSMatGen candidate") -> str:
    return Poscar(s, comment=comment).get_str()


def to_extxyz(s: Structure) -> str:
    buf = io.StringIO()
    write(buf, AseAtomsAdaptor.get_atoms(s), format="extxyz")
    return buf.getvalue()


def dos_csv_note(run: dict, candidate: dict) -> str:
    """The DOS CSV's first line (a comment the readers skip): whose target it holds and whose site
    numbers its columns use (walk 18 read target_site2 as the target material's site 2)."""
    title = " ".join(str(run.get("title") or "no target").split())
    return (f"run {run.get('id', '?')} · {title}; site<i> in a column's name is atom i of candidate "
            f"#{candidate.get('rank', '?')} (its CIFs keep this order)")


def dos_csv(candidate: dict, targets: list, window=None, dft=None, calibrated: bool = False,
            note: str | None = None) -> str:
    """E − E_F, then per conditioned site: its target and predicted DOS (states/eV), the predicted
    curve's ±1σ where the run stored it, and its DFT DOS when a check has finished (dft: the check's
    site rows). calibrated: the run's spreads are the band calibrated on DFT (its settings'
    spread_calibration), named predicted_band_halfwidth_*; else the ensemble's raw standard deviation,
    predicted_sd_* (a file must not call one the other). A target known on a window only (the
    run's window) is empty (nan) outside it: the file it came from said nothing there. note: a
    first line, written as a comment (dos_csv_note)."""
    cols, head = [dosmod.GRID], ["energy_minus_ef_eV"]
    unit = dosmod.CURVE_UNIT       # in each curve's name, as the energy's is in its own
    pred, spread = candidate.get("predicted_dos"), candidate.get("predicted_spread")
    for site, row in sorted(candidate.get("site_to_target", {}).items(), key=lambda kv: int(kv[0])):
        cols.append(dosmod.only_in_window(targets[int(row)], window))
        head.append(f"target_site{site}{unit}")
        if pred is not None:
            cols.append(np.asarray(pred)[int(site)])
            head.append(f"predicted_site{site}{unit}")
        if spread is not None:
            cols.append(np.asarray(spread)[int(site)])
            head.append(f"predicted_{'band_halfwidth' if calibrated else 'sd'}_site{site}{unit}")
        if dft is not None:
            cols.append(np.asarray(dft, float)[int(site)])
            head.append(f"dft_site{site}{unit}")
    buf = io.StringIO()
    if note:
        buf.write("# " + " ".join(note.split()) + "\n")
    buf.write(",".join(head) + "\n")
    np.savetxt(buf, np.column_stack(cols), delimiter=",", fmt="%.6g")
    return buf.getvalue()


def run_json(run: dict) -> str:
    return json.dumps(run, default=_json_default, indent=1)
