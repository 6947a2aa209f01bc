"""DFT-certified ranking: the GPAW recipe on a run's top candidates, in the background.

After a run is ranked by the predictor, its best few candidates (cells small enough for a
calculation of minutes) are calculated with the labelling recipe, several at once: each GPAW
process is single-threaded, so on a 2-core machine two run side by side and three candidates
take two calculation times, not three. A cancel stops the rest from starting (the ones already
running complete). Results live in the run store (`Verifier`), so a reload, the Runs page and
the zip all see them; `progress` says how far it is and how long is left.
"""
from __future__ import annotations

import heapq
import math
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from dosmatgen_core.labels.labeller import FAST_RECIPE, Recipe
from dosmatgen_core.scoring.verify import STAGES, default_workers, relaxed_into
from dosmatgen_core.settings import SHIPPED

MAX_ATOMS = SHIPPED.max_dft_atoms      # larger cells take far longer than a few minutes
DEFAULT_TOP = SHIPPED.dft_top
PER_SOURCE = SHIPPED.dft_per_source


def dft_eligibility(c: dict, max_atoms: int = MAX_ATOMS, labelled: frozenset = frozenset()) -> str | None:
    """Why a candidate gets no DFT check ('known with a stored DFT label', 'copying a better-ranked
    candidate', 'equal to its template', 'with invalid geometry', 'larger than 8 atoms'), or None
    when it qualifies. A known structure's stored label is already its answer; a copy's check would
    be its better-ranked twin's again (two kinds of swap can build one crystal); larger cells take
    far longer than a few minutes."""
    if c.get("novel") is False and c.get("matches") in labelled:
        return "known with a stored DFT label"
    if c.get("unique") is False:        # evaluate.unique_flags over the run in rank order
        return "copying a better-ranked candidate"
    if c.get("same_as_template"):      # grown from a candidate: its own check is the parent's
        return "equal to its template"
    if not c.get("structurally_valid"):
        return "with invalid geometry"
    if c["n_atoms"] > max_atoms:
        return f"larger than {max_atoms} atoms"
    return None


def pick(run: dict, top: int = DEFAULT_TOP, max_atoms: int = MAX_ATOMS, labelled: frozenset = frozenset(),
         per_source: bool = PER_SOURCE) -> list[int]:
    """Ranks of the best `top` candidates worth a DFT check (dft_eligibility: `labelled` ids are
    the reference db's known structures). per_source: then also the best `top` of each source
    (the generator's draws, the substitutions) not among them: the predictor's error is larger
    than the gaps between the two kinds' best, so DFT decides between them. The overall best come
    first, so they land first."""
    ranked = [c for c in sorted(run["candidates"], key=lambda c: c["rank"])
              if dft_eligibility(c, max_atoms, labelled) is None]
    out = [c["rank"] for c in ranked[:top]]
    if per_source:
        for source in dict.fromkeys(source_of(c) for c in ranked):
            out += [c["rank"] for c in ranked if source_of(c) == source][:top]
    return list(dict.fromkeys(out))


def passed_over(run: dict, ranks: list[int], max_atoms: int = MAX_ATOMS, labelled: frozenset = frozenset(),
                top: int = 0) -> str | None:
    """Why fewer candidates are checked than asked: the ones ranked better than the last checked that
    need no check ('#1-#8: 5 known with a stored DFT label, 2 copying a better-ranked
    candidate'), and, when fewer than `top` (the checks asked for) qualify at all, why the ones
    below it do not (a walk's page promised three checks, ran one, and said nothing); None when
    none was passed over."""
    if not ranks:
        return None
    last = max(ranks)
    why = _reasons([c for c in run["candidates"] if c["rank"] < last and c["rank"] not in ranks], max_atoms, labelled)
    span = f"#1 to #{last - 1}" if last > 2 else "#1"
    out = [f"Not checked among the candidates ranked better than #{last} ({span}): {why}."] if why else []
    if len(ranks) < top:
        n = len(ranks)
        worth = [c for c in run["candidates"] if dft_eligibility(c, max_atoms, labelled) is None]
        if any(c["rank"] not in ranks for c in worth):
            # others qualify: per kind, each kind's best are taken, and they overlap the overall best
            # or a kind has few worth a check (the review: "no other qualifies" was said of 6 that did)
            kinds = {KIND_WORDS[k]: sum(source_of(c) == k for c in worth) for k in KIND_WORDS}
            out.append(f"{n} check{'s' * (n != 1)} of up to {top}: the overall best and each kind's best, which "
                       "overlap or are few (worth a check: " + ", ".join(f"{v} {k if v != 1 else k[:-1]}" for k, v in kinds.items())
                       + ").")
        else:
            below = _reasons([c for c in run["candidates"] if c["rank"] > last], max_atoms, labelled)
            out.append(f"{n} check{'s' * (n != 1)} of the {top} asked for: no other candidate qualifies"
                       + (f" (below #{last}: {below})." if below else "."))
    return " ".join(out) or None


