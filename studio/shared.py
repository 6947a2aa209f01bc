"""What the Streamlit pages share: file locations, names people read, cost estimates, results files."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import numpy as np

from dosmatgen_core.dos import (AT_REST, EMAX, EMIN, MIN_SPAN_EV, SCALE_RANGE, SHIFT_RANGE_EV, SMEAR_RANGE_EV, EnergyRangeError, adjusted_target, curve_columns, file_window, grid_note, negative_note, read_dos_csv, read_dos_table,  # noqa: F401 (the pages read them here)
                                 table_to_grid, window_text)
from dosmatgen_core.paths import (DB_URL, GUIDE_PATH, HULL_PATH, MODEL_PATH,  # noqa: F401 (the pages read them here)
                                  PREDICTOR_PATH, ROOT, RUNS_PATH)
from dosmatgen_core.sampling import cores
from dosmatgen_core.scoring.search import twin_band
from dosmatgen_core.settings import PRESET_ID, SHIPPED  # noqa: F401
from dosmatgen_core.candidates.words import build_text  # noqa: F401 (the pages read it here)
from dosmatgen_core.names import (METHOD_WORDS, PROTOTYPES, adjusted_name, file_curve_name, formula, material_name, site_name,  # noqa: F401 (the pages read them here)
                                   spacegroup_name)

DEFAULT_PARTICLES = SHIPPED.particles
DEFAULT_STEPS = SHIPPED.steps
# below this many denoising steps most cells the model builds from noise come out invalid (atoms too
# close, the volume far off: a walk's 10-step runs had 0 of 4 valid); seeds and templates keep more
SOUND_STEPS = 50
DE_NOVO_MODES = ("masked", "fixed_type", "unconditional")


def few_steps_text(mode: str, steps: int) -> str:
    """The warning for a new-structure run at too few steps; '' where the steps are enough."""
    if mode not in DE_NOVO_MODES or steps >= SOUND_STEPS:
        return ""
    return (f"At {steps} denoising steps most new cells come out invalid (atoms too close or the volume far off): "
            f"use {SOUND_STEPS} or more. Growing from known sites or a template keeps more of a sound cell.")
RESULTS_DIR = ROOT / "benchmarks" / "results"     # read as files: the app never imports `benchmarks`
TIMING_FILE = RESULTS_DIR / "generate-timing-0061.json"
SCORING_FILE = RESULTS_DIR / "evaluate-heldout.json"     # seconds per structure of each scoring check
STARTUP_FILE = RESULTS_DIR / "startup.json"       # what a process's first run builds (benchmarks/startup.py)
LOAD_FILE = RESULTS_DIR / "load.json"             # slowdowns beside other busy processes (benchmarks/load.py)
DFT_SECONDS_PRIOR = 120.0                         # a 3-8 atom cell with the labelling recipe, 2-core CPU
def device_label() -> str:
    import torch
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores, no GPU found)"


def model_summary(card: dict) -> str:
    """One line on the shipped generator; a fine-tune counts its source model's steps too."""
    steps = int(card.get("steps") or 0)
    ws = card.get("warm_start")
    total = steps + int(ws.get("steps") or 0) if isinstance(ws, dict) else steps
    n_lab = card.get("n_labelled_structures") or 0
    how = (f"{total / 1000:.1f}k steps ({steps / 1000:.1f}k of them fine-tuning)" if total != steps
           else f"epoch {card.get('epoch')}, {steps / 1000:.1f}k steps")
    return (f"Generator: {how}; {n_lab} labelled + {(card.get('n_train') or 0) - n_lab} unlabelled "
            f"structures, {card.get('type_diffusion', 'continuous')} atom types ({card.get('date')})")


# ---- names people read -----------------------------------------------------------------------

def potential_label(name: str | None = None) -> str:
    """How people read a stability potential's name ('sevennet' → 'SevenNet-l3i5'); None: the
    default one, which the app's stability check and the Verify page's relaxation use."""
    # imported here: the stability module loads torch and both potentials' packages
    from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL, POTENTIALS
    return POTENTIALS.get(name or DEFAULT_POTENTIAL, str(name))




# ---- cost up front ---------------------------------------------------------------------------

