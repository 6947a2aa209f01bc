"""DFT-certified ranking: the top candidates are calculated several at once (one GPAW process
per core), every result lands in the run store, a cancel stops the rest, and the time left
counts the parallel slots. GPAW itself is replaced by a timed stand-in here; the real recipe on
a real cell is tested in test_site_order.py (slow)."""
import threading
import time

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen_core.candidates import runs
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import DB_URL
from dosmatgen_core.scoring import certify, verify
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.structures import to_structure
from studio.results import candidate_curves


def _run_with(store, n: int, target=None) -> str:
    target = np.exp(-np.linspace(-10, 10, 400) ** 2).tolist() if target is None else target
    cands = []
    for k in range(n):       # distinct cells, so no calculation is a cache hit of another
        s = Structure(Lattice.cubic(3.0 + 0.1 * k), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        cands.append({"index": k, "rank": k + 1, "cif": runs.to_cif(s), "formula": "AuCu", "n_atoms": 2,
                      "site_to_target": {0: 0}, "valid": True, "structurally_valid": True})
    return store.save({"title": "t", "settings": {"seed": 1, "targets": [target]}, "summary": {"n": n},
                       "candidates": cands, "baseline": []})


@pytest.fixture
def fake_gpaw(monkeypatch):
    """label_isolated that takes 0.4 s and records how many ran at once."""
    state = {"now": 0, "most": 0, "calls": 0}
    lock = threading.Lock()

    def label(task, recipe, timeout, cpu=False):
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.4)
        with lock:
            state["now"] -= 1
        n = 2
        return {"material_id": task["material_id"], "cif": task["cif"], "site_dos": np.full((n, 400), 0.1).tolist(),
                "e_fermi_eV": 0.0, "energy_eV": -1.0, "seconds": 0.4, "recipe": {"name": recipe.name}}
    monkeypatch.setattr(verify, "label_isolated", label)
    return state


def test_the_top_three_run_two_at_a_time_on_two_workers_and_all_land(tmp_path, fake_gpaw):
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 3)
    v = verify.Verifier(store, label_dir=None, workers=2)
    cert = certify.Certifier(v, prior_s=100.0, workers=2)
    cert.start(rid, [1, 2, 3], relaxed=False)
    cert.wait(rid, poll=0.05)
    # two slots: two ran at once, never three (no wall-clock check: a loaded CI box would fail it)
    assert fake_gpaw["calls"] == 3 and fake_gpaw["most"] == 2
    p = cert.progress(rid)
    assert sorted(p["done"]) == [1, 2, 3] and not p["active"] and p["left_s"] == 0.0
    assert all(v.status(rid, r)["result"]["recipe"]["name"] == certify.FAST_RECIPE.name for r in (1, 2, 3))


def test_two_runs_checks_share_the_cores_relaxation_included(tmp_path, fake_gpaw, monkeypatch):
    """Walk 8: two runs' batches ran three checks at once on 2 cores (relaxations were not counted),
    and one relaxation took 725 s. A check holds its core from relaxation to GPAW: across both
    batches, never more than two relaxations and GPAW runs together."""
    busy = {"now": 0, "most": 0}
    lock = threading.Lock()
    real_label = verify.label_isolated

    def step(seconds):
        with lock:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        time.sleep(seconds)
        with lock:
            busy["now"] -= 1

    def relax(cif, *a, **kw):          # SevenNet stands aside: the count of steps at once is tested
        step(0.3)
        return cif, {"relax_seconds": 0.3}

    def label(task, recipe, timeout, cpu=False):
        step(0.0)
        return real_label(task, recipe, timeout)
    monkeypatch.setattr(verify, "relax_in_site_order", relax)
    monkeypatch.setattr(verify, "label_isolated", label)
    store = runs.RunStore(tmp_path / "r.db")
    first, second = _run_with(store, 3), _run_with(store, 3)
    run = store.get(second)                          # other cells: no check is another's cache hit
    for c in run["candidates"]:
        c["cif"] = runs.to_cif(Structure(Lattice.cubic(4.0 + 0.1 * c["index"]), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    store.save(run)
    cert = certify.Certifier(verify.Verifier(store, label_dir=None, workers=2), prior_s=1.0, workers=2)
    cert.start(first, [1, 2, 3])
    cert.start(second, [1, 2, 3])
    cert.wait(first, poll=0.05)
    cert.wait(second, poll=0.05)
    assert all(cert.verifier.status(r, k)["status"] == "done" for r in (first, second) for k in (1, 2, 3))
    assert busy["most"] == 2 and fake_gpaw["calls"] == 6

def test_a_cancel_stops_the_rest_and_the_running_ones_finish(tmp_path, fake_gpaw):
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 3)
    cert = certify.Certifier(verify.Verifier(store, label_dir=None, workers=1), prior_s=1.0, workers=1)
    cert.start(rid, [1, 2, 3], relaxed=False)
    time.sleep(0.1)
    cert.cancel(rid)
    cert.wait(rid, poll=0.05)
    p = cert.progress(rid)
    assert p["done"] == [1] and fake_gpaw["calls"] == 1 and p["cancelled"]
    assert certify.status_line(p, lambda s: f"{s:.0f} s").endswith("1 of 3 done (cancelled: #2, #3 will not start)")


def test_a_second_start_on_a_running_batch_hears_when_it_ends(tmp_path, fake_gpaw):
    """Two chains on one run share its batch: each one's `after` is called once, both before the
    batch reads as finished (a second chain used to get the batch back without its `after`, and
    waited forever for a next round)."""
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 2)
    v = verify.Verifier(store, label_dir=None, workers=1)
    cert = certify.Certifier(v, prior_s=1.0, workers=1)
    heard = []
    v.cores.acquire()                       # hold the core, so the first batch is still running
    try:
        first = cert.start(rid, [1, 2], relaxed=False, after=lambda b: heard.append(("first", b.finished)))
        second = cert.start(rid, [1], relaxed=False, after=lambda b: heard.append(("second", b.finished)))
        assert second is first and not first.finished
    finally:
        v.cores.release()
    cert.wait(rid, poll=0.05)
    assert heard == [("first", False), ("second", False)]
    assert cert.progress(rid)["done"] == [1, 2]