def _reasons(cands: list[dict], max_atoms: int, labelled: frozenset) -> str:
    """'2 with invalid geometry, 1 known with a stored DFT label': dft_eligibility's reasons, counted."""
    why = dict.fromkeys(("with invalid geometry", f"larger than {max_atoms} atoms", "known with a stored DFT label",
                         "copying a better-ranked candidate", "equal to its template"), 0)
    for c in cands:
        if (reason := dft_eligibility(c, max_atoms, labelled)) is not None:
            why[reason] += 1
    return ", ".join(f"{k} {w}" for w, k in why.items() if k)


def max_checks(top: int, per_source: bool, n_sources: int = 2) -> int:
    """The most checks pick() can choose: with per_source it takes the union of each source's
    best `top` (which holds the overall best `top`), so up to `top` per source."""
    return top * (n_sources if per_source else 1)


KIND_WORDS = {"generator": "draws", "substitution": "swaps"}      # source_of's kinds, as the page names them


def source_of(c: dict) -> str:
    """'substitution' for a seed's swap, 'generator' for a draw (every candidate of other modes)."""
    return "substitution" if c.get("origin") == "substitution" else "generator"


def nothing_to_check(run: dict, max_atoms: int = MAX_ATOMS, labelled: frozenset = frozenset()) -> str:
    """Why pick() found no candidate: 'none of the 3 candidates qualifies (2 with invalid geometry,
    1 known with a stored DFT label)'."""
    n = len(run["candidates"])
    parts = _reasons(run["candidates"], max_atoms, labelled)
    return f"none of the {n} candidate{'s' * (n != 1)} qualifies" + (f" ({parts})" if parts else "")


def check_top(cert: "Certifier", run: dict, top: int, relaxed: bool = SHIPPED.dft_relaxed, per_source: bool = PER_SOURCE,
              labelled: frozenset = frozenset(), after: Callable[["Batch"], None] | None = None) -> dict:
    """After a generation: start the DFT checks of its top candidates (pick) in the background.
    {'ranks': those started} or, when none qualifies, {'ranks': [], 'why': nothing_to_check}.
    after: called with the batch, in its thread, once every check has ended (Certifier.start)."""
    if top < 1:
        return {"ranks": []}
    ranks = pick(run, top, labelled=labelled, per_source=per_source)
    if not ranks:
        return {"ranks": [], "why": nothing_to_check(run, labelled=labelled)}
    asked = max_checks(top, per_source, len({source_of(c) for c in run["candidates"]}))
    cert.start(run["id"], ranks, relaxed=relaxed, top=top, after=after, spares=spares(run, ranks, labelled=labelled),
               asked=asked)
    return {"ranks": ranks}


def replacement(status: dict | None, spares: list[int], replaced: dict, picked: int) -> int | None:
    """The spare (taken off `spares`) checked in place of a finished check whose relaxed cell is a
    known compound, while fewer than `picked` have been replaced; else None."""
    if relaxed_into(status) and spares and len(replaced) < picked:
        return spares.pop(0)
    return None


