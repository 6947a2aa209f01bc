"""DFT-guided rounds: the next run grown from the best-shaped site DFT has confirmed, while the
best checked candidate's shape still misses the bar.

A checked candidate is the closest thing to the target that DFT has confirmed among the new
structures, so a scientist goes on from it (benchmarks.refine: about one target in thirty rescued
per round, at about 25 s of generation and three relaxed DFT checks per round). The first round
seeds by MAE, though, and a labelled site can have the target's shape more closely than every
check: then the next round grows from those known sites instead (benchmarks.pool: for 5 of 20
hard targets such a site existed, and rounds from them rescued 2), provided they are no farther off
in size than the check (seeding.beats: both rescues came from such seeds). Either way the round is the
seeded mode (the model's draws and both kinds of swap), with the finished run's other settings
and the next random seed; known sites a round grew from are not taken again.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Callable

import numpy as np

from dosmatgen_core.candidates.pipeline import Request
from dosmatgen_core.candidates.seeding import grow_source, seed_arguments
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.verify import relaxed_into
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


def next_round(run: dict, dft: dict[int, dict], bar: float = BAR, exclude: list | None = None) -> Request | None:
    """The request of the next round, when best_check's candidate misses the bar: grown from the
    known sites whose DFT cosine to the target beats it (known_request), when there are any, else
    from that candidate (grow_request); None when nothing is checked or the best check meets the
    bar. exclude: material ids never to seed from (tried: the reference and the known sites
    earlier rounds grew from); default the run's own seed_exclude."""
    best = best_check(run, dft)
    # a check whose relaxed cell is a known structure meets the bar for no new structure: go on from it
    if best is None or (best[1] >= bar and not relaxed_into(dft.get(best[0]["rank"]))):
        return None
    c, _ = best
    src = grow_source(run, c, dft[c["rank"]])
    exclude = sorted(set((run["settings"].get("seed_exclude") or []) if exclude is None else exclude))
    req = known_request(run, src, exclude)
    try:
        req.seeds()                 # searched once; the request keeps them
    except ValueError:
        return grow_request(run, src, exclude)     # no known site beats the check
    return req


def tried(run: dict) -> list[str]:
    """The material ids a round after this run must not seed from: the run's own seed_exclude (its
    reference), and, for a round grown from known sites, those sites' structures (tried already;
    the candidates' seed records name them)."""
    settings = run["settings"]
    out = set(settings.get("seed_exclude") or [])
    if settings.get("seed_above") is not None:
        out |= {s["material_id"] for c in run["candidates"] if (s := c.get("seed")) and s.get("known", True)}
    return sorted(out)


def _round_kwargs(run: dict, src: dict, exclude: list[str]) -> dict:
    """What every round keeps of its run (the other settings) and what it changes: seeded mode
    towards the target the source's site carried, the random seed advanced (the same draws again
    would teach nothing)."""
    settings = run["settings"]
    names = {f.name for f in fields(Request)}
    kw = {k: v for k, v in settings.items() if k in names}
    kw.update(mode="seeded", targets=[settings["targets"][src["target_row"]]], cond_sites=[], fixed={}, pinned=[],
              template=None, template_id=None, seed=int(settings.get("seed", 0)) + 1, grow_from=[],
              seed_above=None, seed_mae_at_most=None, seed_exclude=list(exclude))
    return kw


def grow_request(run: dict, src: dict, exclude: list | None = None) -> Request:
    """A round from one candidate of a stored run (seeding.grow_source's answer, its checked cell
    once it has one): seeded mode grown from it alone, towards the target its site carried, the
    run's other settings kept. exclude: carried on for later rounds (default the run's)."""
    exclude = (run["settings"].get("seed_exclude") or []) if exclude is None else exclude
    return Request(**{**_round_kwargs(run, src, exclude), "grow_from": [seed_arguments(src)],
                      "title": round_title(run["settings"].get("title", ""), src)})


def known_request(run: dict, src: dict, exclude: list[str]) -> Request:
    """A round from the known sites (the run's database, at most SHIPPED.max_dft_atoms atoms, none
    of exclude) whose stored DFT curve has the target's shape more closely than src, the best check,
    and is no farther off in size (seed_by cosine, seed_above its cosine, seed_mae_at_most its MAE,
    up to the run's n_seeds). Its seeds() raises when no known site beats src."""
    return Request(**{**_round_kwargs(run, src, exclude), "seed_by": "cosine", "seed_above": float(src["cosine"]),
                      "seed_mae_at_most": float(src["mae"]),
                      "title": round_title(run["settings"].get("title", ""), src, known=True)})


def round_title(title: str, src: dict, known: bool = False) -> str:
    """'target: … · grown from #2 of run ab12', or '… · grown from known sites shaped better than #2
    of run ab12' (one link of the chain per round, not a pile)."""
    what = "known sites shaped better than " if known else ""
    return f"{title.split(' · grown from ')[0]} · grown from {what}#{src['rank']} of run {src['run']}"


def target_of(title: str) -> str:
    """The target a run's title names ('target: uploaded DOS (ni.csv) · grown from #2 of run ab12'
    → 'uploaded DOS (ni.csv)'), for saying which target a round works towards."""
    return title.split(" · grown from ")[0].removeprefix("target: ")