def test_a_cancel_also_stops_checks_waiting_for_a_free_core(tmp_path, fake_gpaw):
    """A check waiting for a core (another run's batch holds it) stops at the cancel: it reads as
    not started, GPAW never runs it, and the batch ends without waiting for the core. While it
    waits, it is no running check in the time left (its clock has not started)."""
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 2)
    v = verify.Verifier(store, label_dir=None, workers=1)
    cert = certify.Certifier(v, prior_s=0.2, workers=2)
    v.cores.acquire()                       # the one core, taken by another run's check
    try:
        cert.start(rid, [1, 2], relaxed=False)
        deadline = time.time() + 30
        while time.time() < deadline and not all((s := v.status(rid, r)) and s["stage"] == verify.STAGES["wait"]
                                                  for r in (1, 2)):
            time.sleep(0.05)
        time.sleep(0.5)                     # longer than the usual 0.2 s, all of it spent waiting
        p = cert.progress(rid)
        assert sorted(p["running"]) == [1, 2] and not p["overdue"] and p["running_s"] == 0.0
        assert p["left_s"] == pytest.approx(0.2)        # both still to run, side by side on the batch's two workers
        cert.cancel(rid)
        cert.wait(rid, poll=0.05)           # ends with the core still taken
    finally:
        v.cores.release()
    p = cert.progress(rid)
    assert fake_gpaw["calls"] == 0 and p["running"] == [] and p["done"] == [] and v.status(rid, 1) is None
    assert certify.status_line(p, lambda s: f"{s:.0f} s").endswith("0 of 2 done (cancelled: #1, #2 will not start)")



def test_one_check_is_skipped_and_the_others_go_on(tmp_path, fake_gpaw):
    """Walk 18 could only stop the whole batch. A check that has not started (waiting for a free
    core, or not yet queued) is skipped alone: GPAW never runs it, the others land, and the line and
    the time left count it out; one that runs cannot be skipped (it finishes, a label)."""
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 3)
    v = verify.Verifier(store, label_dir=None, workers=1)
    cert = certify.Certifier(v, prior_s=0.2, workers=1)
    v.cores.acquire()                       # the one core taken: #1 waits for it, #2 and #3 are not queued yet
    try:
        cert.start(rid, [1, 2, 3], relaxed=False)
        deadline = time.time() + 30
        while time.time() < deadline and not ((s := v.status(rid, 1)) and s["stage"] == verify.STAGES["wait"]):
            time.sleep(0.05)
        statuses = {r: v.status(rid, r) for r in (1, 2, 3)}
        assert certify.skippable(cert.progress(rid), statuses) == {1, 2, 3}
        assert cert.skip(rid, 1) and cert.skip(rid, 3) and not cert.skip(rid, 7) and not cert.skip("other", 2)
        p = cert.progress(rid)
        assert p["skipped"] == [1, 3] and certify.skippable(p, statuses) == {2}
        assert p["left_s"] == pytest.approx(0.2)            # one check left, not three
    finally:
        v.cores.release()
    cert.wait(rid, poll=0.05)
    p = cert.progress(rid)
    assert fake_gpaw["calls"] == 1 and p["done"] == [2] and v.status(rid, 1) is None and v.status(rid, 3) is None
    assert certify.status_line(p, lambda s: f"{s:.0f} s") == "DFT check of candidates #1, #2, #3: 1 of 1 done, #1, #3 skipped"
    assert not cert.skip(rid, 2) and certify.skippable(p, {}) == set()       # done, and the batch is over
    # a stopped batch's checks that never started are named at once (walk 18's badges lagged a redraw)
    assert certify.unstarted({**p, "ranks": [1, 2, 3, 4], "done": [2], "failed": [3]},
                             {4: {"status": "running", "stage": verify.STAGES["wait"]}}) == {1, 4}

def test_a_check_that_relaxed_into_a_known_compound_hands_its_place_to_the_next_in_line(tmp_path, fake_gpaw,
                                                                                         monkeypatch):
    """The paper preset's demo checked three candidates that all relaxed into Au3Ni: no new
    structure was certified. Each such check now hands its place to the next candidate worth a check
    (never one already known, up to as many as were picked), and the line says so."""
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 5)
    run = store.get(rid)
    for c in run["candidates"]:
        c["novel"] = True                    # as the drawn cells' check said
    run["candidates"][2].update(novel=False, matches="mp-known")      # #3: known, with a stored label
    store.save(run)
    monkeypatch.setattr(verify, "relax_in_site_order", lambda cif, *a, **kw: (cif, {"relax_seconds": 0.1}))
    # #1 and #4 relax into a known compound (cells 3.0 and 3.3 Å here), the others stay new
    monkeypatch.setattr(verify, "known_match", lambda s, *a, **kw: ("mp-522", s) if round(s.lattice.a, 1) in (3.0, 3.3)
                        else None)
    cert = certify.Certifier(verify.Verifier(store, label_dir=None, workers=2), prior_s=1.0, workers=2)
    out = certify.check_top(cert, store.get(rid), 2, relaxed=True, per_source=False, labelled=frozenset({"mp-known"}))
    assert out["ranks"] == [1, 2]
    cert.wait(rid, poll=0.05)
    p = cert.progress(rid)
    # #1 relaxed into mp-522: #4 (not #3, known) took its place, relaxed into it too: #5 took that
    assert p["replaced"] == {1: 4, 4: 5} and p["ranks"] == [1, 2, 4, 5] and sorted(p["done"]) == [1, 2, 4, 5]
    assert p["picked"] == 2 and p["asked"] == 2 and p["unreplaced"] == {}      # the last replacement stayed new
    line = certify.status_line(p, lambda s: f"{s:.0f} s")
    assert line.startswith("Relaxation and DFT check of candidates #1, #2, and #4 in place of #1, #5 in place of #4 "
                           "(relaxed into known compounds): 4 of 4 done")
    assert fake_gpaw["calls"] == 4
    # the same checks started again (a second batch on the run): finished ones are not run again,
    # and those that relaxed into a known compound still hand on their place, as the CLI's do
    cert.start(rid, [1, 2], relaxed=True, spares=certify.spares(store.get(rid), [1, 2], labelled=frozenset({"mp-known"})))
    cert.wait(rid, poll=0.05)
    assert cert.progress(rid)["replaced"] == {1: 4, 4: 5} and fake_gpaw["calls"] == 4
    # the CLI's checks, one after the other, follow the same rule (a fresh store: nothing cached)
    other = runs.RunStore(tmp_path / "cli.db")
    said = []
    run["id"] = None
    cli = other.get(other.save({k: v for k, v in run.items() if k != "id"}))
    assert certify.check_in_turn(verify.Verifier(other, label_dir=None), cli, [1, 2], True, frozenset({"mp-known"}),
                                 log=said.append) == [1, 2, 4, 5]
    assert "#1 relaxed into the known compound mp-522: #4 is checked in its place" in said
    # no more replacements than picks: two picks, two replacements at most
    rid = _run_with(store, 5)
    run = store.get(rid)
    for c in run["candidates"]:
        c["novel"] = True
    store.save(run)
    monkeypatch.setattr(verify, "known_match", lambda s, *a, **kw: ("mp-522", s))
    cert.start(rid, [1, 2], relaxed=True, top=2, spares=certify.spares(store.get(rid), [1, 2]))
    cert.wait(rid, poll=0.05)
    p = cert.progress(rid)
    assert len(p["replaced"]) == 2 and len(p["done"]) == 4
    # the replacements relaxed into known compounds too, and the line says why none took their place
    # (walk 11 counted three known compounds and one replacement, unexplained)
    assert p["unreplaced"] == {3: "at most", 4: "at most"}
    assert certify.status_line(p, str).endswith(
        "4 of 4 done; #3, #4 relaxed into known compounds too, with no more replacements than the 2 checks picked")
    line = certify.status_line({"ranks": [1, 2, 3], "done": [1, 2, 3], "failed": [], "running": [], "active": False,
                                "cancelled": False, "relaxed": True, "unreplaced": {3: "none left"}}, str)
    assert line.endswith("3 of 3 done; #3 relaxed into a known compound, with no candidate worth a check left to "
                         "take its place")