def check_in_turn(verifier, run: dict, ranks: list[int], relaxed: bool, labelled: frozenset = frozenset(),
                  log: Callable[[str], None] = print) -> list[int]:
    """The CLI's checks, one after the other, as a batch runs them (Certifier): each check that
    relaxed into a known compound hands its place to the next candidate worth one (spares). The
    ranks checked, in order."""
    todo, done, replaced, left = list(ranks), [], {}, spares(run, ranks, labelled=labelled)
    while todo:
        rank = todo.pop(0)
        done.append(rank)
        if (status := finished_check(verifier, run["id"], rank)) is not None:
            log(f"#{rank} of run {run['id']} has its GPAW check already")     # as a batch skips it
        else:
            log(f"GPAW check of #{rank} of run {run['id']}")
            try:
                status = verifier.run(run["id"], rank, relaxed=relaxed)
            except Exception as exc:        # as in a batch: one bad candidate does not stop the others
                verifier.fail(run["id"], rank, f"{type(exc).__name__}: {exc}")
                log(f"#{rank}: the check failed: {type(exc).__name__}: {exc}")
                continue
        if (new := replacement(status, left, replaced, len(ranks))) is not None:
            replaced[rank] = new
            todo.append(new)
            log(f"#{rank} relaxed into the known compound {relaxed_into(status)}: #{new} is checked in its place")
    return done


def finished_check(verifier, run_id: str, rank: int) -> dict | None:
    """The check's status when it has finished already (a batch and the CLI skip it, and a
    replacement still follows from it), else None."""
    status = verifier.status(run_id, rank)
    return status if status is not None and status.get("status") == "done" else None


def spares(run: dict, ranks: list[int], max_atoms: int = MAX_ATOMS, labelled: frozenset = frozenset()) -> list[int]:
    """The candidates worth a check that pick() left out, best first: one takes the place of a check
    whose relaxed cell is a known compound (it certifies no new structure: the paper preset's demo
    checked three that relaxed into Au3Ni, and showed no new match at all)."""
    return [r for r in pick(run, len(run["candidates"]), max_atoms, labelled, per_source=False) if r not in ranks]


@dataclass
class Batch:
    run_id: str
    ranks: list[int]
    prior_s: float
    workers: int = 1
    relaxed: bool = False          # relax each candidate with the default potential before its DFT
    top: int = 0                   # the first `top` ranks are the overall best, the rest each kind's (pick)
    started: float = field(default_factory=time.time)
    cancel_flag: threading.Event = field(default_factory=threading.Event)
    finished: bool = False
    # called once every check has ended, before `finished`; a second start() on a running batch adds one
    afters: list[Callable[["Batch"], None]] = field(default_factory=list)
    spares: list[int] = field(default_factory=list)    # next in line when a check relaxes into a known compound
    replaced: dict[int, int] = field(default_factory=dict)      # such a check's rank → the rank checked instead
    picked: int = 0                # how many of `ranks` pick() chose (the rest are replacements)
    handled: set[int] = field(default_factory=set)      # ranks whose check (and replacement) the worker is through with
    asked: int = 0                 # the most pick() could have chosen (the estimate's "up to 6")
    skipped: set[int] = field(default_factory=set)      # checks the user skipped before they started

    def __post_init__(self):
        self.picked = self.picked or len(self.ranks)


