"""How many torch threads the sampler takes: one per core that other work leaves free.

Torch's threads meet at a barrier every operation, so when another process holds one of two
cores, a two-threaded sampler waits on its descheduled thread at each step: beside one busy
process it ran 3.2 times slower than on the quiet CPU, beside two 5.2 times. One thread per free
core avoids the wait (1.5 and 2.2 times; benchmarks/results/load.json). The free cores are read
from the CPU's idle time just before sampling, which, unlike the load average, does not count
this process's own last run.
"""
from __future__ import annotations

import contextlib
import os

import psutil
import torch


def free_cores(interval: float = 0.2) -> float:
    """Cores' worth of idle time over the next `interval` seconds (2.0: two idle cores)."""
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
