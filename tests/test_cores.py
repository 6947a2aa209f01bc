"""The sampler's threads: one per core that other work leaves free, put back afterwards."""
import os
import subprocess
import sys
import time

import pytest
import torch

from dosmatgen_core.sampling import cores


def test_one_thread_per_free_core_at_least_one_at_most_the_cores():
    assert cores.threads_for(2.0, 2) == 2 and cores.threads_for(1.6, 2) == 2 and cores.threads_for(1.2, 2) == 1
    assert cores.threads_for(0.0, 2) == 1 and cores.threads_for(7.9, 4) == 4


def test_busy_cores_leave_the_sampler_one_thread_and_the_count_comes_back():
    before = torch.get_num_threads()
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    try:
        time.sleep(1.0)                         # every core busy: none is free
        with cores.sampling_threads("cpu") as n:
            assert n == 1 and torch.get_num_threads() == 1
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert torch.get_num_threads() == before
    with cores.sampling_threads("cuda") as n:
        assert n is None and torch.get_num_threads() == before


def _spinners(k: int, nice: int = 0):
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"], preexec_fn=(lambda: os.nice(nice)) if nice else None)
            for _ in range(k)]


def test_other_work_counts_by_its_scheduler_weight(tmp_path):
    """A spinner at this process's nice takes a core's worth; two at nice 19 take 2 × 15/1024 of one
    (the kernel's weights): the labeller at nice 15 slows the app's GPAW by nothing measurable
    (benchmarks/results/load-nice15.json), while the load average counted it whole. Real spinners,
    read from the kernel's own task states, through a /proc that holds only them: other work
    starting between two readings (a walk's GPAW) once failed this test."""
    for nice, low, high in ((0, 0.6, 1.4), (19, 0.0, 0.25)):
        spin = _spinners(1 if nice == 0 else 2, nice)
        only = tmp_path / f"proc{nice}"
        only.mkdir()
        for p in spin:
            (only / str(p.pid)).symlink_to(f"/proc/{p.pid}")
        try:
            time.sleep(1.0)
            got = cores.competing_load(samples=10, proc=only)
        finally:
            for p in spin:
                p.kill()
                p.wait()
        assert low < got < high, (nice, got)
    assert (cores.weight(0), cores.weight(19)) == (1024, 15)       # the kernel's table, as the bounds assume


def test_a_thread_is_read_whatever_its_name_holds(tmp_path):
    """/proc/PID/task/TID/stat: the name sits in parentheses and may hold spaces and parentheses."""
    for pid, tid, text in ((10, 10, "10 (python) R 1 10 10 0 -1 4194560 0 0 0 0 5 0 0 0 20 5 1 0"),
                           (11, 12, "12 (a b) c) R 1 10 10 0 -1 4194560 0 0 0 0 5 0 0 0 20 15 1 0"),
                           (13, 13, "13 (sleeper) S 1 10 10 0 -1 4194560 0 0 0 0 5 0 0 0 20 0 1 0"),
                           (99, 99, "99 (me) R 1 10 10 0 -1 4194560 0 0 0 0 5 0 0 0 20 0 1 0")):
        d = tmp_path / str(pid) / "task" / str(tid)
        d.mkdir(parents=True)
        (d / "stat").write_text(text)
    assert sorted(cores._runnable(tmp_path, own=99)) == [5, 15]
    assert cores._runnable(tmp_path / "none", own=99) is None


def test_a_thread_of_higher_priority_counts_one_core_at_most(tmp_path):
    """A walk's estimate jumped between 13 and 37 min ("other work worth 16.0 busy cores of 2"):
    Chromium's threads run at nice -8, weighted 6 times a nice-0 thread. A thread holds one core at
    most; a niced one still counts its small share."""
    mine = cores.weight(os.getpriority(os.PRIO_PROCESS, 0))
    for pid, nice in ((10, -8), (11, -8), (12, 15)):
        d = tmp_path / str(pid) / "task" / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} (chromium) R 1 10 10 0 -1 4194560 0 0 0 0 5 0 0 0 20 {nice} 1 0")
    got = cores.competing_load(samples=1, proc=tmp_path)
    assert got == pytest.approx(2.0 + min(cores.weight(15) / mine, 1.0))

def test_a_process_that_ends_during_the_scan_is_skipped(tmp_path, monkeypatch):
    """A walk's Generate page stopped on FileNotFoundError '/proc/27476/task': the process ended
    between the listing of /proc and the reading of its threads. It is now left out of the count."""
    for pid in (10, 11):
        d = tmp_path / str(pid) / "task" / str(pid)
        d.mkdir(parents=True)
        (d / "stat").write_text(f"{pid} (python) R 1 10 10 0 -1 4194560 0 0 0 0 5 0 0 0 20 {pid - 5} 1 0")
    listdir = os.listdir

    def ends(path):
        if str(path) == str(tmp_path / "10" / "task"):
            raise FileNotFoundError(path)           # pid 10 exits after /proc was listed
        return listdir(path)
    monkeypatch.setattr(cores.os, "listdir", ends)
    assert cores._runnable(tmp_path, own=99) == [6]