def timing_rates(path: Path = TIMING_FILE) -> dict:
    """Seconds per candidate per step, steered (per particle) and plain, from the timing bench
    at torch's default threads; with the measured rows themselves for the caption."""
    rec = json.loads(Path(path).read_text())
    rows = [r for r in rec["runs"] if r.get("torch_threads", 2) == max(x.get("torch_threads", 2) for x in rec["runs"])]
    steered = min((r for r in rows if r.get("steering")), key=lambda r: r["steps"])
    plain = min((r for r in rows if not r.get("steering")), key=lambda r: r["steps"])
    k = int(steered["steering"]["particles"])
    return {"steered": steered["seconds"] / (steered["candidates"] * steered["steps"] * k),
            "plain": plain["seconds"] / (plain["candidates"] * plain["steps"]),
            "steered_row": steered, "plain_row": plain, "cpus": rec.get("machine", {}).get("cpus"),
            "source": Path(path).name}


def estimate_seconds(n_candidates: int, steps: int, particles: int, baseline: bool = True,
                     rates: dict | None = None) -> float:
    """Sampling time on the measured CPU: steered candidates cost `particles` trajectories each;
    the unconditional baseline (one plain sample per candidate) comes on top."""
    r = rates or timing_rates()
    if particles > 1:
        t = r["steered"] * n_candidates * steps * particles
    else:
        t = r["plain"] * n_candidates * steps
    if baseline:
        t += r["plain"] * n_candidates * steps
    return t


def scoring_seconds(n_structures: int, stability: bool = False, path: Path = SCORING_FILE) -> float:
    """Scoring time on the measured CPU: every structure (candidates, substitutions, baselines)
    passes validity, the predicted DOS, symmetry, uniqueness and novelty; the SevenNet hull, when
    asked for, relaxes each one and costs far more than the rest."""
    per = json.loads(Path(path).read_text())["seconds_per_candidate_per_check"]
    return n_structures * sum(v for k, v in per.items() if k != "stability" or stability)