def test_the_clis_checks_skip_finished_ones_and_go_on_past_a_failure():
    """As a batch does: a check already done is not run again (its relaxation would be), and one
    that raises is recorded as failed while the next is checked."""
    class Stub:
        def __init__(self):
            self.ran, self.failed = [], {}

        def status(self, run_id, rank):
            return {"status": "done", "result": {}} if rank == 1 else None

        def run(self, run_id, rank, relaxed=False):
            self.ran.append(rank)
            if rank == 2:
                raise RuntimeError("GPAW ran out of memory")
            return {"status": "done", "result": {}}

        def fail(self, run_id, rank, error):
            self.failed[rank] = error
    run = {"id": "r", "candidates": []}
    v, said = Stub(), []
    assert certify.check_in_turn(v, run, [1, 2, 3], True, log=said.append) == [1, 2, 3]
    assert v.ran == [2, 3] and v.failed == {2: "RuntimeError: GPAW ran out of memory"}
    assert said[0] == "#1 of run r has its GPAW check already"


def test_a_check_left_running_by_a_stopped_process_reads_as_interrupted(tmp_path):
    """A check row still "running" hours after it began belongs to a process that stopped (a page
    watching it would tick forever): the next Verifier on the store says it was interrupted. A
    recent one is left alone: another process may be running it."""
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 2)
    v = verify.Verifier(store, label_dir=None)
    v._set(rid, 1, status="running", started=time.time() - verify.STALE_S - 60)
    v._set(rid, 2, status="running", started=time.time() - 60)
    v = verify.Verifier(store, label_dir=None)
    assert v.status(rid, 1)["status"] == "failed" and v.status(rid, 1)["error"] == verify.INTERRUPTED
    assert v.status(rid, 2)["status"] == "running"


def test_a_cancel_says_which_checks_still_run():
    """Cancel stops only what has not started: a running GPAW check finishes, and the line says so
    rather than claiming to have cancelled it."""
    p = {"ranks": [7, 8, 9], "done": [8], "failed": [], "running": [7, 9], "left_s": 0.0, "active": True,
         "cancelled": True}
    assert certify.status_line(p, str).endswith("(cancelled: #7, #9 are already running and will finish)")
    p.update(done=[7, 8], running=[9])
    assert certify.status_line(p, str).endswith("2 of 3 done (cancelled: #9 is already running and will finish)")
    p.update(done=[7, 8, 9], running=[], active=False)
    assert certify.status_line(p, str).endswith("(cancelled after every check had started)")


def test_time_left_counts_the_parallel_slots():
    b = certify.Batch("r", [1, 2, 3], prior_s=60.0, workers=2)
    assert certify.time_left(b, {}, [], [], []) == 120.0          # 3 calculations, 2 at a time
    b1 = certify.Batch("r", [1, 2, 3], prior_s=60.0, workers=1)
    assert certify.time_left(b1, {}, [], [], []) == 180.0
    done = {1: {"status": "done", "result": {"seconds": 30.0}}}
    assert certify.time_left(b, done, [1], [], []) == 30.0          # measured rate, 2 left on 2 slots


def test_time_left_after_the_first_lands_counts_the_check_that_just_started():
    """3 checks on 2 workers: #1 done in 100 s, #2 running for 110 s (overdue), #3 just started.
    #3 needs about a whole calculation still, and a whole one is now at least the 110 s that #2 has
    run (the countdown grows while a check overruns instead of standing still)."""
    b = certify.Batch("r", [1, 2, 3], prior_s=60.0, workers=2)
    now = time.time()
    st = {1: {"status": "done", "result": {"seconds": 100.0}}, 2: {"status": "running", "started": now - 110},
          3: {"status": "running", "started": now - 2}}
    assert certify.time_left(b, st, [1], [], [2, 3]) == pytest.approx(108.0, abs=1.0)
    st4 = {**st, 3: {"status": "queued"}}                              # queued: the free worker takes it
    assert certify.time_left(b, st4, [1], [], [2]) == pytest.approx(110.0, abs=1.0)
    b1 = certify.Batch("r", [1, 2, 3], prior_s=60.0, workers=1)      # one worker: after the overdue one
    assert certify.time_left(b1, st4, [1], [], [2]) == pytest.approx(121.0, abs=1.0)
    st_late = {**st4, 2: {"status": "running", "started": now - 300}}  # overrunning further: more time left
    assert certify.time_left(b1, st_late, [1], [], [2]) == pytest.approx(330.0, abs=1.0)
    assert certify.time_left(b, st, [1, 2, 3], [], []) == 0.0


