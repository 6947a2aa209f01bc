"""The sampler's threads: one per core that other work leaves free, put back afterwards."""
import os
import subprocess
import sys
import time

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