def startup_seconds(parts: list[str], path: Path = STARTUP_FILE) -> float:
    """Seconds a first run spends building these parts (pipeline.cold_parts) on the measured CPU;
    0 for a part the record lacks, or without the record (the estimate then leaves it out)."""
    try:
        cold = json.loads(Path(path).read_text())["cold_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0
    return float(sum(cold.get(p, 0.0) for p in parts))


def cpu_load() -> tuple[float, int]:
    """(the other work the estimates share the CPU with, the number of cores): cores' worth of
    runnable threads of other processes, each by its scheduler weight against the app's
    (cores.competing_load: a niced labeller takes little from the app, and the load average's whole
    count made a walk's DFT estimate 4 times too long), or the one-minute load average where /proc
    cannot tell."""
    competing = cores.competing_load()
    return (os.getloadavg()[0] if competing is None else competing), os.cpu_count() or 1


def load_words(load: float, cpus: int) -> str:
    """'other work worth 1.4 busy cores of 2 at this app's priority'."""
    return f"other work worth {load:.1f} busy cores of {cpus} at this app's priority"


def slowdown(threads: int, load: float, cpus: int) -> float:
    """How many times longer a stage of `threads` busy threads takes beside `load` other busy
    processes on `cpus` cores than on the quiet CPU its rate was measured on, under fair sharing
    of the cores: max(1, (load + threads) / cpus) over the same at load 0. Checked against
    spinning processes in benchmarks/results/load.json (benchmarks/load.py)."""
    cpus = max(int(cpus), 1)
    return max(1.0, (float(load) + threads) / cpus) / max(1.0, threads / cpus)


def sampling_slowdown(load: float, cpus: int, path: Path = LOAD_FILE) -> float:
    """How many times longer the app's sampling takes beside `load` busy processes than on the quiet
    CPU its rate was timed on: measured (benchmarks/load.py; one torch thread per free core, as
    the app samples), interpolated, straight on past the last point; fair sharing of two threads
    where the record is missing."""
    try:
        rows = json.loads(Path(path).read_text())["stages"]["sampling"]["runs"]
        k = np.array([r["extra_busy"] for r in rows], float)
        x = np.array([r["measured_slowdown"] for r in rows], float)
    except (OSError, ValueError, KeyError, TypeError):
        return slowdown(2, load, cpus)
    x = x / x[0]                    # its quiet run is the estimate's own rate
    if load <= k[-1]:
        return max(1.0, float(np.interp(load, k, x)))
    return float(x[-1] + (x[-1] - x[-2]) / (k[-1] - k[-2]) * (load - k[-1]))


def busy_note(load: float, cpus: int, generation_x: float, dft_x: float = 1.0) -> str:
    """What the estimate says when other work holds the CPU: the load and how much it scaled the
    times by (slowdown); "" when the CPU is free enough not to slow anything."""
    if max(generation_x, dft_x) < 1.05:
        return ""
    scaled = f"×{generation_x:.1f} for generation" + (f", ×{dft_x:.1f} for the DFT checks" if dft_x >= 1.05 else "")
    return (f" The CPU is shared now ({load_words(load, cpus)}), so these times are scaled up for "
            f"it ({scaled}; the rates were measured on a quiet CPU).")


# a run's mode in words (tables); the Generate form's radio says more
MODE_WORDS = {"seeded": "grown from known sites", "masked": "new structure", "fixed_type": "new structure, element fixed",
              "template": "template", "unconditional": "no target (baseline)"}


# why a run has no candidates, by its status (the Verify page's message)
NO_CANDIDATES_YET = {"running": "it is still generating, and none has been scored yet",
                     "cancelled": "it was cancelled before any was scored",
                     "failed": "it failed before any was scored",
                     "interrupted": "its process ended before any was scored"}


def rounded(x: float | None, places: int = 3) -> float | None:
    """A number as the tables show it (3 decimals, as MAEs and cosines are everywhere); None stays."""
    return None if x is None else round(float(x), places)


def other_cell_note(status: dict | None, relaxed: bool) -> str:
    """The Verify page's word when the finished check shown below is of the other cell than the box
    asks for (checks are kept one per candidate); '' otherwise. Both stay in the DFT cache."""
    if not (status and status.get("status") == "done"):
        return ""
    done_relaxed = bool((status.get("result") or {}).get("relaxed"))
    if done_relaxed == bool(relaxed):
        return ""
    shown, asked = ("relaxed", "as drawn") if done_relaxed else ("as drawn", "relaxed")
    return (f"The check below is of the cell {shown}. Queueing now checks the cell {asked} and shows that one "
            f"instead; the check of the cell {shown} stays in the DFT cache and in the labels.")


def duration(seconds: float) -> str:
    """'40 s', '3 min', '1.5 h': rounded the way people say it."""
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


# ---- benchmark results -----------------------------------------------------------------------

def result_kind(path: Path) -> str:
    """The kind of a results file: the longest RESULT_KINDS name its stem starts with, whole words
    ('relaxed-novelty-x' → 'relaxed-novelty'), else its stem before the first '-' (generate, dft,
    models...): two benchmarks that share a first word are two kinds, not one latest."""
    stem = Path(path).stem
    named = [k for k in RESULT_KINDS if stem == k or stem.startswith(k + "-")]
    return max(named, key=len) if named else stem.split("-")[0]


def own_date(rec: dict) -> dt.datetime | None:
    """The record's own date (machine.date, else date), timezone-aware; None where it has none."""
    for d in ((rec.get("machine") or {}).get("date") if isinstance(rec.get("machine"), dict) else None, rec.get("date")):
        if isinstance(d, str):
            try:
                t = dt.datetime.fromisoformat(d)
                return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
            except ValueError:
                pass
    return None


_COMMIT_DATES: dict[str, dt.datetime | None] = {}


def commit_date(path: Path) -> dt.datetime | None:
    """When the git commit that last wrote the file's content was made (a pure move is not a write:
    the layout step moved every old record at once); None outside a git clone, without git, or for a
    file no commit holds. Asked of git once a file per process. Never the file's modification time:
    a checkout sets that, and it dated every undated record alike (the walk: the oldest of four
    predictors records shown as the latest)."""
    key = str(Path(path).resolve())
    if key not in _COMMIT_DATES:
        import subprocess
        p = Path(key)
        try:
            out = subprocess.run(["git", "log", "-1", "--follow", "--diff-filter=AM", "--format=%cI", "--", p.name],
                                 cwd=p.parent, capture_output=True, text=True, timeout=20).stdout.strip()
            _COMMIT_DATES[key] = dt.datetime.fromisoformat(out) if out else None
        except (OSError, ValueError, subprocess.SubprocessError):
            _COMMIT_DATES[key] = None
    return _COMMIT_DATES[key]


def result_date(rec: dict, path: Path) -> tuple[dt.datetime | None, str]:
    """(when the record was made, what says so): its own date ('record'), else the git commit that
    wrote it ('git commit'), else (None, 'unknown'). Never the file's modification time."""
    if (d := own_date(rec)) is not None:
        return d, "record"
    if (d := commit_date(path)) is not None:
        return d, "git commit"
    return None, "unknown"


def date_text(item: dict, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A latest_results item's date as the Model page shows it: 'date unknown' without one, and
    '(git commit)' after a date read from git rather than from the record."""
    if item.get("date") is None:
        return "date unknown"
    return item["date"].strftime(fmt) + (" (git commit)" if item.get("dated_by") == "git commit" else "")


def file_number(path) -> int:
    """The last number in a file's stem ('predictors-0054' → 54), -1 without one: a series' later
    files carry higher numbers."""
    found = re.findall(r"\d+", Path(path).stem)
    return int(found[-1]) if found else -1


def newness(item: dict) -> tuple:
    """How latest_results orders one kind's records, newest last: a known date before an unknown
    one, then the date, then the number in the file's name, then the name (records of one date or
    none: deterministic, the higher-numbered one newer)."""
    d = item.get("date")
    return (d is not None, d or dt.datetime.min.replace(tzinfo=dt.timezone.utc), file_number(item["file"]), item["file"])


def predicted_target_text(heldout: dict, element: str, gpaw_here: bool = True) -> str:
    """What a target read off the predictor is worth (walk 14 took an uploaded cell's predicted Ti
    curve for a measured one): the card's held-out MAE for the site's element family, beside the
    ways to a DFT target (GPAW here only where the page offers it: gpaw_here). A family the card
    holds no held-out sites of (the f block: the recipe labels no lanthanide or actinide) has no
    error to give: walk 15 read Gd's curve with the all-sites figure."""
    from pymatgen.core import Element
    block = f"{Element(element).block}-block"
    family = heldout.get(block)
    if family is None and heldout and block == "f-block":
        off = (": the DFT labels hold no f-block sites, so the predictor was never trained or tested on one and "
               "this curve is an extrapolation with no error to state")
    else:
        family = family or heldout.get("all") or {}
        which = f"{block} " if block in heldout else ""
        off = (f": on the {int(family['sites'])} held-out {which}sites it is off DFT by {family['mae']:.3f} "
               "states/eV on average" if family.get("mae") is not None else "")
    ways = ("GPAW on this cell (below), a labelled material, or a VASP run (vasprun.xml) of this cell gives a DFT "
            "target." if gpaw_here else
            "a labelled material, or a VASP run (vasprun.xml) of this cell, gives a DFT target.")
    return f"This {element} curve is the site-DOS predictor's, not DFT{off}. The target is a prediction too: {ways}"


def heldout_table(heldout: dict) -> "pd.DataFrame":
    """The predictor card's held-out numbers as the Model page shows them: the site count first
    (in half the page's width it was scrolled out of sight), metrics named with units, to 3
    decimals as the line above it and every other table (they showed 0.1977 under "MAE 0.198")."""
    import pandas as pd
    df = pd.DataFrame(heldout).T
    first = [c for c in ("sites",) if c in df]
    df = df[first + [c for c in df.columns if c not in first]]
    if first:
        df["sites"] = df["sites"].astype(int)
    return df.rename(columns=METRIC_NAMES).round(3)


# the Model page's training curves: the chart's legend shows about 25 characters a name and its
# axis title about 30 at its height ("validation (crystals with …" and "diffusion loss (lattice + coordinates + types" were cut)
LOSS_CURVES = {"train_loss": "training", "val_loss": "validation (all crystals)", "val_labelled_loss": "validation (DOS-labelled)"}
LOSS_AXIS = "diffusion loss"
# what each kind of benchmark record measures, in words a newcomer reads (result_kind's names)
# dos.match_metrics' keys as a table heads them: what each measures, with its unit
METRIC_NAMES = {"mae": "MAE (states/eV)", "mae_ef2": "MAE within ±2 eV of E_F (states/eV)", "cosine": "cosine",
                "wasserstein": "Wasserstein (eV)", "centre_shift": "centre shift (eV)"}
RESULT_KINDS = {
    "band-calibration": "the predictor's uncertainty band against DFT",
    "certify": "time from Generate to DFT-certified candidates", "dft": "DFT check of generated candidates",
    "dft9": "DFT check of candidates on 9 targets", "evaluate": "predictor and candidate checks on held-out sites",
    "generate": "generation: speed and predicted DOS match", "guidance": "guidance and steering strength",
    "label": "the labelling recipe's speed and accuracy", "load": "slowdown beside other work on the CPU",
    "models": "generator checkpoints compared", "oracle": "best of every DFT check and known site",
    "pipeline-floor": "known crystals through the relaxed DFT check, against their own labels",
    "pool": "unlabelled structures for the hard targets", "predictor": "site-DOS predictor against DFT",
    "predictor-feedback": "the predictor before and after retraining on candidates",
    "predictors": "site-DOS predictors compared", "refine": "rounds grown from the best DFT check",
    "relax": "relaxation's effect on the DFT match",
    "relaxed-match": "when a relaxed check is a known compound: the two DFT curves against the match",
    "relaxed-novelty": "novelty judged on the relaxed cell DFT calculated",
    "relaxed-prediction": "the predictor on the drawn and on the relaxed cell, against DFT",
    "search": "site-DOS search speed",
    "seed-moves": "how far a candidate moves from its seed", "seed-analysis": "seeded candidates against their seeds",
    "seed-type": "new crystals that keep their seed's arrangement of sites against new arrangements, by DFT",
    "site-map": "a known candidate's stored DFT site: by neighbour distances or by elements and positions",
    "structure-types": "the labelled materials' structure types: the AFLOW library's cells laid on them, or their label first",
    "seeding": "seeding strength",
    "semi_supervised": "unlabelled crystals in training", "split": "train / validation split",
    "stability": "stability hull", "startup": "a fresh process's first run",
    "strain": "drawn cells with atoms pressed together: the predictor's error against DFT",
    "top": "second batches drawn when too few draws are new crystals",
    "truth": "DFT truth: every method checked with GPAW", "types": "atom-type diffusion", "val": "validation",
    "truth-window": "DFT truth on targets known on part of the grid (the occupied states)",
    "window": "a DOS file covering part of the grid, matched on its window",
}


def result_title(item: dict) -> str:
    """'DFT truth: every method checked with GPAW (truth-b.json, 2026-12-04)'; 'date unknown' for a
    record with no date of its own and none in git."""
    what = RESULT_KINDS.get(item["kind"], item["kind"])
    return f"{what} ({item['file']}, {date_text(item, '%Y-%m-%d')})"


# a word of a record's key → the unit its value is in (the first word found, in this order: a time
# before an MAE, so 'ms mae' is a time)
UNIT_WORDS = (("ms", "ms"), ("seconds", "s"), ("s", "s"), ("minutes", "min"), ("mae", "states/eV"),
              ("rmse", "states/eV"), ("hull", "eV/atom"), ("ev", "eV"))


def quantity_unit(quantity: str) -> str:
    """The unit of a record row's value, read from the last part of its name ('methods · lookup ·
    dft mae best of 3' → 'states/eV', '… · seconds per site' → 's', 'speed · ms mae' → 'ms'), else
    an MAE named further up ('relaxed vs unrelaxed mae · mean'); '' for counts, shares, cosines
    and words."""
    parts = [set(p.lower().replace("_", " ").split()) for p in quantity.split(" · ")]
    if unit := next((u for word, u in UNIT_WORDS if word in parts[-1]), ""):
        return unit
    return "states/eV" if any("mae" in p for p in parts[:-1]) and not parts[-1] & {"share", "sites", "n", "cosine"} else ""


def record_rows(rec: dict) -> list[dict]:
    """A benchmark record as rows a reader scans: {'quantity', 'value'}, nested keys joined with
    ' · ' and underscores read as spaces; numbers to 3 decimals; a list of records (per site, per
    run) as its count, since its rows are in the file; the machine on one line."""
    def text(v) -> str:
        if isinstance(v, bool) or v is None:
            return "—" if v is None else ("yes" if v else "no")
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
        if isinstance(v, list):
            if not v:
                return "none"
            if all(isinstance(x, dict) for x in v):
                return f"{len(v)} entries (see the file)"
            return ", ".join(text(x) for x in v[:12]) + (f", … ({len(v)} in all)" if len(v) > 12 else "")
        return str(v)

    rows = []

    def walk(prefix: str, v) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(f"{prefix} · {k}" if prefix else str(k), x)
        else:
            numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (v if isinstance(v, list) else [v]))
            quantity = prefix.replace("_", " ")
            # a unit for numbers only: 'ms' beside a command line or a hash would mislead
            rows.append({"quantity": quantity, "value": text(v), "unit": quantity_unit(quantity) if numeric and v != [] else ""})
    walk("", {k: v for k, v in rec.items() if k != "machine"})
    m = rec.get("machine")
    if isinstance(m, dict):
        rows.append({"quantity": "machine", "value": ", ".join(
            f"{k} {x}" for k, x in m.items() if x not in (None, False, "")), "unit": ""})
    return rows