def test_a_failure_in_one_calculation_does_not_stop_the_others(tmp_path, fake_gpaw, monkeypatch):
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 3)
    v = verify.Verifier(store, label_dir=None, workers=2)
    real = v.run

    def flaky(run_id, rank, recipe, relaxed=False, cancelled=None):
        if rank == 2:
            raise RuntimeError("GPAW ran out of memory")
        return real(run_id, rank, recipe)
    monkeypatch.setattr(v, "run", flaky)
    cert = certify.Certifier(v, prior_s=1.0, workers=2)
    cert.start(rid, [1, 2, 3], relaxed=False)
    cert.wait(rid, poll=0.05)
    p = cert.progress(rid)
    assert sorted(p["done"]) == [1, 3] and p["failed"] == [2]
    assert "out of memory" in v.status(rid, 2)["error"]


def test_defaults_come_from_the_shipped_settings():
    assert certify.DEFAULT_TOP == SHIPPED.dft_top and certify.MAX_ATOMS == SHIPPED.max_dft_atoms
    assert 1 <= verify.default_workers() <= SHIPPED.dft_top
    assert verify.default_workers(1) == 1


def test_the_cost_shown_up_front_counts_the_parallel_slots():
    assert certify.dft_seconds(3, 60.0, workers=2) == 120.0
    assert certify.dft_seconds(3, 60.0, workers=1) == 180.0
    assert certify.dft_seconds(0, 60.0) == 0.0


def test_a_relaxed_batch_calculates_the_relaxed_cell_and_says_so(tmp_path, fake_gpaw, monkeypatch):
    """relaxed=True: the default potential relaxes each candidate first (real SevenNet here), the
    DFT runs on that cell, and the result and the curve's name say so."""
    seen = []
    label = verify.label_isolated
    monkeypatch.setattr(verify, "label_isolated", lambda task, recipe, timeout, cpu=False: seen.append(task["cif"]) or
                        label(task, recipe, timeout))
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 1)
    cert = certify.Certifier(verify.Verifier(store, label_dir=None, workers=1), prior_s=1.0, workers=1)
    cert.start(rid, [1], relaxed=True)
    assert cert.progress(rid)["relaxed"] is True           # the progress line says what it is doing
    cert.wait(rid, poll=0.05)
    res = verify.Verifier(store, label_dir=None).status(rid, 1)
    assert res["status"] == "done", res.get("error")
    drawn = Structure.from_str(store.get(rid)["candidates"][0]["cif"], fmt="cif")
    calculated = Structure.from_str(seen[0], fmt="cif")
    assert res["result"]["relaxed"] and abs(calculated.volume - drawn.volume) > 0.05     # AuCu at 3.0 Å is squeezed
    assert res["result"]["relax_seconds"] > 0          # the time left counts the relaxation too
    names = [c["name"] for c in candidate_curves(store.get(rid), store.get(rid)["candidates"][0], res, None)]
    assert any("relaxed cell" in n for n in names), names


def test_a_check_running_past_the_usual_time_is_called_overdue():
    class Running:
        def status(self, run_id, rank):
            return {"status": "running", "started": time.time() - 100.0}
    cert = certify.Certifier(Running(), prior_s=60.0, workers=1)
    cert.batches["r"] = certify.Batch("r", [1], prior_s=60.0, workers=1, relaxed=True)
    p = cert.progress("r")
    assert p["overdue"] and p["per_s"] == 60.0 and p["relaxed"]
    cert.batches["r"].prior_s = 300.0
    assert not cert.progress("r")["overdue"]


def test_a_batch_started_beside_other_work_expects_the_slower_check():
    """The usual time a check is measured against is the quiet prior scaled as the estimate is: a
    walk's loaded CPU read "taking longer than the usual ~2 min" for checks the page had estimated
    at 4."""
    class Idle:
        def status(self, run_id, rank):
            return None
    asked = []

    def loaded(workers):
        asked.append(workers)
        return 2.0
    cert = certify.Certifier(Idle(), prior_s=60.0, workers=2, slowdown=loaded)
    cert._work = lambda b: None          # no checks: only the batch's expectations
    b = cert.start("r", [1, 2, 3])
    assert asked == [2] and b.prior_s == pytest.approx(120.0) and cert.progress("r")["per_s"] == pytest.approx(120.0)
    quiet = certify.Certifier(Idle(), prior_s=60.0, workers=2, slowdown=lambda w: 0.5)     # never faster than quiet
    quiet._work = lambda b: None
    assert quiet.start("r", [1]).prior_s == pytest.approx(60.0)
    broken = certify.Certifier(Idle(), prior_s=60.0, workers=2, slowdown=lambda w: 1 / 0)
    broken._work = lambda b: None
    assert broken.start("r", [1]).prior_s == pytest.approx(60.0)


def test_dft_maes_count_stored_labels_of_known_candidates():
    from studio.results import dft_maes
    t = np.ones(400)
    run = {"settings": {"targets": [t.tolist()]},
           "candidates": [{"rank": 1, "site_to_target": {"0": 0}}, {"rank": 2, "site_to_target": {"3": 0}},
                          {"rank": 3, "site_to_target": {"1": 0}}]}
    dft = {2: {"status": "done", "result": {"dos_match": {"3": {"mae": 0.3}}}}, 3: {"status": "running"}}
    stored = {1: {0: {"y": t * 1.25, "name": "DFT (stored label …)"}}}
    maes = dft_maes(run, dft, stored)
    assert maes == pytest.approx({1: 0.25, 2: 0.3})             # a running check has no MAE yet


