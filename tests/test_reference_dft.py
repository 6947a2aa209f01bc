"""GPAW on a reference cell without a label (an upload, an unlabelled MP structure): rows in the
cell's own order, cached by the cell, kept as a label, and refused with a reason where the app
will not calculate."""
import os
import sqlite3
import subprocess
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen_core import dos
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.labels.labeller import ShardWriter, iter_label_lines
from dosmatgen_core.scoring import reference_dft
from dosmatgen_core.scoring.reference_dft import ReferenceChecks, label_id, why_not
from dosmatgen_core.scoring.verify import INTERRUPTED, Verifier

# rock salt written Cl first: pymatgen's CIF reader would put Na first
CL_NA = Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), ["Cl", "Na"],
                  [[0.5, 0.5, 0.5], [0, 0, 0]])


def _checks(tmp_path, **kw):
    return ReferenceChecks(Verifier(RunStore(tmp_path / "runs.db"), label_dir=tmp_path / "labels", workers=1), **kw)


def test_the_app_calculates_only_what_gpaw_can_here():
    assert why_not(CL_NA) is None
    assert "no basis set for Pu" in why_not(Structure(Lattice.cubic(3.5), ["Pu"], [[0, 0, 0]]))
    big = CL_NA.copy()
    big.make_supercell([2, 2, 2])
    assert "16 atoms" in why_not(big) and "dosmatgen label --cif" in why_not(big)
    assert why_not(Structure(Lattice.cubic(3.0), [], [])) == "the cell holds no atoms"


def test_label_ids_tell_files_of_one_name_apart_and_keep_mp_ids():
    other = CL_NA.copy()
    other.scale_lattice(CL_NA.volume * 1.05)
    a, b = label_id("upload:POSCAR", CL_NA), label_id("upload:POSCAR", other)
    assert a.startswith("upload:POSCAR#") and a != b and a == label_id("upload:POSCAR", CL_NA.copy())
    # an MP structure calculated as given is a line of its own beside the labeller's 'mp-22862'
    assert label_id("mp:mp-22862", CL_NA).startswith("mp:mp-22862#")


def test_a_refused_cell_fails_with_its_reason_and_writes_no_label(tmp_path):
    checks = _checks(tmp_path)
    pu = Structure(Lattice.cubic(3.5), ["Pu"], [[0, 0, 0]])
    assert checks.status(pu) is None
    out = checks.run(pu, "upload:pu.cif#0", "Pu · pu.cif")
    assert out["status"] == "failed" and "no basis set for Pu" in out["error"]
    assert not (tmp_path / "labels").exists() or not list((tmp_path / "labels").glob("*.jsonl*"))


