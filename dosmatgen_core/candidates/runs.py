"""Persisted generation runs (SQLite) and their exports.

A run keeps everything needed to repeat it exactly (settings, seed, device, checkpoint hashes) and
everything it produced (candidates as P1 CIF, the map from conditioned sites to target rows,
scores, the unconditional baseline). Exports: CIF (symmetrised and P1), POSCAR, extxyz, DOS CSV,
run JSON.
"""
from __future__ import annotations

import io
import json
import sqlite3
import time
import uuid
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from dosmatgen_core import dos as dosmod
from dosmatgen_core.structures import read_structure

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, created REAL, status TEXT, title TEXT,
                                 settings TEXT, summary TEXT);
CREATE TABLE IF NOT EXISTS candidates (run_id TEXT, idx INTEGER, kind TEXT, data TEXT,
                                       PRIMARY KEY (run_id, kind, idx));
"""


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


class RunStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._con() as con:
            con.executescript(SCHEMA)

    def _con(self):
        con = sqlite3.connect(self.path, timeout=30)
        con.row_factory = sqlite3.Row
        return con

    def save(self, run: dict) -> str:
        """Insert a finished run and its candidates in one transaction (all or nothing)."""
        rid = run.get("id") or uuid.uuid4().hex[:10]
        run["id"] = rid
        with self._con() as con:
            con.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?)",
                        (rid, run.get("created", time.time()), run.get("status", "done"), run.get("title", ""),
                         dumps(run["settings"]), dumps(run.get("summary", {}))))
            con.execute("DELETE FROM candidates WHERE run_id=?", (rid,))
            for kind in ("candidates", "baseline"):
                for i, c in enumerate(run.get(kind, [])):
                    con.execute("INSERT INTO candidates VALUES (?,?,?,?)", (rid, i, kind, dumps(c)))
        return rid

    def list(self) -> list[dict]:
        with self._con() as con:
            rows = con.execute("SELECT id, created, status, title, summary FROM runs ORDER BY created DESC").fetchall()
        return [{"id": r["id"], "created": r["created"], "status": r["status"], "title": r["title"],
                 "summary": json.loads(r["summary"])} for r in rows]

    def get(self, rid: str) -> dict:
        with self._con() as con:
            r = con.execute("SELECT * FROM runs WHERE id=?", (rid,)).fetchone()
            if r is None:
                raise KeyError(f"no run with id '{rid}'")
            cands = con.execute("SELECT kind, idx, data FROM candidates WHERE run_id=? ORDER BY kind, idx", (rid,)).fetchall()
        run = {"id": r["id"], "created": r["created"], "status": r["status"], "title": r["title"],
               "settings": json.loads(r["settings"]), "summary": json.loads(r["summary"]),
               "candidates": [], "baseline": []}
        for c in cands:
            run[c["kind"]].append(json.loads(c["data"]))
        return run

    def delete(self, rid: str) -> None:
        with self._con() as con:
            con.execute("DELETE FROM candidates WHERE run_id=?", (rid,))
            con.execute("DELETE FROM runs WHERE id=?", (rid,))


# ---- exports -----------------------------------------------------------------------------------

def structure_of(candidate: dict) -> Structure:
    """The candidate in its own site order (site i is the atom whose DOS rows say i)."""
    return read_structure(candidate["cif"], "cif", source=f"candidate {candidate.get('rank', '')}".strip())


def to_cif(s: Structure, symmetrised: bool = False, symprec: float = 0.1) -> str:
    from pymatgen.io.cif import CifWriter
    if symmetrised:
        try:
            return str(CifWriter(s, symprec=symprec))
        except Exception:
            pass  # no symmetry found at this tolerance: P1 is the honest answer
    return str(CifWriter(s))


def to_poscar(s: Structure, comment: str = "DOSMatGen candidate") -> str:
    from pymatgen.io.vasp import Poscar
    return Poscar(s, comment=comment).get_str()


def to_extxyz(s: Structure) -> str:
    from ase.io import write
    from pymatgen.io.ase import AseAtomsAdaptor
    buf = io.StringIO()
    write(buf, AseAtomsAdaptor.get_atoms(s), format="extxyz")
    return buf.getvalue()


def dos_csv(candidate: dict, targets: list) -> str:
    """E − E_F, then per conditioned site: its target and predicted DOS (states/eV)."""
    cols, head = [dosmod.GRID], ["energy_minus_ef_eV"]
    pred = candidate.get("predicted_dos")
    for site, row in sorted(candidate.get("site_to_target", {}).items(), key=lambda kv: int(kv[0])):
        cols.append(np.asarray(targets[int(row)]))
        head.append(f"target_site{site}")
        if pred is not None:
            cols.append(np.asarray(pred)[int(site)])
            head.append(f"predicted_site{site}")
    buf = io.StringIO()
    buf.write(",".join(head) + "\n")
    np.savetxt(buf, np.column_stack(cols), delimiter=",", fmt="%.6g")
    return buf.getvalue()


def run_json(run: dict) -> str:
    return json.dumps(run, default=_json_default, indent=1)