def test_a_cards_dft_badge_names_its_place_in_the_dft_order():
    from studio.results import dft_rank_text
    maes = {4: 0.12, 1: 0.30, 2: 0.2}
    assert dft_rank_text(4, maes) == "DFT MAE 0.120 · 1st of 3 candidates by DFT"
    assert dft_rank_text(1, maes) == "DFT MAE 0.300 · 3rd of 3 candidates by DFT"
    assert dft_rank_text(2, maes).endswith("2nd of 3 candidates by DFT")
    ties = {1: 0.0, 2: 0.0, 3: 0.0001, 4: 0.2}             # three copies of a known structure
    assert all(dft_rank_text(r, ties).endswith("· tied 1st of 4 candidates by DFT") for r in (1, 2, 3))
    assert dft_rank_text(4, ties).endswith("· 4th of 4 candidates by DFT")

    # copies of one known compound show one stored label: one entry, as the DFT table's one row
    # (walk 7: two CoPt copies and a check read 'tied 1st of 9'); a check of equal MAE still ties
    from studio.results import stored_label_of
    run = {"candidates": [{"rank": r, "formula": "CoPt", "matches": "mp-949"} for r in (1, 2)]
           + [{"rank": 3, "formula": "CoPt2"}, {"rank": 4, "formula": "FePt"}]}
    dft = {3: {"status": "done", "result": {"dos_match": {"0": {"mae": 0.2}}}},
           4: {"status": "done", "result": {"dos_match": {"0": {"mae": 0.116}}}}}
    maes = {1: 0.116, 2: 0.116, 3: 0.2, 4: 0.116}
    same = stored_label_of(run, dft, maes)
    assert set(same) == {1, 2} and same[1] == same[2] and "CoPt" in same[1]
    assert [dft_rank_text(r, maes, same) for r in (1, 2, 4)] == ["DFT MAE 0.116 · tied 1st of 3 candidates by DFT"] * 3
    assert dft_rank_text(3, maes, same) == "DFT MAE 0.200 · 3rd of 3 candidates by DFT"
    # copies of one known compound alone (walk 14's five template copies read "1st of 1 candidates")
    copies = {1: 0.213, 2: 0.213}
    assert dft_rank_text(2, copies, {1: "BaTiO3 · 0.213", 2: "BaTiO3 · 0.213"}) == \
        "DFT MAE 0.213 · the run's only DFT result (a stored label)"


def test_the_best_new_number_names_its_candidate_and_the_known_site_beside_it():
    """Walk 11: "DFT MAE, best new 0.434" named no candidate, and the seed's 0.128 stood only in
    the DFT table below. Walk 12: the line named the run's best seed as the one the candidate grew
    from; it names the candidate's own seed, and the run's closest known site beside it."""
    from studio.results import best_new_text
    def seed(mid, formula, mae, cos):
        return {"material_id": mid, "formula": formula, "site": 1, "element": "P", "mae": mae, "cosine": cos,
                "source": "DFT", "known": True}
    own, best = seed("mp-1228888", "AlGaP2", 0.169, 0.88), seed("gen:87efdeba", "AlGaP2", 0.165, 0.89)
    run = {"settings": {"targets": [[0.0] * 400]},
           "candidates": [{"rank": 2, "formula": "GaP", "site_to_target": {"0": 0}, "novel": True, "seed": best},
                          {"rank": 4, "formula": "AlP", "site_to_target": {"0": 0}, "novel": True, "seed": own}]}
    dft = {r: {"status": "done", "result": {"dos_match": {"0": {"mae": m, "cosine": c}}}}
           for r, m, c in ((2, 0.5, 0.8), (4, 0.153, 0.903))}
    dft[4]["result"]["structure_type"] = {"aflow": "AB_cF8_216_c_a", "strukturbericht": "B3",
                                          "mineral": "Zincblende, Sphalerite", "pearson": "cF8"}
    assert best_new_text(run, dft, {2: 0.5, 4: 0.153}) == (
        "#4 · AlP, zincblende (B3), DFT cosine 0.903. Grown from AlGaP2 · mp-1228888 site 1 (P), DFT MAE 0.169. The closest known "
        "site the run grew from: AlGaP2 · DFT-checked candidate 87efdeba site 1 (P), 0.165 (cosine 0.890).")
    best["mae"] = 0.1                   # the known site stays ahead: said so
    assert best_new_text(run, dft, {4: 0.153}).endswith("0.100 (cosine 0.890), closer than any new structure checked.")
    run["candidates"].pop(0)            # its own seed is the run's closest: one sentence
    assert best_new_text(run, dft, {4: 0.153}).endswith(
        "DFT MAE 0.169. That seed is the closest known site the run grew from.")
    assert best_new_text(run, dft, {}) == ""
    # walk 18: the best new LiCoO2 for a LiCoO2 target, read as a find; a polymorph of the reference is said
    from studio.results import polymorph_text
    c = run["candidates"][0]
    assert "polymorph" not in best_new_text(run, dft, {4: 0.153}) and polymorph_text(run, c) == ""
    c["reference_compound"] = True
    assert "#4 · AlP, zincblende (B3), DFT cosine 0.903. A polymorph of the target's own compound: its closeness is " \
        "expected." in best_new_text(run, dft, {4: 0.153})
    assert polymorph_text(run, c).startswith("Another polymorph of the target's own compound, AlP: a new structure")
    del c["reference_compound"]         # a run from before the flag: the reference among those of its composition
    run["settings"]["reference_id"], c["same_formula"] = "mp-1550", ["mp-1550"]
    assert polymorph_text(run, c) and not polymorph_text(run, {**c, "novel": False})


def test_when_no_candidate_qualifies_for_dft_the_reason_is_counted():
    run = {"candidates": [{"rank": 1, "structurally_valid": False, "n_atoms": 4, "novel": None},
                          {"rank": 2, "structurally_valid": True, "n_atoms": 12, "novel": True},
                          {"rank": 3, "structurally_valid": True, "n_atoms": 2, "novel": False, "matches": "mp-1"}]}
    assert certify.pick(run, 3, max_atoms=8, labelled=frozenset({"mp-1"})) == []
    assert certify.nothing_to_check(run, max_atoms=8, labelled=frozenset({"mp-1"})) == (
        "none of the 3 candidates qualifies (1 with invalid geometry, 1 larger than 8 atoms, "
        "1 known with a stored DFT label)")