def latest_results(folder: Path = RESULTS_DIR) -> list[dict]:
    """The newest record of each kind (newness): [{kind, file, date, dated_by, record}], sorted by
    kind; date is None where neither the record nor git says when it was made (dated_by 'unknown')."""
    best: dict[str, dict] = {}
    for f in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict):
            continue
        date, dated_by = result_date(rec, f)
        item = {"kind": result_kind(f), "file": f.name, "date": date, "dated_by": dated_by, "record": rec}
        if item["kind"] not in best or newness(item) > newness(best[item["kind"]]):
            best[item["kind"]] = item
    return [best[k] for k in sorted(best)]


TRUTH_FILE = RESULTS_DIR / "truth-c.json"      # the truth set whose lookup clears the bar: the odds below


def truth_pairs(path: Path = TRUTH_FILE) -> list[tuple[float, float]]:
    """(the lookup's DFT MAE, the app default's best checked new candidate's DFT MAE) per truth site
    with both, from the truth bench's record; [] without one."""
    try:
        rec = json.loads(Path(path).read_text())
        method = rec["app_default"]
        out = []
        for site in rec["per_site"]:
            got = site["methods"]
            maes = [c["dft_mae"] for c in (got.get(method) or {}).get("candidates", []) if c.get("dft_mae") is not None]
            if maes and (look := got.get("lookup", {}).get("candidates")):
                out.append((float(look[0]["dft_mae"]), float(min(maes))))
        return out
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return []


