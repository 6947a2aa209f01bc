"""GPAW runs for real here: small cells that take seconds on one core."""
import gzip
import json
import os
import signal
import threading
import time

import numpy as np
import pytest
from ase.build import bulk

from dosmatgen_core import dos
import psutil

from dosmatgen_core.labels.labeller import (SEED_RECIPE, ShardWriter, gpaw_site_dos, iter_label_lines,
                                      label_isolated, label_structure, run_labelling)
from dosmatgen_core.structures import atoms_from_cif

pytestmark = pytest.mark.dft

# Two seed entries of 2 atoms that label in a few seconds (see their `seconds` field).
REPRO_IDS = ["mp-22905", "mp-23259"]   # LiCl, LiBr (rock salt)


@pytest.mark.parametrize("mid", REPRO_IDS)
def test_labeller_reproduces_seed_labels(seed_lines, mid):
    ref = seed_lines[mid]
    line = label_structure(mid, ref["cif"], SEED_RECIPE)
    assert "failed" not in line, line.get("failed")
    got = np.array(line["site_dos"])
    want = np.array(ref["site_dos"])
    assert got.shape == want.shape == (len(atoms_from_cif(ref["cif"])), dos.NPTS)
    assert np.abs(got - want).max() <= 1e-2
    assert abs(line["e_fermi_eV"] - ref["e_fermi_eV"]) <= 0.02
    # the stored cell reads back with the site order the rows follow
    assert [a.symbol for a in atoms_from_cif(line["cif"])] == [a.symbol for a in atoms_from_cif(ref["cif"])]


def test_copper_sum_rules():
    res = gpaw_site_dos(bulk("Cu", "fcc", a=3.61))
    # Site DOS (Löwdin) sums to the total DOS from the eigenvalues alone.
    assert np.allclose(res["site_dos"].sum(0), res["total_dos"], atol=1e-8)
    # 3d10 4s1: 11 valence electrons below E_F, all inside the -10 eV window.
    assert dos.integrate(res["site_dos"][0], upto=0.0) == pytest.approx(11.0, abs=0.05)


def test_two_site_sum_rule(seed_lines):
    res = gpaw_site_dos(atoms_from_cif(seed_lines["mp-22905"]["cif"]))
    assert np.allclose(res["site_dos"].sum(0), res["total_dos"], atol=1e-8)
    # Li+ Cl-: the 6 Cl 3p electrons; Cl 3s (~ -12 eV) and Li 1s lie below the window.
    assert dos.integrate(res["site_dos"].sum(0), upto=0.0) == pytest.approx(6.0, abs=0.05)


def test_dask_run_is_resumable_and_records_failures(tmp_path, seed_lines):
    tasks = [{"material_id": "mp-22905", "cif": seed_lines["mp-22905"]["cif"]},
             {"material_id": "broken-1", "cif": "data_x\nnot a cif at all\n"}]
    seen = []
    stats = run_labelling(tasks, tmp_path, workers=1, shard_size=50, on_result=seen.append)
    assert (stats.done, stats.failed) == (1, 1)
    assert ShardWriter(tmp_path).done_ids() == {"mp-22905", "broken-1"}
    # A restart skips both: the success and the recorded failure.
    again = run_labelling(tasks, tmp_path, workers=1)
    assert (again.done, again.failed) == (0, 0)
    # A retry picks failures by their reason: another reason's are still done, a matching one is not.
    assert ShardWriter(tmp_path).done_ids(retry="SymmetryAnalysisBug") == {"mp-22905", "broken-1"}
    assert ShardWriter(tmp_path).done_ids(retry="could not read") == {"mp-22905"}
    assert ShardWriter(tmp_path).done_ids(retry="") == {"mp-22905"}
    # Sealing writes one immutable gzip shard in the seed format.
    shard = ShardWriter(tmp_path).seal()
    assert shard is not None and shard.name == "labels-0000.jsonl.gz"
    lines = [d for _, d in iter_label_lines([tmp_path])]
    assert {d["material_id"] for d in lines} == {"mp-22905", "broken-1"}
    ok = next(d for d in lines if d["material_id"] == "mp-22905")
    assert set(ok) >= {"material_id", "formula", "cif", "recipe", "grid", "energy_eV", "e_fermi_eV",
                       "seconds", "site_dos"}
    bad = next(d for d in lines if d["material_id"] == "broken-1")
    assert "could not read" in bad["failed"]
    with gzip.open(shard, "rt") as fh:
        assert len(fh.readlines()) == 2


def _own_labeller_child() -> int:
    """The pid of this test's GPAW process, once it has started (a labeller running beside the
    tests has its own, which is no child of this one)."""
    for _ in range(200):
        kids = [p for p in psutil.Process().children(recursive=True)
                if "dosmatgen_core.labels.labeller" in " ".join(p.cmdline())]
        if kids:
            return kids[0].pid
        time.sleep(0.05)
    raise AssertionError("the calculation's process never started")


def test_a_cpu_time_limit_ignores_a_pause_and_still_stops_a_long_calculation(seed_lines):
    """A bench paused with SIGSTOP (for a quiet timing) had a check time out on the clock. With
    cpu=True the limit counts the calculation's own seconds: a 13-s pause under a 12-s limit is
    no timeout, while a limit shorter than the calculation still is one, named as CPU time."""
    task = {"material_id": "mp-22905", "cif": seed_lines["mp-22905"]["cif"]}
    got = {}
    run = threading.Thread(target=lambda: got.update(line=label_isolated(task, SEED_RECIPE, 12, cpu=True)))
    run.start()
    kid = _own_labeller_child()
    os.kill(kid, signal.SIGSTOP)
    time.sleep(13)
    os.kill(kid, signal.SIGCONT)
    run.join()
    assert "failed" not in got["line"] and len(got["line"]["site_dos"]) == 2
    short = label_isolated(task, SEED_RECIPE, 1, cpu=True)
    assert short == {"material_id": "mp-22905", "failed": "timeout: more than 1 s of CPU time"}
    # a SIGKILL from elsewhere (the OOM killer) is no timeout: retrying timeouts must not retry it
    run = threading.Thread(target=lambda: got.update(line=label_isolated(task, SEED_RECIPE, 60, cpu=True)))
    run.start()
    os.kill(_own_labeller_child(), signal.SIGKILL)
    run.join()
    assert got["line"]["failed"].startswith("worker exited with code -9")


def test_existing_dask_scheduler_is_used(tmp_path, seed_lines):
    """--scheduler ADDRESS: the labeller submits to a cluster it did not start."""
    from dask.distributed import LocalCluster
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        tasks = [{"material_id": "mp-23259", "cif": seed_lines["mp-23259"]["cif"]}]
        stats = run_labelling(tasks, tmp_path, scheduler=cluster.scheduler_address)
        assert (stats.done, stats.failed) == (1, 0)
        assert cluster.scheduler_address.startswith("tcp://")


@pytest.mark.slow
def test_labeller_reproduces_the_au3ni_showcase_label(seed_lines):
    """The paper's reference (L1₂ Au3Ni, CHGNet lattice constant): 4 atoms, ~25 s of DFT."""
    ref = seed_lines["L12-Au3Ni-chgnet"]
    line = label_structure("L12-Au3Ni-chgnet", ref["cif"], SEED_RECIPE)
    assert np.abs(np.array(line["site_dos"]) - np.array(ref["site_dos"])).max() <= 1e-2
    assert abs(line["e_fermi_eV"] - ref["e_fermi_eV"]) <= 0.02