def test_per_source_picks_add_each_sources_best_after_the_overall_best():
    subs = {"origin": "substitution", "seed": {"material_id": "mp-1"}}
    cands = [{"rank": r, "structurally_valid": True, "n_atoms": 4, "novel": True, **(subs if r in (1, 2, 3, 5) else {})}
             for r in range(1, 9)]
    run = {"candidates": cands}
    assert certify.pick(run, 3, per_source=False) == [1, 2, 3]
    # the three best are all swaps: the three best draws (4, 6, 7) follow them
    assert certify.pick(run, 3, per_source=True) == [1, 2, 3, 4, 6, 7]
    cands[3]["structurally_valid"] = False          # an ineligible draw gives way to the next one
    assert certify.pick(run, 3, per_source=True) == [1, 2, 3, 6, 7, 8]
    plain = {"candidates": [{k: v for k, v in c.items() if k not in subs} for c in cands]}
    assert certify.pick(plain, 3, per_source=True) == certify.pick(plain, 3) == [1, 2, 3]   # one source
    # the page's "up to" count bounds every pick: mixed top 3s give the most extras
    mixed = {"candidates": [{**c, **(subs if c["rank"] in (2, 5, 7) else {}), "structurally_valid": True}
                            for c in plain["candidates"]]}
    assert len(certify.pick(mixed, 3, per_source=True)) == certify.max_checks(3, per_source=True) == 6
    assert certify.max_checks(3, per_source=False) == 3
    # walk 11: every candidate below the top 3 was known; the estimate said "up to 6" and the page
    # ran 3 checks without a word (it now asks passed_over with the most pick could choose)
    known = {"candidates": [{**c, "structurally_valid": True, **({"novel": False, "matches": "mp-9"} if c["rank"] > 3 else {})}
                            for c in mixed["candidates"]]}
    ranks = certify.pick(known, 3, labelled=frozenset({"mp-9"}), per_source=True)
    assert ranks == [1, 2, 3]
    assert certify.passed_over(known, ranks, labelled=frozenset({"mp-9"}), top=certify.max_checks(3, True)) == \
        "3 checks of the 6 asked for: no other candidate qualifies (below #3: 5 known with a stored DFT label)."
    # the review: nine draws and one swap give 4 checks of up to 6, and the other draws qualify: said so
    one_swap = {"candidates": [{**c, **(subs if c["rank"] == 5 else {})} for c in plain["candidates"]]}
    ranks = certify.pick(one_swap, 3, per_source=True)
    assert ranks == [1, 2, 3, 5]                 # (#4 is an invalid draw)
    assert certify.passed_over(one_swap, ranks, top=6).endswith("4 checks of up to 6: the overall best and each kind's "
                                                           "best, which overlap or are few (worth a check: 6 draws, "
                                                           "1 swap).")


