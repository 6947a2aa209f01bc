"""DFT-guided rounds: the next run grown from the best candidate DFT has checked, while that
candidate's shape still misses the bar.

A checked candidate is the closest thing to the target that DFT has confirmed, so a scientist goes
on from it (benchmarks.refine: about one target in thirty rescued per round, at about 25 s of
generation and three relaxed DFT checks per round). The next round is the seeded mode grown from
that candidate alone, with the finished run's other settings and the next random seed.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Callable

import numpy as np

from dosmatgen_core.candidates.pipeline import Request
from dosmatgen_core.candidates.seeding import grow_source, seed_arguments
from dosmatgen_core.scoring import certify
from dosmatgen_core.settings import SHIPPED

BAR = SHIPPED.cosine_bar           # DFT cosine of the conditioned site to the target
MAX_ROUNDS = SHIPPED.max_rounds


def check_match(dft: dict[int, dict], c: dict) -> dict:
    """The finished GPAW check's match to the target ({"mae", "cosine"}, its rows read in the
    candidate's site order) of a candidate with one conditioned site; {} when there is none."""
    s = dft.get(c["rank"])
    if len(c["site_to_target"]) != 1 or not s or s.get("status") != "done" or not s.get("result"):
        return {}
    (site, _), = c["site_to_target"].items()
    return (s["result"].get("dos_match") or {}).get(str(site)) or {}


def checked_cosines(run: dict, dft: dict[int, dict]) -> dict[int, float]:
    """rank → DFT cosine of its conditioned site to the target, for the finished checks of
    candidates with one conditioned site (check_match)."""
    out = {}
    for c in run["candidates"]:
        m = check_match(dft, c)
        if np.isfinite(m.get("cosine", np.nan)):
            out[c["rank"]] = float(m["cosine"])
    return out


def best_check(run: dict, dft: dict[int, dict]) -> tuple[dict, float] | None:
    """The checked candidate whose DFT curve has the target's shape most closely, and its cosine;
    None when no candidate with one conditioned site is checked."""
    cos = checked_cosines(run, dft)
    if not cos:
        return None
    rank = max(cos, key=lambda r: (cos[r], -r))
    return next(c for c in run["candidates"] if c["rank"] == rank), cos[rank]


def best_of(runs: list[tuple[dict, dict[int, dict]]]) -> tuple[dict, dict, dict, float] | None:
    """Over the rounds so far, (run, its DFT statuses) each: the run, statuses, candidate and
    cosine of the best-shaped GPAW check (the first on a tie), so that a round that did worse than
    its parent's grows again from the better one, as benchmarks.refine does; None: none checked."""
    out = None
    for run, dft in runs:
        b = best_check(run, dft)
        if b is not None and (out is None or b[1] > out[3]):
            out = (run, dft, b[0], b[1])
    return out


def next_round(run: dict, dft: dict[int, dict], bar: float = BAR) -> Request | None:
    """The request of the next round: grown from best_check's candidate (grow_request); None when
    nothing is checked or the best check meets the bar."""
    best = best_check(run, dft)
    if best is None or best[1] >= bar:
        return None
    c, _ = best
    return grow_request(run, grow_source(run, c, dft[c["rank"]]))


def grow_request(run: dict, src: dict) -> Request:
    """A round from one candidate of a stored run (seeding.grow_source's answer, its checked cell
    once it has one): seeded mode grown from it alone, towards the target its site carried, the
    run's other settings kept and its random seed advanced (the same draws again would teach nothing)."""
    settings = run["settings"]
    names = {f.name for f in fields(Request)}
    kw = {k: v for k, v in settings.items() if k in names}
    kw.update(mode="seeded", targets=[settings["targets"][src["target_row"]]], cond_sites=[], fixed={}, pinned=[],
              template=None, template_id=None, seed=int(settings.get("seed", 0)) + 1,
              grow_from=[seed_arguments(src)], title=round_title(settings.get("title", ""), src))
    return Request(**kw)


def round_title(title: str, src: dict) -> str:
    """'target: … · grown from #2 of run ab12' (one link of the chain per round, not a pile)."""
    return f"{title.split(' · grown from ')[0]} · grown from #{src['rank']} of run {src['run']}"


# What the app and the CLI say when a round's checks end (best: best_of's answer).
CANCELLED = "The DFT checks were stopped, so no further round was started."
NOTHING_CHECKED = "No candidate of this run has a finished GPAW check to grow from, so no further round was started."


def best_text(best: tuple[dict, dict, dict, float]) -> str:
    base, base_dft, c, cos = best
    return (f"#{c['rank']} of run {base['id']}, has DFT cosine {cos:.2f} to the target "
            f"(DFT MAE {check_match(base_dft, c)['mae']:.3f})")


def outcome(best: tuple[dict, dict, dict, float], round_no: int, bar: float = BAR) -> str:
    """How the rounds ended with no further round: the bar met, or the rounds asked for spent."""
    so_far = "its" if round_no == 1 else "the rounds'"
    if best[3] >= bar:
        return (f"Round {round_no} ended: {so_far} best GPAW-checked candidate, {best_text(best)}, at least {bar}: "
                "no further round is needed.")
    return (f"The rounds asked for are done: {so_far} best GPAW-checked candidate, {best_text(best)}, still below "
            f"{bar}. Its card's \"Grow from this candidate\" starts another.")


def running(best: tuple[dict, dict, dict, float], round_no: int, more: int, bar: float = BAR) -> str:
    """Round round_no has started from best; more: rounds still allowed after it."""
    return (f"Round {round_no} is running, grown from the best GPAW-checked candidate so far: {best_text(best)}, "
            f"below {bar}" + (f"; up to {more} more round{'s' * (more > 1)} after this one" if more else "") + ".")


def run_rounds(run: dict, verifier, generate: Callable[[Request], dict], rounds: int, top: int = certify.DEFAULT_TOP,
               relaxed: bool = True, per_source: bool = certify.PER_SOURCE, labelled: frozenset = frozenset(),
               bar: float = BAR, log: Callable[[str], None] = print) -> list[dict]:
    """The rounds one after the other (the CLI's; the app runs the same steps as events): GPAW
    checks of the run's picks (certify.pick, each with verifier.run), then, while rounds are left
    and the best check so far misses the bar, the next round (generate: a Request → its stored
    run) grown from that check, and its checks. One record per round: its run, the ranks checked,
    and the best check so far (its run, rank, DFT cosine and MAE)."""
    history, pairs = [], []
    for k in range(rounds + 1):
        ranks = certify.pick(run, top, labelled=labelled, per_source=per_source)
        for r in ranks:
            log(f"round {k + 1}: GPAW check of #{r} of run {run['id']}")
            verifier.run(run["id"], r, relaxed=relaxed)
        dft = {r: s for r in ranks if (s := verifier.status(run["id"], r)) is not None}
        pairs.append((run, dft))                 # after the best earlier round, if any
        best = best_of(pairs)
        rec = {"round": k + 1, "run": run["id"], "checked": ranks, "best": None}
        if best is not None:
            base, base_dft, c, cos = best
            rec["best"] = {"run": base["id"], "rank": c["rank"], "dft_cosine": cos,
                           "dft_mae": float(check_match(base_dft, c)["mae"])}
            pairs = [(base, base_dft)]
        history.append(rec)
        if best is None:
            log(NOTHING_CHECKED)
            break
        if k == rounds or best[3] >= bar:
            log(outcome(best, k + 1, bar))
            break
        run = generate(next_round(best[0], best[1], bar))
        log(running(best, k + 2, rounds - k - 1, bar))
    return history
