"""What a run will cost, said before it starts: generating and scoring the candidates, then the
DFT checks, each from rates measured on a quiet CPU and scaled for the other work on it now. The
Generate page says it; benchmarks/certify.py records it beside the time the flow took."""
from __future__ import annotations

from dataclasses import dataclass

from dosmatgen_core.candidates import pipeline
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.verify import default_workers
from studio import shared as studio


@dataclass(frozen=True)
class Estimate:
    seconds: float            # generating and scoring, scaled for the CPU's other work
    dft_seconds: float        # the DFT checks after it (0 without checks), scaled alike
    n_scored: int             # structures scored: draws, swaps (a ceiling) and baseline samples
    n_checks: int             # DFT checks at most
    cold: tuple[str, ...]     # what this process's first run still builds (pipeline.cold_parts)
    gen_x: float              # the slowdowns applied
    dft_x: float
    load: float               # the other work, in cores' worth at this process's priority
    cpus: int
    rates: dict               # the measured sampling rates (studio.timing_rates)


def estimate(mode: str, n_candidates: int, steps: int, particles: int, substitutions: bool = False,
             grow_from: bool = False, stability: bool = False, dft_top: int = 0, dft_relaxed: bool = True,
             per_source: bool = False, load: float | None = None, cpus: int | None = None,
             under_way: dict[str, float] | None = None) -> Estimate:
    """The time a run with these settings takes here now; load, cpus: the CPU's other work
    (default: read now, studio.cpu_load); under_way: seconds a cold part has already been building
    in the background (the app's parse of the MP tables), so that only what is left counts."""
    rates = studio.timing_rates()
    seconds = studio.estimate_seconds(n_candidates, steps, particles, baseline=mode != "unconditional", rates=rates)
    # scored: the drawn candidates, up to as many substitutions (of both kinds, grown from a candidate),
    # and one baseline sample per candidate
    two_sources = mode == "seeded" and bool(substitutions)
    n_scored = n_candidates * (1 + two_sources * (1 + bool(grow_from)) + (mode != "unconditional"))
    seconds += studio.scoring_seconds(n_scored, stability=bool(stability))
    # a fresh process's first run also builds tables that later runs reuse (startup.json)
    cold = tuple(pipeline.cold_parts(relaxed=False))
    if load is None or cpus is None:
        load, cpus = studio.cpu_load()
    gen_x = studio.sampling_slowdown(load, cpus)
    for part in cold:       # the background's seconds were loaded ones: in quiet seconds, fewer
        seconds += max(0.0, studio.startup_seconds([part]) - (under_way or {}).get(part, 0.0) / gen_x)
    n_checks = certify.max_checks(dft_top, per_source=bool(per_source and two_sources)) if mode != "unconditional" else 0
    dft_cold = pipeline.cold_parts(relaxed=bool(n_checks and dft_relaxed), check_novelty=False)
    dft = (certify.dft_seconds(n_checks, studio.dft_seconds_prior(relaxed=dft_relaxed)) + studio.startup_seconds(dft_cold)
           if n_checks else 0.0)
    dft_x = studio.slowdown(default_workers(max(n_checks, 1)), load, cpus)
    return Estimate(seconds * gen_x, dft * dft_x, n_scored, n_checks, cold, gen_x, dft_x, load, cpus, rates)