class Certifier:
    """One per process (the app caches it). verifier: a scoring.verify.Verifier whose
    concurrency is at least `workers`; prior_s: seconds per calculation on a quiet CPU, before any
    has landed; slowdown(workers): how many times longer a check takes beside the CPU's other work
    now (the app's estimate scales by the same factor), read as a batch starts, so that "taking
    longer than the usual" under load compares with the loaded time, as the estimate did."""

    def __init__(self, verifier, prior_s: float, workers: int | None = None, recipe: Recipe = FAST_RECIPE,
                 slowdown: Callable[[int], float] | None = None):
        self.verifier, self.prior_s, self.recipe = verifier, prior_s, recipe
        self.workers, self.slowdown = workers, slowdown
        self.batches: dict[str, Batch] = {}
        self._lock = threading.Lock()      # a batch's afters against its finishing

    def start(self, run_id: str, ranks: list[int], relaxed: bool = SHIPPED.dft_relaxed, top: int = 0,
              after: Callable[[Batch], None] | None = None, spares: list[int] = (), asked: int = 0) -> Batch:
        """Check these ranks of the run in a thread of their own. after: called with the batch once
        every check has ended (the next round starts there), before it reads as finished, so that a
        page that sees it finished sees what followed too. spares: the next in line (best first);
        one is checked in place of each check that relaxed into a known compound, up to as many as
        were picked. A batch already running for the run is returned, with `after` added to it (a
        second chain on one run would otherwise never hear that the checks ended). So an `after` that
        starts checks of the same run again only adds itself: a next round is a new run (Chain)."""
        with self._lock:
            old = self.batches.get(run_id)
            if old is not None and not old.finished:
                if after is not None:
                    old.afters.append(after)
                return old
            workers = self.workers or default_workers(len(ranks) or 1)
            b = Batch(run_id, list(ranks), self.prior_s * self._slowdown(workers), workers, relaxed,
                      top, afters=[after] if after is not None else [], spares=list(spares), asked=asked)
            self.batches[run_id] = b
        threading.Thread(target=self._work, args=(b,), daemon=True, name=f"dft-{run_id}").start()
        return b

    def _slowdown(self, workers: int) -> float:
        if self.slowdown is None:
            return 1.0
        try:
            return max(1.0, float(self.slowdown(workers)))
        except Exception:         # a load that cannot be read leaves the quiet prior, nothing worse
            return 1.0

    def wait(self, run_id: str, poll: float = 1.0) -> None:
        while not self.batches[run_id].finished:
            time.sleep(poll)

    def _work(self, b: Batch) -> None:
        todo: list[int] = []
        cond, busy = threading.Condition(), [0]

        def worker():
            while True:
                with cond:
                    # an idle worker stays while another's check may still hand it a replacement
                    while not todo and busy[0] and not b.cancel_flag.is_set():
                        cond.wait(0.5)
                    if not todo or b.cancel_flag.is_set():
                        return
                    rank = todo.pop(0)
                    if rank in b.skipped:       # skipped while it waited its turn: never started
                        b.handled.add(rank)
                        continue
                    busy[0] += 1
                try:        # a store locked past its timeout: the check is run (again), never marked failed
                    s = finished_check(self.verifier, b.run_id, rank)
                except Exception:
                    s = None
                try:
                    # a finished check is skipped; a cancel also stops one still waiting for a free core
                    if s is None:
                        s = self.verifier.run(b.run_id, rank, self.recipe, relaxed=b.relaxed,
                                              cancelled=lambda r=rank: b.cancel_flag.is_set() or r in b.skipped)
                except Exception as exc:        # one bad candidate must not stop the others
                    self.verifier.fail(b.run_id, rank, f"{type(exc).__name__}: {exc}")
                finally:
                    with cond:
                        if not b.cancel_flag.is_set() and (new := replacement(s, b.spares, b.replaced, b.picked)):
                            b.replaced[rank] = new
                            b.ranks.append(new)
                            todo.append(new)
                        b.handled.add(rank)
                        busy[0] -= 1
                        cond.notify_all()

        try:
            todo += b.ranks
            threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(b.workers, len(todo)))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            self._finish(b)

    def _finish(self, b: Batch) -> None:
        """Call the batch's afters, including any added while they ran, then mark it finished."""
        while True:
            with self._lock:
                if not b.afters:
                    b.finished = True
                    return
                fns, b.afters = b.afters, []
            for fn in fns:
                try:
                    fn(b)
                except Exception:       # what follows the checks must not leave the batch running forever
                    traceback.print_exc()

    def cancel(self, run_id: str) -> None:
        b = self.batches.get(run_id)
        if b:
            b.cancel_flag.set()

    def skip(self, run_id: str, rank: int) -> bool:
        """Skip one check of the run's batch that has not started (queued, or waiting for a free
        core); the others go on (walk 18 could only stop them all). False when there is none to
        skip: no such batch or rank, or its check has begun its clock."""
        b = self.batches.get(run_id)
        if b is None or b.finished or rank not in b.ranks or rank in b.handled:
            return False
        s = self.verifier.status(run_id, rank)
        if s is not None and (s.get("status") != "running" or s.get("stage") != STAGES["wait"]):
            return False        # done, failed, or relaxing or running GPAW: it finishes (a label)
        b.skipped.add(rank)
        return True

    def progress(self, run_id: str) -> dict | None:
        """{'ranks', 'done', 'failed', 'running', 'left_s', 'active', 'cancelled', 'relaxed', 'per_s',
        'top', 'picked' (how many of ranks pick() chose), 'asked' (the most it could have chosen),
        'replaced' (a check that relaxed into a known compound → the rank checked in its place),
        'unreplaced' (such checks with none in their place: why, 'none left' or 'at most'),
        'overdue', 'running_s' (how long the longest-working check has worked), 'stages'} for the
        run's batch."""
        b = self.batches.get(run_id)
        if b is None:
            return None
        st = {r: self.verifier.status(run_id, r) for r in b.ranks}
        done = [r for r, s in st.items() if s and s["status"] == "done"]
        failed = [r for r, s in st.items() if s and s["status"] == "failed"]
        running = [r for r, s in st.items() if s and s["status"] in ("queued", "running")]
        # a check waiting for a free core has not started its clock: it counts as one still to run
        working = [r for r in running if st[r].get("stage") != STAGES["wait"]]
        per = per_check(b, st)
        started = [st[r].get("started") or time.time() for r in working]
        # a skipped check (one that waited for a core leaves no row) is one of ranks, never to run
        return {"ranks": b.ranks, "skipped": sorted(b.skipped), "done": done, "failed": failed, "running": running,
                "left_s": time_left(b, st, done, failed, working, per), "active": not b.finished,
                "cancelled": b.cancel_flag.is_set(), "relaxed": b.relaxed, "per_s": per, "top": b.top,
                "picked": b.picked, "asked": b.asked or b.picked, "replaced": dict(b.replaced),
                # a replacement comes as its check ends, so one without is final (a cancel aside)
                "unreplaced": {r: "at most" if len(b.replaced) >= b.picked else "none left" for r in done
                               if r in b.handled and relaxed_into(st[r]) and r not in b.replaced}
                if not b.cancel_flag.is_set() else {},
                # a check running past the usual time: the countdown would only sit near zero
                "overdue": bool(started) and time.time() - min(started) > per,
                "running_s": time.time() - min(started) if started else 0.0,
                # what each running check is doing (verify.STAGES): a relaxation can take most of its time
                "stages": {r: st[r]["stage"] for r in running if st[r].get("stage")}}