def test_a_candidate_that_is_its_template_is_marked_and_not_checked_again():
    """Grown from a template that is no known structure (an upload, a candidate), a draw can come
    back as the template itself: novel to the known tables, but nothing new, and not worth a DFT
    check (a candidate's own check is its parent's)."""
    from dosmatgen_core.candidates.pipeline import _candidate_record
    from dosmatgen_core.sampling import modes
    from dosmatgen_core.sampling.sampler import Generated
    from dosmatgen_core.structures import Crystal
    tpl = Structure(Lattice.cubic(4.1), ["Ni", "Au", "Au", "Au"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    spec = modes.template(Crystal.from_structure(tpl), 0.3, {0: np.ones(400)})[0]
    ev = {"novel": True, "structurally_valid": True, "n_atoms": 4}
    moved = tpl.copy()
    moved.translate_sites([0], [0.02, 0, 0])          # within the matcher's tolerance: still the template
    other = tpl.copy()
    other.replace(1, "Ag")                             # another compound
    same = _candidate_record(0, Generated(Crystal.from_structure(moved), 0), spec, ev, [0])
    new = _candidate_record(1, Generated(Crystal.from_structure(other), 1), spec, ev, [0])
    assert same["same_as_template"] is True and new["same_as_template"] is False
    known = _candidate_record(2, Generated(Crystal.from_structure(moved), 2), spec, {**ev, "novel": False}, [0])
    assert "same_as_template" not in known             # a known one says what it matches instead
    run = {"candidates": [{**same, "rank": 1}, {**new, "rank": 2}]}
    assert certify.pick(run, 3, per_source=False) == [2]
    assert certify.nothing_to_check({"candidates": [{**same, "rank": 1}]}) == \
        "none of the 1 candidate qualifies (1 equal to its template)"


def test_two_swaps_that_build_one_crystal_get_one_dft_check():
    """A round makes both kinds of swap: when the element a same-group swap replaces occurs once,
    beyond the matched site's first shell, the distant swap builds the very same crystal. The run
    marks the lower-ranked one a copy (evaluate.unique_flags), and it gets no GPAW check of its own:
    that check would be its twin's again."""
    from dosmatgen_core.candidates.seeding import Seed, distant_variants, substituted_variants
    from dosmatgen_core.labels.labeller import supported_elements
    from dosmatgen_core.scoring.evaluate import unique_flags
    from dosmatgen_core.scoring.search import SiteHit
    from dosmatgen_core.structures import Crystal
    allowed = supported_elements()
    # a Ni chain along c: Au 3 Å away on both sides, one Cu 6 Å away
    t = Structure(Lattice.tetragonal(2.5, 12.0), ["Ni", "Au", "Cu", "Au"], [[0, 0, 0], [0, 0, .25], [0, 0, .5], [0, 0, .75]])
    seed = Seed(SiteHit("mp-y", "Au2CuNi", 0, "Ni", 4, 0.1, 0.95, 0.0), Crystal.from_structure(t))
    swaps = substituted_variants(seed, allowed) + distant_variants(seed, allowed)
    structs = [c.to_structure() for c, _ in swaps]
    flags = unique_flags(structs)
    twins = [(r["kind"], r["by"]) for (c, r), u in zip(swaps, flags) if not u]
    assert twins == [("distant", "Ag")]        # Cu → Ag at site 2, built by both kinds
    run = {"candidates": [{"rank": k + 1, "structurally_valid": True, "n_atoms": len(s), "novel": True, "unique": u,
                           "origin": "substitution"} for k, (s, u) in enumerate(zip(structs, flags))]}
    copy = next(c["rank"] for c in run["candidates"] if not c["unique"])
    picked = certify.pick(run, len(structs), per_source=True)
    assert copy not in picked and len(picked) == len(structs) - 1
    only = {"candidates": [{**c, "rank": 1} for c in run["candidates"] if not c["unique"]]}
    assert certify.nothing_to_check(only) == "none of the 1 candidate qualifies (1 copying a better-ranked candidate)"


def test_a_novel_candidate_whose_relaxed_cell_is_a_known_compound_is_named_and_not_new(tmp_path, fake_gpaw):
    """Novelty is judged on the drawn cell, the DFT on the relaxed one: the check names the known
    structure the relaxed cell is (L1_0 AuCu drawn 4 % strained relaxes back into mp-522), the card
    says so, and the run's "DFT MAE, best new" leaves it out. A B2 AuCu cell, which novelty's
    matcher also puts on mp-522 (the Bain path joins them), stays cubic when relaxed: another
    crystal, so it stays new."""
    from studio.results import new_structure_maes
    from dosmatgen_core.scoring.verify import relaxed_into
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 2)
    run = store.get(rid)
    l10 = to_structure(open_db(DB_URL).get("mp-522").atoms)
    l10.apply_strain([0.04, 0.04, -0.03])
    run["candidates"][0]["cif"] = runs.to_cif(l10)
    for c in run["candidates"]:
        c["novel"] = True          # as the drawn cell's check said
    store.save(run)
    b2 = verify.Verifier(store, label_dir=None).run(rid, 2, relaxed=True)
    assert b2["status"] == "done" and b2["result"]["relaxed_into"] is None
    res = verify.Verifier(store, label_dir=None).run(rid, 1, relaxed=True)
    assert res["status"] == "done", res.get("error")
    assert res["result"]["relaxed_into"] == "mp-522"
    assert relaxed_into(res) == "mp-522" and new_structure_maes(run, {1: res}, {1: 0.1}) == {}
    res["result"]["relaxed_into"] = None          # a relaxed cell that stayed new counts
    assert relaxed_into(res) is None and new_structure_maes(run, {1: res}, {1: 0.1}) == {1: 0.1}
    # the relaxed cell's symmetry is kept and named in the DFT table
    from studio.results import cell_text
    assert res["result"]["spacegroup"] == "P4/mmm (123)" and b2["result"]["spacegroup"] == "Pm-3m (221)"
    # ... and its structure type (prototypes): new to the tables, a known type, said on the card
    assert cell_text(run["candidates"][0], res, run["settings"]) == "relaxed · P4/mmm (123) · tetraauricupride (L1₀)"
    assert cell_text(run["candidates"][1], b2, run["settings"]) == "relaxed · Pm-3m (221) · B2"
    from studio.results import type_text
    assert type_text(b2["result"]) == ("Its relaxed cell has the B2 structure type (AFLOW prototype "
                                       "AB_cP2_221_b_a): new to the project's tables, but a compound in a known "
                                       "structure type may be known elsewhere.")
    unrelaxed = verify.Verifier(store, label_dir=None).run(rid, 1, relaxed=False)
    assert "relaxed_into" not in unrelaxed["result"]          # the drawn cell is what novelty judged
    assert "spacegroup" not in unrelaxed["result"] and cell_text(run["candidates"][0], unrelaxed) == "as drawn · tetraauricupride (L1₀)"


def test_the_checks_say_which_better_ranked_candidates_needed_none():
    """Fewer checks than asked: the page names the candidates ranked above the last checked that
    need none, by reason; none passed over, nothing to say."""
    cands = [{"rank": 1, "structurally_valid": True, "n_atoms": 4, "novel": False, "matches": "mp-1"},
             {"rank": 2, "structurally_valid": True, "n_atoms": 4, "novel": True},
             {"rank": 3, "structurally_valid": True, "n_atoms": 4, "novel": True, "unique": False},
             {"rank": 4, "structurally_valid": True, "n_atoms": 4, "novel": False, "matches": "mp-2"},
             {"rank": 5, "structurally_valid": True, "n_atoms": 4, "novel": True}]
    run = {"candidates": cands}
    ranks = certify.pick(run, 2, labelled=frozenset({"mp-1", "mp-2"}), per_source=False)
    assert ranks == [2, 5]
    assert certify.passed_over(run, ranks, labelled=frozenset({"mp-1", "mp-2"})) == (
        "Not checked among the candidates ranked better than #5 (#1 to #4): 2 known with a stored DFT label, "
        "1 copying a better-ranked candidate.")
    assert certify.passed_over(run, [1, 2]) is None and certify.passed_over(run, []) is None
    # fewer qualify than asked for (a walk: three promised, one run, nothing said): the rest say why
    few = {"candidates": cands[:4] + [{"rank": 5, "structurally_valid": False, "n_atoms": 4, "novel": None}]}
    assert certify.pick(few, 3, labelled=frozenset({"mp-1", "mp-2"}), per_source=False) == [2]
    assert certify.passed_over(few, [2], labelled=frozenset({"mp-1", "mp-2"}), top=3) == (
        "Not checked among the candidates ranked better than #2 (#1): 1 known with a stored DFT label. "
        "1 check of the 3 asked for: no other candidate qualifies (below #2: 1 with invalid geometry, "
        "1 known with a stored DFT label, 1 copying a better-ranked candidate).")


def test_a_check_of_a_windowed_target_is_scored_on_the_window(tmp_path, fake_gpaw):
    """A run whose target is known on −8…0 eV only: the GPAW curve (0.1 everywhere) is compared there,
    where the target is 0.1 too; the 5.0 written outside the window counts for nothing, in the
    check and in the stored-label MAE alike."""
    from dosmatgen_core import dos
    from studio.results import dft_maes
    w = [-8.0, 0.0]
    t = np.full(400, 5.0)
    t[dos.window_slice(w)] = 0.1
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 1, target=t.tolist())
    run = store.get(rid)
    run["settings"]["window"] = w
    store.save(run)
    res = verify.Verifier(store, label_dir=None).run(rid, 1)
    m = res["result"]["dos_match"]["0"]
    assert m["mae"] == pytest.approx(0.0, abs=1e-9) and m["cosine"] == pytest.approx(1.0)
    whole = {**run, "settings": {**run["settings"], "window": None}}
    stored = {1: {0: {"y": np.full(400, 0.1)}}}
    assert dft_maes(whole, {}, stored)[1] > 1.0 and dft_maes(run, {}, stored)[1] == pytest.approx(0.0, abs=1e-9)