def test_a_check_cut_off_with_its_process_reads_as_interrupted(tmp_path, monkeypatch):
    """A row left queued or running by a process that no longer calculates it (the app restarted,
    the CLI was stopped) is over at the next read, not spinning for hours; one whose process is
    alive is left to it."""
    checks = _checks(tmp_path)
    key = checks.key(CL_NA)
    checks._set(key, material_id="m", name="n", status="running", started=time.time() - 4 * 3600)
    assert _checks(tmp_path).status(CL_NA)["error"] == INTERRUPTED        # no owner, hours old
    for owner, over in ((f"{reference_dft._HOST}:{os.getpid()}", True),     # this process, not calculating it
                        (f"{reference_dft._HOST}:{_dead_pid()}", True),     # a process that has exited
                        (f"{reference_dft._HOST}:{os.getppid()}", False),   # another one, alive
                        ("another-host:1", False)):                         # another host: its word
        checks._set(key, status="running", started=time.time(), error=None, owner=owner)
        s = checks.status(CL_NA)
        assert (s["status"], s["error"]) == (("failed", INTERRUPTED) if over else ("running", None)), owner
    # a calculation stopped on the way (Ctrl-C) says so before the stop goes on
    monkeypatch.setattr(reference_dft, "dft_in_site_order", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checks.run(CL_NA, "upload:nacl.cif#1", "NaCl")
    s = checks.status(CL_NA)
    assert s["status"] == "failed" and s["error"].startswith(INTERRUPTED)


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_cell_calculated_before_is_answered_from_the_cache(tmp_path, monkeypatch):
    """A cached line (here: the verifier's, as a candidate's check would leave it) is the answer,
    with no GPAW run; a cell of other coordinates is not."""
    v = Verifier(RunStore(tmp_path / "runs.db"), label_dir=None, workers=1)
    checks = ReferenceChecks(v)
    rows = np.arange(2 * dos.NPTS, dtype=float).reshape(2, dos.NPTS)
    cif = reference_dft.to_cif(CL_NA)
    v.remember(cif, checks.recipe, {"material_id": "gen:x", "formula": "ClNa", "cif": cif, "site_dos": rows.tolist(),
                                    "seconds": 3.0, "recipe": {"variant": {"name": checks.recipe.name}}},
               {"verify": {}})
    monkeypatch.setattr(reference_dft, "dft_in_site_order", lambda *a, **k: pytest.fail("GPAW ran again"))
    assert checks.status(CL_NA)["status"] == "done"             # never asked, yet calculated
    out = checks.run(CL_NA, "upload:nacl.cif#1", "NaCl")
    assert out["status"] == "done" and np.array_equal(out["line"]["site_dos"], rows)
    assert out["material_id"] == "gen:x"        # the id its label has, not the one asked with
    moved = CL_NA.copy()
    moved.translate_sites([1], [0.01, 0, 0])
    assert checks.status(moved) is None
    # the same cell written by another file (walk 18 uploaded a checked candidate's relaxed CIF and
    # GPAW ran again): Na first, a CIF's rounding, a shifted origin; its rows come in its own order
    rewritten = Structure(CL_NA.lattice, ["Na", "Cl"], [[0.2, 0.1, 0.0000003], [0.7, 0.6, 0.5]])
    done = checks.status(rewritten)
    assert done["status"] == "done" and np.array_equal(done["line"]["site_dos"], rows[::-1])
    assert checks.run(rewritten, "upload:b.cif#1", "NaCl")["line"]["site_dos"] == rows[::-1].tolist()
    assert reference_dft.same_cell_order(rewritten, CL_NA) == [1, 0]
    # three sites listed in a cycle (a mapping that is not its own inverse): row i is the site written i-th
    t = Structure(Lattice.cubic(4.2), ["Na", "Cl", "K"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0]])
    s3 = Structure(t.lattice, ["K", "Na", "Cl"], [[0.5, 0, 0], [0, 0, 0], [0.5, 0.5, 0.5]])
    assert reference_dft.same_cell_order(s3, t) == [2, 0, 1]
    rows3 = np.arange(3 * dos.NPTS, dtype=float).reshape(3, dos.NPTS)
    cif3 = reference_dft.to_cif(t)
    v.remember(cif3, checks.recipe, {"material_id": "gen:y", "formula": "NaClK", "cif": cif3, "site_dos": rows3.tolist(),
                                     "recipe": {"variant": {"name": checks.recipe.name}}}, {"verify": {}})
    assert np.array_equal(checks.status(s3)["line"]["site_dos"], rows3[[2, 0, 1]])
    # a line of another recipe is another calculation: not this one's answer
    other = Structure(Lattice.cubic(4.4), ["Na", "Cl", "K"], t.frac_coords)
    cif4 = reference_dft.to_cif(other)
    v.remember(cif4, checks.recipe, {"material_id": "gen:z", "formula": "NaClK", "cif": cif4, "site_dos": rows3.tolist(),
                                     "recipe": {"variant": {"name": "seed"}}}, {"verify": {}})
    assert checks.status(Structure(other.lattice, ["K", "Na", "Cl"], s3.frac_coords)) is None
    squeezed = rewritten.copy()
    squeezed.scale_lattice(rewritten.volume * 0.98)        # another volume: another cell's DOS
    assert checks.status(squeezed) is None and reference_dft.same_cell_order(squeezed, CL_NA) is None
    # a list of materials marks the calculated ones in one query
    assert checks.calculated({"mp:a": CL_NA, "mp:b": moved}) == {"mp:a"} and checks.calculated({}) == set()