def lookup_odds(mae: float, pairs: list[tuple[float, float]]) -> str:
    """What the truth bench says about a target whose closest known site is `mae` states/eV away:
    on how many truth sites with a known site that close the app's new crystals came closer by DFT
    (truth_pairs). '' without a record, or without a site in that band."""
    lo, hi = twin_band(mae)
    inside = [(a, b) for a, b in pairs if lo <= a < hi]
    if not inside:
        return ""
    won = sum(b < a for a, b in inside)
    where = f"within {hi:g}" if lo == 0 else f"{lo:g}–{hi:g}" if np.isfinite(hi) else f"{lo:g} or more"
    # said of the band, not of the number: a walk read 0.159 called "close" beside "3 of 11 came closer"
    verdict = ("in this band the known site mostly stays ahead: expect new crystals near it rather than closer"
               if won * 2 <= len(inside) else "new crystals often come closer than the known ones here")
    return (f"The closest known site is {mae:.3f} states/eV from this target. On the DFT truth bench ({TRUTH_FILE.name}), "
            f"where the closest known site was {where} states/eV, the app's best checked new crystal came closer by "
            f"DFT on {won} of {len(inside)} targets: {verdict}.")


def dft_seconds_prior(folder: Path = RESULTS_DIR, relaxed: bool = SHIPPED.dft_relaxed) -> float:
    """Seconds one DFT check takes: from the timed app flow (certify-time-relaxed.json when the
    check relaxes first: relaxation plus GPAW; certify-time.json as drawn: the shipped recipe on
    the candidates the app checks), else the newest DFT bench's rows (timings stay valid when a
    record's scores are superseded), else a fixed prior."""
    for name in (["certify-time-relaxed.json"] if relaxed else []) + ["certify-time.json"]:
        try:
            rec = json.loads((Path(folder) / name).read_text())
            secs = [c["gpaw_seconds"] + (c.get("relax_seconds") or 0.0)
                    for p in rec.get("per_site", []) for c in p.get("candidates", []) if c.get("gpaw_seconds")]
            if secs:
                return float(sum(secs) / len(secs))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
    for item in latest_results(folder):
        if item["kind"] == "dft":
            secs = [r["seconds"] for r in item["record"].get("rows", []) if isinstance(r, dict) and r.get("seconds")]
            if secs:
                return float(sum(secs) / len(secs))
    return DFT_SECONDS_PRIOR


_MARKUP = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:])")


def plain(text) -> str:
    """User text (run titles, file names, CSV headers) for a markdown widget, shown as it was
    typed: every markdown, HTML and LaTeX character escaped, so a title like
    '![x](https://…)' draws no image and fetches nothing."""
    # and no autolink: a zero-width space after every scheme's colon
    return _MARKUP.sub(r"\\\1", str(text)).replace("\n", " ").replace("\\://", "\\:\u200b//")
