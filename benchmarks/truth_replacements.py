"""The app's replacements on the truth bench: a check that relaxed into a known compound hands on
its place. The app (scoring/certify.py: spares, replacement, check_in_turn) checks the next candidate
worth a check of the run's ranking in place of each finished check whose relaxed cell is a known
compound, up to as many replacements as checks were picked; a replacement that relaxes into a
known compound hands its place on too. The bench's app default does the same with its spares."""
from __future__ import annotations

from typing import Callable

from benchmarks.truth_dft import cif_key, relaxed_known, score_candidate
from benchmarks.truth_settings import MAX_DFT_ATOMS, TOP
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.evaluate import unique_flags
from dosmatgen_core.scoring.verify import relaxed_into
from dosmatgen_core.structures import atoms_from_cif, to_structure


def source_kind(c: dict) -> str:
    """certify.source_of's kind of a bench candidate: a seed's swap carries its substitution."""
    return "substitution" if (c.get("seed") or {}).get("substitution") else "generator"


class Pending(Exception):
    """A check that has no DFT result yet (a summary calculates nothing; a run past its time)."""


class BenchChecks:
    """The bench's DFT cache as certify.check_in_turn's verifier: a candidate's status is its cached
    check ('done' with the known compound its relaxed cell is, relaxed_known, or 'failed');
    run() calculates with `calc` (None: nothing is calculated, the check is pending)."""

    def __init__(self, by_rank: dict[int, dict], cache: dict, calc: Callable[[dict], object] | None = None):
        self.by_rank, self.cache, self.calc = by_rank, cache, calc
        self.pending: list[int] = []

    def status(self, run_id: str, rank: int) -> dict | None:
        c = self.by_rank[rank]
        got = self.cache.get(cif_key(c["cif"]))
        if got is None:
            return None
        if "site_dos" not in got:
            return {"status": "failed", "error": got.get("failed")}
        return {"status": "done", "result": {"relaxed_into": relaxed_known(got) if c.get("novel") else None}}

    def run(self, run_id: str, rank: int, *args, **kw) -> dict:
        if (s := self.status(run_id, rank)) is None:
            if self.calc is None:
                raise Pending(f"#{rank} of {run_id} has no check yet")
            self.calc(self.by_rank[rank])
            if (s := self.status(run_id, rank)) is None:
                raise Pending(f"#{rank} of {run_id} has no check yet")
        return s

    def fail(self, run_id: str, rank: int, error: str) -> None:
        self.pending.append(rank)       # run() raised: not calculated (a DFT failure is a cached result)


def checks_with_replacements(picks: list[dict], spares: list[dict], cache: dict, calc=None, name: str = "site",
                             log: Callable[[str], None] = lambda m: None) -> dict:
    """The checks the app makes of a site's picks: its run is the picks and the spares ranked
    together by predicted MAE (the app's rank_key among valid new candidates, less its tier for
    pressed contacts: strain.json, it moves no site's best of 3), each flagged as
    unique or a copy of a better-ranked one (evaluate.unique_flags); certify.check_in_turn checks
    the picks (in certify.pick's order: the overall best, then each kind's), and for each check
    whose relaxed cell is a known compound the next spare worth a check (certify.spares), at most
    as many as were picked. calc: calculates a candidate (None: the cache alone). Returns
    'by_rank' (the run's candidates), 'ranks' (the picks' ranks), 'replaced' (a check's rank → the
    rank checked in its place), 'unreplaced' (such checks without one: 'none left' or 'at most'),
    and 'pending' (ranks with no check yet: the site's checks are not complete)."""
    pool = sorted([(c, True) for c in picks] + [(c, False) for c in spares], key=lambda p: p[0]["predicted_mae"])
    structs = [to_structure(atoms_from_cif(c["cif"])) for c, _ in pool]
    run = {"id": name, "candidates": [
        {"rank": r + 1, "origin": source_kind(c), "novel": c.get("novel", True), "unique": u,
         "structurally_valid": c.get("valid", True), "n_atoms": len(s)}
        for r, ((c, _), s, u) in enumerate(zip(pool, structs, unique_flags(structs)))]}
    by_rank = {r + 1: c for r, (c, _) in enumerate(pool)}
    picked = [r + 1 for r, (_, is_pick) in enumerate(pool) if is_pick]
    order = certify.pick(run, TOP, MAX_DFT_ATOMS, per_source=certify.PER_SOURCE)
    ranks = [r for r in order if r in picked] + [r for r in picked if r not in order]
    checks = BenchChecks(by_rank, cache, calc)
    done = certify.check_in_turn(checks, run, ranks, relaxed=True, log=log)
    # check_in_turn hands the spares out in turn to the checks that relaxed into known compounds, in
    # the order it finished them, until none is left or as many as were picked are replaced
    known = [r for r in done if r not in checks.pending and relaxed_into(checks.status(name, r))]
    new = done[len(ranks):]
    replaced = dict(zip(known, new))
    return {"by_rank": by_rank, "ranks": ranks, "replaced": replaced, "pending": sorted(set(checks.pending)),
            "unreplaced": {r: "at most" if len(replaced) >= len(ranks) else "none left"
                           for r in known if r not in replaced}}


def site_replacements(got: dict, scored: list[dict], site: dict, spares: list[dict] | None, dft_cache: dict) -> dict:
    """A complete site's checks as the app makes them (checks_with_replacements, from the cache):
    'checked' (the picks' and the replacements' checks with a DFT result), 'replacements' (each
    scored, with the rank it took the place of: `in_place_of_rank`, and `in_place_of_pick`, the
    replaced pick's place among the method's candidates, 1-based, when it was a pick) and
    'unreplaced'; or {'pending': why} when a replacement has no check yet, or the site's spares
    are unknown (spares None)."""
    sk = f"{site['material_id']}#{site['site']}"
    checked = [c for c in scored if "dft_mae" in c]
    if not any(c.get("relaxed_into") for c in scored):
        return {"checked": checked, "replacements": [], "unreplaced": []}
    if spares is None:
        return {"pending": "no spares cached (a run without --summarise redraws them)"}
    emu = checks_with_replacements(got["candidates"], spares, dft_cache, name=sk)
    if emu["pending"]:
        return {"pending": "replacement checks not calculated yet: " + ", ".join(f"#{r}" for r in emu["pending"])}
    by_rank, pick_of = emu["by_rank"], {id(c): i + 1 for i, c in enumerate(got["candidates"])}
    score = {r: scored[pick_of[id(by_rank[r])] - 1] for r in emu["ranks"]}
    for new in emu["replaced"].values():
        c = by_rank[new]
        score[new] = score_candidate(c, site["target"], dft_cache.get(cif_key(c["cif"])), site.get("window"))
    reps = [{"rank": new, "in_place_of_rank": old, "in_place_of": by_rank[old].get("formula"),
             **({"in_place_of_pick": pick_of[id(by_rank[old])]} if id(by_rank[old]) in pick_of else {}),
             "in_place_of_relaxed_into": score[old].get("relaxed_into"), **score[new]}
            for old, new in emu["replaced"].items()]
    return {"checked": checked + [r for r in reps if "dft_mae" in r], "replacements": reps,
            "unreplaced": [{"rank": r, "formula": by_rank[r].get("formula"), "relaxed_into": score[r].get("relaxed_into"),
                            "why": why} for r, why in emu["unreplaced"].items()]}