@pytest.mark.dft
def test_gpaw_on_an_uploaded_cell_gives_its_rows_in_file_order_and_a_label(tmp_path):
    """Real GPAW: row 0 is chlorine's (its filled 3p band: about 5 electrons below E_F in the
    window; Na keeps under 1), the line is appended to the label shards under the upload's id, and
    a second request is answered from the cache."""
    checks = _checks(tmp_path)
    mid = label_id("upload:nacl.cif", CL_NA)
    assert checks.submit(CL_NA, mid, "NaCl · nacl.cif")
    assert not checks.submit(CL_NA, mid, "NaCl · nacl.cif")      # asked again while it runs: the same one
    deadline = time.time() + 900
    while (s := checks.status(CL_NA))["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert s["status"] == "done", s.get("error")
    rows = np.asarray(s["line"]["site_dos"])
    electrons = [dos.integrate(r, upto=0.0) for r in rows]
    assert electrons[0] > 4.0 > 2.0 > electrons[1], electrons
    ShardWriter(tmp_path / "labels", prefix="generated").seal()
    lines = [line for _, line in iter_label_lines((tmp_path / "labels").glob("generated-*.jsonl.gz"))]
    assert [(x["material_id"], x["source"]) for x in lines] == [(mid, {"reference": {"name": "NaCl · nacl.cif"}})]
    assert np.allclose(lines[0]["site_dos"], rows)
    with sqlite3.connect(tmp_path / "runs.db") as con:
        assert con.execute("SELECT status, material_id FROM reference_checks").fetchall() == [("done", mid)]
    t = time.perf_counter()
    assert checks.run(CL_NA, mid, "NaCl · nacl.cif")["status"] == "done" and time.perf_counter() - t < 1.0


def test_an_upload_of_a_labelled_compound_is_named_with_its_volume():
    """Rock salt at 5.64 Å is mp-22862 of the reference database (its PBE cell 3 % larger); the
    CsCl arrangement of NaCl is another structure, and no labelled one."""
    from pymatgen.core import Composition
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.structures import read_structure, to_structure
    from tests.test_app import NACL_CL_FIRST, ROCKSALT_CL_FIRST
    db = open_db(DB_URL)
    nacl = [(r["material_id"], to_structure(db.get(r["material_id"]).atoms)) for r in db.search()
            if Composition(r["formula"]).reduced_formula == "NaCl"]
    mid, ratio, same_shape = reference_dft.labelled_copy(read_structure(ROCKSALT_CL_FIRST), nacl)
    assert mid == "mp-22862" and 0.95 < ratio < 0.99 and same_shape
    assert reference_dft.labelled_copy(read_structure(NACL_CL_FIRST), nacl) is None
    # stretched to c/a 1.05 at its volume: still the compound, no longer the same shape (the page says so)
    stretched = read_structure(ROCKSALT_CL_FIRST)
    stretched.apply_strain([-0.016, -0.016, 0.033])
    assert reference_dft.labelled_copy(stretched, nacl)[2] is False


def test_the_site_of_a_labelled_copy_is_found_by_elements_and_positions():
    """YMg3 (mp-1100166) has two Mg sites with the same distances to their neighbours: surroundings
    alone took one for the other (review). Shuffled and 2 % larger, each site maps to its own, for
    an upload's labelled copy and for a known candidate (a doubled cell) alike."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.scoring.evaluate import corresponding_site
    from dosmatgen_core.structures import to_structure
    from studio.known import matching_site
    t = to_structure(open_db(DB_URL).get("mp-1100166").atoms)
    order = [3, 1, 0, 2]
    s = Structure.from_sites([t[k] for k in order])
    s.scale_lattice(t.volume * 1.02)
    orbit = SpacegroupAnalyzer(t, 0.1).get_symmetry_dataset().equivalent_atoms
    assert len(set(orbit[[k for k, x in enumerate(t) if x.specie.symbol == "Mg"]])) == 2   # two kinds of Mg
    for i, k in enumerate(order):
        assert orbit[corresponding_site(s, i, t)] == orbit[k], (i, k)
        assert orbit[matching_site(s, i, t)] == orbit[k], (i, k)
    doubled = s.copy()
    doubled.make_supercell([1, 1, 2])
    for i in range(len(doubled)):
        assert orbit[matching_site(doubled, i, t)] == orbit[order[i // 2]], i
    # the labelled cell the larger one: any image of the site is it
    for i in range(len(t)):
        assert orbit[order[corresponding_site(t, i, doubled) // 2]] == orbit[i], i

def test_a_calculation_s_owner_is_read_without_raising():
    """The owner column says which process calculates a cell: one of this host that has exited is
    gone, another host's row or a text not written here is taken at its word (no ValueError)."""
    import subprocess
    done = subprocess.Popen(["true"])
    done.wait()
    host = reference_dft._HOST
    assert reference_dft._gone(f"{host}:{done.pid}", "k") is True
    assert reference_dft._gone(f"{host}:not-a-pid", "k") is False
    assert reference_dft._gone("elsewhere:123", "k") is False
    assert reference_dft._gone(None, "k") is True
