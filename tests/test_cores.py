"""The sampler's threads: one per core that other work leaves free, put back afterwards."""
import subprocess
import sys
import time

import torch

from dosmatgen_core.sampling import cores


def test_one_thread_per_free_core_at_least_one_at_most_the_cores():
    assert cores.threads_for(2.0, 2) == 2 and cores.threads_for(1.6, 2) == 2 and cores.threads_for(1.2, 2) == 1
    assert cores.threads_for(0.0, 2) == 1 and cores.threads_for(7.9, 4) == 4


def test_a_busy_core_takes_a_thread_away_while_sampling_and_the_count_comes_back():
    before = torch.get_num_threads()
    spin = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(1.0)
        free = cores.free_cores(0.5)
        with cores.sampling_threads("cpu") as n:
            assert n == cores.threads_for(free, 2) or abs(free - round(free)) > 0.3
            assert torch.get_num_threads() == n and n < max(before, 2)     # two spinners hold both cores
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert torch.get_num_threads() == before
    with cores.sampling_threads("cuda") as n:
        assert n is None and torch.get_num_threads() == before
