"""The load bench's timing: the work runs beside k spinning processes, which are gone afterwards."""
import time

import psutil

from benchmarks import load


def test_timed_runs_the_work_beside_k_spinners_and_stops_them():
    seen = []

    def work():
        seen.append(sum(1 for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"]
                        and p.info["cmdline"][-1] == load.SPIN))
        time.sleep(0.1)
        return 2
    rec = load.timed(work, 2)
    assert seen == [2] and rec["extra_busy"] == 2 and rec["threads"] == 2 and rec["seconds"] >= 0.1
    time.sleep(0.2)
    assert not [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and p.info["cmdline"][-1] == load.SPIN]
    assert "threads" not in load.timed(lambda: None, 0)          # a stage of fixed threads records none