def test_a_running_check_says_whether_it_relaxes_or_runs_gpaw(tmp_path, fake_gpaw, monkeypatch):
    """The walk: a Verify check spent 413 s relaxing and 22 s in GPAW while the page said only
    "running (relaxation, if asked for, then GPAW)". The check keeps its stage; the batch's line names it."""
    store = runs.RunStore(tmp_path / "r.db")
    rid = _run_with(store, 1)
    v = verify.Verifier(store, label_dir=None)
    seen = []
    real_relax, real_label = verify.relax_in_site_order, verify.label_isolated

    def relax(cif, *a, **kw):
        seen.append(v.status(rid, 1)["stage"])
        return real_relax(cif, *a, **kw)

    def label(task, recipe, timeout, cpu=False):
        seen.append(v.status(rid, 1)["stage"])
        return real_label(task, recipe, timeout)
    monkeypatch.setattr(verify, "relax_in_site_order", relax)
    monkeypatch.setattr(verify, "label_isolated", label)
    assert v.run(rid, 1, relaxed=True)["status"] == "done"
    assert seen == [verify.STAGES["relax"], verify.STAGES["gpaw"]]
    p = {"ranks": [1, 2], "done": [], "failed": [], "running": [1, 2], "left_s": 100, "active": True,
         "cancelled": False, "per_s": 100, "stages": {1: verify.STAGES["gpaw"], 2: verify.STAGES["relax"]}}
    assert certify.status_line(p, lambda s: f"{s:.0f} s").endswith(
        f"; now #1 GPAW, #2 {verify.STAGES['relax']}")
    # a store made before stages were kept gains the column
    import sqlite3
    old = tmp_path / "old.db"
    with sqlite3.connect(old) as con:
        con.execute("CREATE TABLE verifications (run_id TEXT, rank INTEGER, status TEXT, started REAL, finished REAL, "
                    "result TEXT, error TEXT, PRIMARY KEY (run_id, rank))")
    verify.Verifier(runs.RunStore(old), label_dir=None)
    with sqlite3.connect(old) as con:
        assert "stage" in {r[1] for r in con.execute("PRAGMA table_info(verifications)")}


def test_two_candidates_that_relax_into_one_crystal_get_one_gpaw_run(tmp_path, monkeypatch):
    """Uniqueness is judged on the drawn cells: two draws in other site orders and cells can relax
    into one crystal (a walk's RbLiCl2, P1 and Cmcm as drawn, checked twice). The second takes the
    first's rows, each of its sites the row of the site it sits on, whether the first has finished
    or is still running; no second GPAW run, and the result says whose check it is."""
    calls = []

    def label(task, recipe, timeout, cpu=False):           # a row per site that says which element it is
        calls.append(task["cif"])
        time.sleep(0.4)
        rows = [np.full(400, 0.1 if site.specie.symbol == "Cu" else 0.3) for site in runs.structure_of({"cif": task["cif"]})]
        return {"material_id": task["material_id"], "cif": task["cif"], "site_dos": np.array(rows).tolist(),
                "e_fermi_eV": 0.0, "energy_eV": -1.0, "seconds": 0.4, "recipe": {"name": recipe.name}}

    def relax(cif, potential=None):             # both relax into CsCl-type CuAu, each in its own order
        species = [site.specie.symbol for site in runs.structure_of({"cif": cif})]
        shift = 0.25 * (species[0] == "Au")
        s = Structure(Lattice.cubic(3.1), species, [[shift] * 3, [0.5 + shift] * 3])
        return runs.to_cif(s), {"relax_seconds": 0.1}
    monkeypatch.setattr(verify, "label_isolated", label)
    monkeypatch.setattr(verify, "relax_in_site_order", relax)
    store = runs.RunStore(tmp_path / "r.db")
    cells = [Structure(Lattice.cubic(3.0), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
             Structure(Lattice.orthorhombic(3.0, 3.05, 2.95), ["Au", "Cu"], [[0.02, 0, 0], [0.5, 0.5, 0.5]])]
    target = np.exp(-np.linspace(-10, 10, 400) ** 2).tolist()
    cands = [{"index": k, "rank": k + 1, "cif": runs.to_cif(s), "formula": "AuCu", "n_atoms": 2,
              "site_to_target": {1 - k: 0}, "valid": True, "structurally_valid": True} for k, s in enumerate(cells)]
    rid = store.save({"title": "t", "settings": {"seed": 1, "targets": [target]}, "summary": {"n": 2},
                      "candidates": cands, "baseline": []})
    cert = certify.Certifier(verify.Verifier(store, label_dir=None, workers=2), prior_s=1.0, workers=2)
    cert.start(rid, [1, 2], relaxed=True)
    cert.wait(rid, poll=0.05)
    v = verify.Verifier(store, label_dir=None)
    res = {r: v.status(rid, r) for r in (1, 2)}
    assert all(r["status"] == "done" for r in res.values()), res
    assert len(calls) == 1
    twin = next(r for r in res.values() if r["result"].get("same_crystal_as"))
    assert twin["result"]["same_crystal_as"] == 3 - twin["rank"] and twin["result"]["seconds"] == 0.0
    from dosmatgen_core.candidates.words import twin_text      # the card and Verify say whose check it is
    assert twin_text(twin["result"]).startswith(f"Relaxed into the same crystal as #{3 - twin['rank']}")
    for r in res.values():       # each candidate's rows in its own site order: Cu 0.1, Au 0.3
        own = [site.specie.symbol for site in runs.structure_of(store.get(rid)["candidates"][r["rank"] - 1])]
        assert [row[0] for row in r["result"]["site_dos"]] == [0.1 if e == "Cu" else 0.3 for e in own]
    # a cell of another crystal is no twin (the site map needs one crystal in cells of one size)
    from dosmatgen_core.scoring.twins import site_map
    assert site_map(cells[0], Structure(Lattice.cubic(4.2), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0]])) is None


def test_a_twins_rows_follow_the_sites_it_sits_on_not_its_order():
    """The site map of two cells of one crystal in other site orders and origins: each site of the
    second takes the row of the first's site it sits on, two Li sites that only their positions
    tell apart included; the same crystal at another volume, or strained, is no twin."""
    from dosmatgen_core.scoring.twins import rows_of_twin, site_map
    lat = Lattice.from_parameters(4.1, 5.3, 6.2, 84, 97, 101)      # P1: no two sites alike
    first = Structure(lat, ["Li", "Li", "Y", "S"], [[0, 0, 0], [0.31, 0.12, 0.27], [0.55, 0.48, 0.61], [0.8, 0.7, 0.15]])
    order = [2, 0, 3, 1]                                             # the second lists them Y, Li, S, Li
    shift = np.array([0.13, 0.41, 0.07])
    second = Structure(lat, [first[k].species_string for k in order], [(first[k].frac_coords + shift) % 1 for k in order])
    m = site_map(second, first)
    assert m == order
    rows = np.arange(4)[:, None] * np.ones((4, 400))                 # row k of the first: the value k
    assert rows_of_twin(rows, m)[:, 0].tolist() == [2, 0, 3, 1]
    bigger = second.copy()
    bigger.scale_lattice(second.volume * 1.2)
    assert site_map(bigger, first) is None
    strained = Structure(Lattice.from_parameters(4.1, 5.3, 6.5, 84, 97, 101), second.species, second.frac_coords)
    assert site_map(strained, first) is None