def skippable(p: dict | None, statuses: dict) -> set[int]:
    """The ranks of a working batch (Certifier.progress) whose checks have not started, which
    Certifier.skip can skip: no row yet, or one waiting for a free core. statuses: rank →
    Verifier.status."""
    if p is None or not p["active"] or p["cancelled"]:
        return set()
    return unstarted(p, statuses) - set(p.get("skipped", ()))


def unstarted(p: dict, statuses: dict) -> set[int]:
    """The ranks of a batch (Certifier.progress) whose checks have not started: no row, or one
    waiting for a free core (a cancel or a skip stops these; statuses: rank → Verifier.status)."""
    return {r for r in p["ranks"] if r not in p["done"] and r not in p["failed"]
            and ((s := statuses.get(r)) is None or (s.get("status") == "running" and s.get("stage") == STAGES["wait"]))}


def per_check(b: Batch, st: dict) -> float:
    """Seconds per check (relaxation included): the mean of those done, else the prior. A check that
    took a twin's rows (verify: the same crystal once relaxed) ran no GPAW and says nothing of it."""
    secs = [s["result"]["seconds"] + (s["result"].get("relax_seconds") or 0.0)
            for s in st.values() if s and s["status"] == "done" and s.get("result")
            and s["result"].get("same_crystal_as") is None]
    return sum(secs) / len(secs) if secs else b.prior_s


def time_left(b: Batch, st: dict, done: list, failed: list, running: list, per: float | None = None) -> float:
    """Wall time until the batch is done: each running check needs what is left of the usual time
    per calculation (per_check, unless the caller has it; at least a tenth of it, since an overdue
    check still has some left), and each queued one starts on the first free worker. A check that
    has run longer than the usual time says the usual time is longer now (a loaded CPU slows them
    all), so the longest-running check's time so far is the least each one takes."""
    if b.cancel_flag.is_set():
        return 0.0
    per = per_check(b, st) if per is None else per
    now = time.time()
    ran = [now - (st[r].get("started") or now) for r in running]
    per = max([per] + ran)
    slots = [max(per - t, 0.1 * per) for t in ran]
    slots += [0.0] * max(b.workers - len(slots), 0)
    heapq.heapify(slots)
    todo = len(b.ranks) - len(b.skipped)       # a skipped check never runs
    for _ in range(todo - len(done) - len(failed) - len(running)):
        heapq.heappush(slots, heapq.heappop(slots) + per)
    return max(slots) if running or len(done) + len(failed) < todo else 0.0


def dft_seconds(top: int, per_s: float, workers: int | None = None) -> float:
    """Wall time of `top` calculations of per_s seconds each, `workers` at a time."""
    w = workers or default_workers(max(top, 1))
    return per_s * math.ceil(top / w) if top > 0 else 0.0