def same_target(a, b) -> bool:
    """Whether two target curves are one (a round's and the form's), to 1e-6 states/eV."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=1e-6))


def aims_at(run: dict, src: dict, target, window) -> bool:
    """Whether a round grown from src (grow_source's answer for a candidate of run) works towards
    this target on this window: the curve its site carried and the energies it was compared on."""
    row = run["settings"]["targets"][int(src.get("target_row", 0))]
    known = run["settings"].get("window")
    return same_target(row, target) and (list(known) if known else None) == (list(window) if window else None)


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
    if best[3] >= bar and (into := relaxed_into(best[1].get(best[2]["rank"]))):
        return (f"The rounds asked for are done: {so_far} best GPAW-checked candidate, {best_text(best)}, reaches "
                f"{bar}, but relaxed it is the known structure {into}, so no new structure does yet. Its card's "
                f"\"Grow from this candidate\" (dosmatgen generate --grow-from {best[0]['id']}:{best[2]['rank']}) "
                "starts another round.")
    if best[3] >= bar:
        return (f"Round {round_no} ended: {so_far} best GPAW-checked candidate, {best_text(best)}, at least {bar}: "
                "no further round is needed.")
    return (f"The rounds asked for are done: {so_far} best GPAW-checked candidate, {best_text(best)}, still below "
            f"{bar}. Its card's \"Grow from this candidate\" (dosmatgen generate --grow-from "
            f"{best[0]['id']}:{best[2]['rank']}) starts another.")


def checking(more: int, bar: float = BAR) -> str:
    """Round 1's checks have started, with `more` rounds allowed after it (a walk saw no word on
    the rounds until round 2 began)."""
    return (f"Round 1 of up to {1 + more}: once its DFT checks end, a further round starts from the best check "
            f"if its DFT cosine to the target is below {bar}.")


def running(best: tuple[dict, dict, dict, float], round_no: int, more: int, bar: float = BAR,
            req: Request | None = None) -> str:
    """Round round_no (req, next_round's answer) has started from best, or from the known sites
    shaped better than it; more: rounds still allowed after it."""
    after = f"; up to {more} more round{'s' * (more > 1)} after this one" if more else ""
    if req is not None and req.seed_above is not None:
        sites = ", ".join(f"{s.hit.formula} site {s.hit.site} ({s.hit.element}, {s.hit.cosine:.2f})"
                          for s in req.seeds())
        return (f"Round {round_no} is running, grown from the known sites whose stored DFT curve has the target's "
                f"shape more closely (cosine) than the best GPAW-checked candidate so far, at no larger MAE "
                f"({best_text(best)}, below {bar}): {sites}{after}.")
    return (f"Round {round_no} is running, grown from the best GPAW-checked candidate so far: {best_text(best)}, "
            f"below {bar}{after}.")


def after_checks(run: dict, dft: dict[int, dict], cancelled: bool, left: int, round_no: int,
                 earlier: tuple[dict, dict[int, dict]] | None = None,
                 bar: float = BAR) -> tuple[Request | None, tuple | None, str]:
    """What follows round round_no's checks (run, its DFT statuses; earlier: the earlier run that
    holds the best check so far, with its statuses): (the next round's request or None, the best
    check so far (best_of), what to say). No round follows stopped checks, a round with nothing
    checked, a best check that meets the bar, or the last round asked for (left: rounds allowed
    after this one). Stored labels of known candidates do not count: they are no candidates."""
    best = best_of(([earlier] if earlier is not None else []) + [(run, dft)])
    if cancelled:
        return None, best, CANCELLED
    if best is None:
        return None, None, NOTHING_CHECKED
    req = next_round(best[0], best[1], bar, exclude=tried(run)) if left > 0 else None
    if req is None:
        return None, best, outcome(best, round_no, bar)
    return req, best, running(best, round_no + 1, left - 1, bar, req=req)


def run_rounds(run: dict, verifier, generate: Callable[[Request], dict], rounds: int, top: int = certify.DEFAULT_TOP,
               relaxed: bool = True, per_source: bool = certify.PER_SOURCE, labelled: frozenset = frozenset(),
               bar: float = BAR, log: Callable[[str], None] = print) -> list[dict]:
    """The rounds one after the other (the CLI's; the app runs the same steps as events): GPAW
    checks of the run's picks (certify.pick, checked in turn: certify.check_in_turn), then, while rounds are left
    and the best check so far misses the bar, the next round (next_round; generate: a Request →
    its stored run) grown from the known sites shaped better than that check or else from it, and
    its checks. One record per round: its run, the ranks checked, and the best check so far (its
    run, rank, DFT cosine and MAE). The app's rounds (candidates.chain) take the same steps in
    background threads, one started by the other (after_checks)."""
    history, earlier = [], None
    for k in range(rounds + 1):
        picked = certify.pick(run, top, labelled=labelled, per_source=per_source)
        ranks = certify.check_in_turn(verifier, run, picked, relaxed, labelled, log=lambda m: log(f"round {k + 1}: {m}"))
        dft = {r: s for r in ranks if (s := verifier.status(run["id"], r)) is not None}
        # the app's decision (after_checks): the same rounds from the same checks
        req, best, note = after_checks(run, dft, False, rounds - k, k + 1, earlier, bar)
        rec = {"round": k + 1, "run": run["id"], "checked": ranks, "best": None}
        if best is not None:
            base, base_dft, c, cos = best
            rec["best"] = {"run": base["id"], "rank": c["rank"], "dft_cosine": cos,
                           "dft_mae": float(check_match(base_dft, c)["mae"])}
            earlier = (base, base_dft)
        history.append(rec)
        log(note)
        if req is None:
            break
        run = generate(req)
    return history
