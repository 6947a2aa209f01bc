"""How many torch threads the sampler takes: one per core that other work leaves free.

Torch's threads meet at a barrier every operation, so when another process holds one of two
cores, a two-threaded sampler waits on its descheduled thread at each step: beside one busy
process it ran 3.2 times slower than on the quiet CPU, beside two 5.2 times. One thread per free
core avoids the wait (1.5 and 2.2 times; benchmarks/results/load.json). The free cores are read
just before sampling from the runnable threads of other processes, each counted by its scheduler
weight against this process's (competing_load): unlike the load average, this does not count
this process's own last run, and a niced labeller counts for the little it takes.
"""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import psutil
import torch


# CFS's weight of a task by its nice value, -20 … 19 (the kernel's sched_prio_to_weight): a core is
# shared between its runnable tasks in proportion to these
NICE_WEIGHT = (88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916,
               9548, 7620, 6100, 4904, 3906, 3121, 2501, 1991, 1586, 1277,
               1024, 820, 655, 526, 423, 335, 272, 215, 172, 137,
               110, 87, 70, 56, 45, 36, 29, 23, 18, 15)


def weight(nice: int) -> int:
    return NICE_WEIGHT[min(max(int(nice), -20), 19) + 20]


def _entries(path: Path) -> list[str]:
    """A /proc directory's names, [] once it is gone: a process or thread may end between the
    listing of its parent and the reading of its own (a walk's page stopped on that race)."""
    try:
        return os.listdir(path)
    except OSError:
        return []


def _runnable(proc: Path, own: int) -> list[int] | None:
    """The nice values of the runnable threads of every process but `own`; None without /proc."""
    if not proc.is_dir():
        return None
    out = []
    for pid in _entries(proc):
        if not pid.isdigit() or pid == str(own):
            continue
        for tid in _entries(proc / pid / "task"):
            try:
                rest = (proc / pid / "task" / tid / "stat").read_text().rsplit(")", 1)[1].split()   # after the name, which may hold spaces
            except (OSError, IndexError):
                continue                 # the thread ended while it was read
            if rest[0] == "R":
                out.append(int(rest[16]))
    return out


def competing_load(samples: int = 5, gap: float = 0.02, proc: Path = Path("/proc")) -> float | None:
    """Cores' worth of other work this process competes with: the runnable threads of other
    processes, each counted by its CFS weight against this process's, over a few snapshots. A
    labeller at nice 15 counts 36/1024 of a thread beside an app at nice 0, since that is the share
    of a core it takes from it; the load average counts it whole (a walk's DFT estimate was 4 times
    too long beside a niced labeller and bench). None where /proc has no task states."""
    mine = weight(os.getpriority(os.PRIO_PROCESS, 0))
    totals = []
    for k in range(samples):
        nices = _runnable(proc, os.getpid())
        if nices is None:
            return None
        # a thread holds one core at most, however high its priority: a browser's threads at nice
        # -8 weigh 6 times this process's, and read as 16 busy cores of 2 beside a walk's Chromium
        totals.append(sum(min(weight(n) / mine, 1.0) for n in nices))
        if k + 1 < samples:
            time.sleep(gap)
    return sum(totals) / len(totals)


def free_cores(interval: float = 0.2) -> float:
    """Cores' worth of CPU this process can have: the cores less the other work it competes with
    (competing_load), or where /proc cannot tell, the idle time over the next `interval` seconds
    (2.0: two idle cores). Idle time counts a niced labeller as a busy core, though it yields it:
    beside two spinners at nice 15, sampling then took one thread and ran 1.8 times slower, where
    two threads ran 1.3 times slower (benchmarks/results/load-nice15.json)."""
    cpus = os.cpu_count() or 1
    if (competing := competing_load()) is not None:
        return max(0.0, cpus - competing)
    return sum(100.0 - p for p in psutil.cpu_percent(interval=interval, percpu=True)) / 100.0


def threads_for(free: float, cpus: int) -> int:
    """One thread per free core (rounded), at least one and at most the cores."""
    return max(1, min(int(cpus), int(free + 0.5)))


@contextlib.contextmanager
def sampling_threads(device: str = "cpu"):
    """Torch's thread count set to threads_for the free cores while sampling on the CPU, then put
    back; yields the count used (None on a GPU, where the host threads barely matter)."""
    if device != "cpu":
        yield None
        return
    before = torch.get_num_threads()
    n = threads_for(free_cores(), os.cpu_count() or 1)
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