def status_line(p: dict, duration) -> str:
    """'DFT check of candidates #1, #2, #3: 1 of 3 done, ~2 min left' ('Relaxation and DFT check
    ...' when each candidate is relaxed first; known candidates are not among them): which checks,
    how many landed, then the clauses that apply (unreplaced known compounds, failures, the time
    left or the slow one, or what a cancel stops)."""
    n = len(p["ranks"])
    what = "Relaxation and DFT check" if p.get("relaxed") else "DFT check"
    text = f"{what} of candidate{'s' * (n != 1)} {_which(p)}: {len(p['done'])} of {n - len(p.get('skipped', ()))} done"
    text += _unreplaced(p)
    if p.get("skipped"):
        text += ", " + ", ".join(f"#{r}" for r in p["skipped"]) + " skipped"
    if p["failed"]:
        text += f", {len(p['failed'])} failed"
    if p["active"] and not p["cancelled"]:
        text += _time_left(p, duration)
    elif p["cancelled"]:
        text += _cancelled(p)
    return text


def _which(p: dict) -> str:
    """The checks by rank: the top, each kind's best after them, and the replacements."""
    picked = p.get("picked") or len(p["ranks"])
    top = min(p.get("top") or picked, picked)
    which = ", ".join(f"#{r}" for r in p["ranks"][:top])
    if p["ranks"][top:picked]:        # pick's per-kind extras: say why a #9 follows #1-#3
        which += " and the best of each kind (draws, swaps), " + ", ".join(f"#{r}" for r in p["ranks"][top:picked])
    if replaced := p.get("replaced"):   # spares checked in place of checks that relaxed into known compounds
        which += ", and " + ", ".join(f"#{new} in place of #{old}" for old, new in replaced.items()) + \
            f" (relaxed into {'a known compound' if len(replaced) == 1 else 'known compounds'})"
    return which


def _unreplaced(p: dict) -> str:
    """Checks that relaxed into known compounds with none in their place, and why: said, or a walk
    counted three known compounds and one replacement."""
    if not (left := p.get("unreplaced")):
        return ""
    picked = p.get("picked") or len(p["ranks"])
    one = len(left) == 1
    return (f"; {', '.join(f'#{r}' for r in left)} relaxed into {'a known compound' if one else 'known compounds'}"
            + (" too" if p.get("replaced") else "") + ", with "
            + ("no candidate worth a check left to take " + ("its" if one else "their") + " place"
               if "none left" in left.values() else
               f"no more replacements than the {picked} checks picked"))


def _time_left(p: dict, duration) -> str:
    """A working batch's time left, or, past the usual time, the slow check's own clock (a countdown
    would only sit near zero); then what each running check is doing."""
    if not p.get("overdue"):
        text = f", ~{duration(p['left_s'])} left"
    else:
        # its own clock only where it reads longer than the usual time ('~2 min (running for 2 min)' did not)
        ran = duration(p["running_s"]) if p.get("running_s") else ""
        slow = f"one is taking longer than the usual ~{duration(p['per_s'])}" + (
            f" (running for {ran})" if ran and ran != duration(p["per_s"]) else "")
        waiting = len(p["ranks"]) - len(p["done"]) - len(p["failed"])
        if waiting > 1 and p["left_s"] > 0.15 * p["per_s"]:   # others still to run: their time, the slow one named
            text = f", ~{duration(p['left_s'])} left; {slow}"
        else:                                       # only the slow one
            text = f", {slow}"
    if p.get("stages"):
        text += "; now " + ", ".join(f"#{r} {what}" for r, what in sorted(p["stages"].items()))
    return text


def _cancelled(p: dict) -> str:
    """What a cancel stops: a GPAW run already started finishes (and becomes a label); only the
    ones not started stop."""
    left = [r for r in p["ranks"] if r not in p["done"] + p["failed"] + p["running"] + p.get("skipped", [])]
    parts = []
    if p["running"] and p["active"]:
        parts.append(", ".join(f"#{r}" for r in p["running"]) + (" is" if len(p["running"]) == 1 else " are")
                     + " already running and will finish")
    if left:
        parts.append(", ".join(f"#{r}" for r in left) + " will not start")
    return f" (cancelled: {'; '.join(parts)})" if parts else " (cancelled after every check had started)"
