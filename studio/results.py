"""Streamlit rendering of a stored run (shared by the Generate and Runs pages).

Every curve says where it comes from: the target, the predictor's curve for a candidate, a DFT
calculation of a candidate, or the stored DFT label of a known structure the candidate matches.
"""
from __future__ import annotations

import datetime as dt
import functools
import re

import numpy as np
import streamlit as st

from dosmatgen_core.candidates import runs as runsmod
from dosmatgen_core.candidates.seeding import grow_source
from dosmatgen_core.candidates.words import NOVEL_NOTE, carrier_text, origin_text, pressed_count, pressed_text, settings_words, twin_text
from dosmatgen_core.labels.labeller import SPIN_WORDS
from dosmatgen_core.scoring.elements import ELEMENT_PREFIX
from dosmatgen_core.scoring.evaluate import PRESSED, RELAXED_VOLUME_TOL, STRAINED, intermetallic, pressed
from dosmatgen_core.scoring.prototypes import short_name, type_name
from dosmatgen_core.scoring.verify import (best_new_curve, checks_summary, dft_mae, run_window,  # noqa: F401 (pages read them here)
                                           dft_maes, new_structure_maes, relaxed_into)
from studio import figures as viz
from studio.charts import dos_chart
from studio.export import run_zip
from dosmatgen_core.structures import to_structure
from studio.known import matching_site
from studio import shared as studio
from studio.shared import duration, formula, site_name

COND_COLOUR, FIXED_COLOUR, PIN_COLOUR = (viz.SITE_COLOURS["conditioned"], viz.SITE_COLOURS["fixed"],
                                         viz.SITE_COLOURS["pinned"])
TARGET_PREFIX = "target: "
LEGACY_POTENTIAL = "chgnet"     # candidates stored before they named their potential were relaxed with CHGNet


def _badge(ok: bool | None, yes: str, no: str, na: str = "n/a") -> str:
    if ok is None:
        return f":gray-background[{na}]"
    return f":green-background[{yes}]" if ok else f":red-background[{no}]"


def _geometry_badge(c: dict) -> str:
    """Valid (every pair 0.5 Å apart, the field's check) or not; a valid cell whose closest contact
    is strained (below STRAINED of the covalent radii' sum) says so in orange: a walk read a green
    "geometry valid" beside "Hf–S at 1.68 Å … (strained)", and walk 13 called "geometry valid" beside
    Ag–O at 60 % of the radii physically impossible: the badge names the contact and the check passed."""
    sc = c.get("shortest_contact")
    if c.get("structurally_valid") and sc and pressed(c):
        return (f":orange-background[{sc['pair']} at {sc['ratio']:.0%} of the covalent radii: pressed, "
                "passes only the 0.5 Å check]")
    if c.get("structurally_valid") and sc and sc["ratio"] < STRAINED:
        # strained, not pressed: ranked with the others (walk 18 read the pressed cells' words here)
        return f":orange-background[{sc['pair']} at {sc['ratio']:.0%} of the covalent radii: strained]"
    return _badge(c.get("structurally_valid"), "geometry valid", "geometry invalid")


def _charge_badge(c: dict) -> str:
    """SMACT's charge balance, except for an all-metal cell: an intermetallic needs none, and a
    green "charge balanced" on Au2CuNi read like a check it had passed."""
    if intermetallic(c["formula"]):
        return ":gray-background[intermetallic: no charge balance to check]"
    # SMACT asks whether *some* listed oxidation states sum to zero (peroxide-like states included):
    # walk 14 read "charge balanced" on TiO4 and ZrO4 as a chemist's claim
    return _badge(c.get("charge_neutral"), "some oxidation states balance (SMACT)",
                  "no oxidation states balance (SMACT)")


def _stability_badge(c: dict, asked: bool | None = None) -> str:
    """asked: the run's stability setting (None for runs stored before it was kept). Off by default,
    so "not computed" on every card read as a failure: it says where to turn it on."""
    e = c.get("e_above_hull")
    if e is None:
        if not c.get("hull_note") and asked is False:
            return ":gray-background[stability: off (Advanced settings)]"
        return f":gray-background[stability: {c.get('hull_note') or 'not computed'}]"
    text = f"E_hull {e * 1000:.0f} meV/atom ({studio.potential_label(c.get('potential') or LEGACY_POTENTIAL)})"
    return f":green-background[{text}]" if e <= 0.1 else f":orange-background[{text}]"


def run_potential(run: dict) -> str:
    """The stability potential of a run's candidates (the default one when none was checked)."""
    names = {c.get("potential") or LEGACY_POTENTIAL for c in run["candidates"]
             if c.get("potential") or c.get("e_above_hull") is not None}
    return ", ".join(sorted(studio.potential_label(n) for n in names)) if names else studio.potential_label()


def steering_text(settings: dict) -> str:
    """'DOS steering K = 4 · ' for a steered run, '' for a plain one (runs stored before steering have no key)."""
    k = int(settings.get("particles") or 1)
    return f"DOS steering K = {k} · " if k > 1 else ""


def guidance_text(settings: dict) -> str:
    """'w = 1.0 · ' for a run with a target; '' for an unconditional one, which has nothing to guide by."""
    return "" if settings.get("mode") == "unconditional" else f"w = {settings['guidance']} · "


def target_label(run: dict, carrier: str = "") -> str:
    """The target's legend entry: the run title when it names the target ('target: DFT label of
    Au3Ni site 3 (Ni)'), plain 'target' for runs stored before titles did. carrier: the candidate's
    atom that carries it, where a card has several ('target for site 0 (P): DFT label of …'; after
    the title it read as the label's own site)."""
    t = (run.get("title") or "").split(" · grown from ")[0]     # a round's title names its parent too
    what = t[len(TARGET_PREFIX):].strip() if t.startswith(TARGET_PREFIX) else ""
    head = f"target for {carrier}" if carrier else "target"
    return f"{head}: {what}" if what else head


def stored_labels(run: dict, db, labelled_ids) -> dict[int, dict[int, dict]]:
    """rank → conditioned site → {'y', 'name'}: the stored DFT curve of the matching site, for
    candidates that match a labelled structure of the reference database."""
    out: dict[int, dict[int, dict]] = {}
    for c in run["candidates"]:
        mid = c.get("matches")
        # the reference's own label is the target itself: no result to rank (its card says so)
        if c.get("novel") is not False or mid not in labelled_ids or c.get("is_reference"):
            continue
        ref = db.get(mid)
        known = to_structure(ref.atoms)
        cand = runsmod.structure_of(c)
        for site in c["site_to_target"]:
            j = matching_site(cand, int(site), known)
            if j is not None:
                out.setdefault(c["rank"], {})[int(site)] = {
                    "y": ref.site_dos[j],
                    "name": f"DFT (stored label of {site_name(formula(ref.formula), j, known[j].specie.symbol)})"}
    return out


def known_name(c: dict) -> str:
    """The known structure a candidate matches, as the known-sites table names it ('AgAu2Ni · an
    earlier candidate, DFT-checked · 0e6ecd3a', 'NaCl · mp-22862'), not by its database id."""
    return studio.material_name(str(c.get("matches")), c["formula"]) if c.get("matches") else "?"


def stored_label_cell(c: dict) -> str:
    """The DFT table's cell for a known candidate shown by its stored label (and its badge's key)."""
    return f"known: stored label of {known_name(c)}"


def candidate_name(c: dict, status: dict | None = None, settings: dict | None = None) -> str:
    """'#3 · NaCl · 2 atoms', and whether it is known, the reference itself, or (status: its DFT
    check) relaxed into a known compound (a choice list; walk 12 found the last unsaid on Verify)."""
    tag = (" · the reference itself" if c.get("is_reference") else
           f" · known ({known_name(c)})" if c.get("novel") is False else
           f" · relaxed into {into_name(into, c, settings or {})}" if (into := relaxed_into(status)) else "")
    return f"#{c['rank']} · {formula(c['formula'])} · {c['n_atoms']} atoms{tag}"


def predicted_curve(c: dict, site: int, name: str, calibration=None) -> dict:
    """A candidate's predicted site curve, with the ensemble's spread as its band (runs saved
    before the spread was stored have none); calibration: what the stored spread carries (the
    run's settings' spread_calibration, (scale, floor); None: the raw spread)."""
    spread = c.get("predicted_spread")
    return {"y": c["predicted_dos"][site], "name": name, "style": "predicted",
            "band": spread[site] if spread is not None else None, "band_calibrated": bool(calibration)}


def candidate_curves(run: dict, c: dict, dft: dict | None, stored: dict | None) -> list[dict]:
    """The curves of one candidate's card, each named for its source."""
    targets, base = run["settings"]["targets"], run.get("baseline", [])
    struct = runsmod.structure_of(c)
    many = len(c["site_to_target"]) > 1
    pairs = sorted(((int(k), int(r)) for k, r in c["site_to_target"].items()))
    # one entry per target curve: two sites carrying one target listed it twice (walk 17's legend of 8)
    carriers = {r: [s for s, rr in pairs if rr == r] for _, r in pairs}
    curves = []
    for s, row in pairs:
        carrier = f"site {s} ({struct[s].specie.symbol})" if many else ""
        where = f" {carrier}" if many else ""
        if carriers[row][0] == s:
            shared = ", ".join(f"{k} ({struct[k].specie.symbol})" for k in carriers[row])
            curves.append({"y": targets[row], "style": "target", "window": run_window(run),
                           "name": target_label(run, (f"sites {shared}" if len(carriers[row]) > 1 else carrier))})
        if c.get("predicted_dos") is not None:
            curves.append(predicted_curve(c, s, f"predicted for candidate #{c['rank']}{where}",
                                          run["settings"].get("spread_calibration")))
        if dft and dft.get("status") == "done":
            cell = " (relaxed cell)" if dft["result"].get("relaxed") else ""
            curves.append({"y": dft["result"]["site_dos"][s], "name": f"DFT of candidate #{c['rank']}{cell}{where}",
                           "style": "dft"})
        if stored and s in stored:
            curves.append({**stored[s], "style": "stored"})
        b = base[c["index"]] if c["index"] < len(base) else None
        if b is not None and b.get("predicted_dos") is not None and s < len(b["predicted_dos"]):
            # each drawn candidate's partner: drawn without a target, with as many atoms, scored on its sites
            curves.append({"y": b["predicted_dos"][s], "name": f"predicted for unconditional sample #{c['index'] + 1}"
                                                             f"{where} (no target, {b['n_atoms']} atoms like this one)",
                           "style": "baseline"})
    return curves


def element_crystal_text(c: dict) -> str:
    """For a candidate that is an element's known crystal (fcc Au): what it matched and why no
    stored DFT curve stands beside it; '' otherwise."""
    mid = str(c.get("matches") or "")
    if c.get("novel") is not False or not mid.startswith(ELEMENT_PREFIX):
        return ""
    el = mid[len(ELEMENT_PREFIX):]
    return (f"Matches the known crystal of {el} (ASE's reference structure, within StructureMatcher's tolerances). "
            "The reference database holds no DFT label for it, so no stored curve is shown; check it with DFT on "
            "the Verify page.")


def known_symmetry_text(c: dict) -> str:
    """For a known candidate whose space group differs from the structure it matches: why both
    can hold (the matcher's tolerances are looser than the symmetry search's); '' otherwise."""
    known, own = c.get("matches_spacegroup"), (c.get("spacegroup") or {}).get("0.1")
    if c.get("novel") is not False or not known or not own or known == own:
        return ""
    name = studio.material_name(str(c["matches"]), c["formula"]) if c.get("formula") else c["matches"]
    # more operations than the known structure's: near a more symmetric arrangement, not distorted
    # (a walk's BaTiO3 copy read cubic Pm-3m beside R3m and was called distorted)
    ours, theirs = group_order(own), group_order(known)
    how = ("is distorted enough to read" if ours is None or theirs is None or ours < theirs else
           "sits close enough to a more symmetric arrangement to read" if ours > theirs else "reads")
    return (f"Matches {name} ({studio.spacegroup_name(known)}) within StructureMatcher's tolerances (lattice 20 %, "
            f"sites 0.3 of the mean spacing, angles 5°), which are looser than the 0.1 Å symmetry search: this copy "
            f"{how} {studio.spacegroup_name(own)}.")


def group_order(spacegroup: str) -> int | None:
    """The order of the point group of 'Pm-3m (221)' (48: m-3m), or None where no number is given.
    The point group, not the space group's operations: those count centring translations too, and
    would call P6/mmm (24 point operations) less symmetric than R-3m (12)."""
    m = re.search(r"\((\d+)\)\s*$", spacegroup or "")
    return _point_group_order(int(m.group(1))) if m else None


@functools.lru_cache(maxsize=None)
def _point_group_order(number: int) -> int | None:
    from pymatgen.symmetry.groups import PointGroup, SpaceGroup     # the symmetry tables, only for this wording
    try:       # building a group's operations takes up to a second: once per number (each card, each rerun)
        return len(PointGroup(SpaceGroup.from_int_number(number).point_group).symmetry_ops)
    except (ValueError, KeyError):
        return None


def as_drawn_text(c: dict) -> str:
    """For a candidate new as drawn and not yet relaxed by a check: what hints it may relax into a
    known structure (a strained closest contact; known structures of its composition); '' when
    nothing does. The novelty check compares the unrelaxed cell, so a distorted copy of rock salt
    reads novel (the walk: Na–Cl at 1.99 Å)."""
    if not c.get("novel"):
        return ""
    parts = []
    if (sc := c.get("shortest_contact")) and sc["ratio"] < STRAINED:
        parts.append(f"its closest contact, {sc['pair']} at {sc['distance']:.2f} Å, is {sc['ratio']:.0%} of the "
                     "two covalent radii (strained)")
    if n := c.get("same_formula_n", 0):
        names = ", ".join(studio.material_name(m, c["formula"]) for m in c.get("same_formula", []))
        parts.append(f"{n} known structure{'s' * (n > 1)} share{'s' * (n == 1)} its composition ({names}"
                     + (", …" if n > len(c.get("same_formula", [])) else "") + ")")
    if not parts:
        return ""
    return ("New as drawn, but unrelaxed: " + "; ".join(parts) + ". It may relax into a known structure; "
            "a relaxed DFT check (Verify, or the DFT checks of the next Generate) says whether it did.")


def of_reference_compound(run: dict, c: dict) -> bool:
    """A new candidate of the reference's own compound (another polymorph of the material the
    target came from); runs from before the flag: the reference among the known structures of its
    composition."""
    ref = (run.get("settings") or {}).get("reference_id")
    return bool(c.get("novel")) and bool(c.get("reference_compound") or (ref and ref in c.get("same_formula", [])))


def polymorph_text(run: dict, c: dict) -> str:
    """A card's note, and the best-new line's, for a new polymorph of the target's own compound
    (walk 18 read LiCoO2 beating every known site for a LiCoO2 target as a find)."""
    if not of_reference_compound(run, c):
        return ""
    return (f"Another polymorph of the target's own compound, {formula(c['formula'])}: a new structure, but the same "
            "chemistry as the material the target came from, so a DOS close to the target is expected rather than "
            "found.")


def reference_text(c: dict) -> str:
    """A card's note for a candidate that is the reference itself, naming it as the known-sites
    table does ('Au3Ni · L1₂ · relaxed'), not by its database id ('L12-Au3Ni-chgnet')."""
    return (f"This candidate is the reference the target came from ({known_name(c)}): its stored DFT curve is the "
            "target itself, so it is neither ranked by DFT nor checked.")


def opened_first(runs: list[dict]) -> int:
    """Which of the runs (newest first, RunStore.list) the Runs page opens: the newest that holds
    candidates and is not still generating (a walk's page opened a run being generated on the
    Generate page, with nothing to show and an empty download); the newest when none is."""
    return next((k for k, r in enumerate(runs) if r["candidates"] and r["status"] != "running"), 0)


def known_via_text(c: dict) -> str:
    """A card's note for a candidate known through a copy of it in the run (pipeline.known_through_copies)."""
    what = "the reference the target came from" if c.get("is_reference") else known_name(c)
    return (f"A copy of {c['known_via']} within StructureMatcher's tolerances, which matches {what}: known too. "
            "On its own it matched no known structure (the tolerances do not chain).")


def dft_summary(run: dict, dft: dict[int, dict]) -> dict:
    """A run's GPAW checks in three numbers (verify.checks_summary), as the Runs tables head them."""
    return summary_columns(checks_summary(run, dft))


def no_new_text(run: dict, dft: dict[int, dict]) -> str | None:
    """When a run's checks have finished and none of them is a new structure (each relaxed into a
    known compound, or the checked were known): what that means and what to try; else None."""
    s = checks_summary(run, dft)
    if not s["checks"] or s["best_new_mae"] is not None:
        return None
    slider = {"seeded": "How far from the known structure", "template": "How far from the template"}
    mode = run["settings"].get("mode")
    where = f"raise \"{slider[mode]}\" in 2 · How candidates are built" if mode in slider else "generate again"
    return (f"None of the {s['checks']} checked candidates stayed a new structure: each is, or relaxed into, a known "
            "compound, so its DFT curve is the lookup's answer (the known sites above), not a new match. For new "
            f"crystals, {where}, or set \"Further rounds\" under Advanced settings.")


def summary_columns(s: dict) -> dict:
    """checks_summary's numbers under the Runs tables' heads."""
    return {"GPAW checks": s["checks"], "best new: DFT MAE": studio.rounded(s["best_new_mae"]),
            "best new: DFT cosine": studio.rounded(s["best_new_cosine"])}


# one colour per compared run (plotly's D3 set less the colours the app's palette gives a kind of
# curve: a run's DFT curve in the predictor's blue read as a prediction); the dash says the source
COMPARE_COLOURS = ["#ff7f0e", "#17becf", "#e377c2", "#8c564b", "#bcbd22"]
COMPARE_DASH = {"dft": "solid", "predicted": "dot"}


def compare_figures(items: list[tuple[dict, dict]]) -> tuple[list[tuple[str, list[dict]]], list[str]]:
    """Runs (run, its DFT checks) as overlaid curves: one figure per target, with that target and
    each run's best curve (verify.best_new_curve) in the run's own colour, solid for DFT, dotted for the
    predictor; and the ids of runs with nothing to draw (no target, no candidate). Runs towards
    the same target share a figure."""
    groups: list[tuple[np.ndarray, str, list[dict]]] = []
    skipped = []
    drawn = 0       # runs drawn so far: a run that draws nothing takes no colour
    for run, dft in items:
        b = best_new_curve(run, dft)
        if b is None:
            skipped.append(run["id"])
            continue
        k, drawn = drawn, drawn + 1
        relaxed = b["source"] == "dft" and dft[b["rank"]]["result"].get("relaxed")
        words = {"dft": "DFT" + (" (relaxed cell)" if relaxed else ""), "predicted": "predicted"}[b["source"]]
        curve = {"y": b["y"], "style": b["source"],
                 "name": f"run {run['id']}: {words} of #{b['rank']} {formula(b['formula'])} site {b['site']} ({b['element']}), "
                         f"MAE {b['mae']:.3f}, cosine {b['cosine']:.3f}",
                 "line": {"color": COMPARE_COLOURS[k % len(COMPARE_COLOURS)], "dash": COMPARE_DASH[b["source"]]}}
        for target, _, curves in groups:
            if target.shape == b["target"].shape and np.allclose(target, b["target"], atol=1e-6):
                curves.append(curve)
                break
        else:
            groups.append((b["target"], target_label(run), [{"y": b["target"], "name": target_label(run),
                                                             "style": "target", "window": run_window(run)}, curve]))
    return [(title, curves) for _, title, curves in groups], skipped


# the mode right after the id: at 1024 px it was scrolled out of sight, and runs of one target were
# told apart by their ids alone (walk 17)
COMPARE_FIRST = ["id", "mode", "GPAW checks", "best new: DFT MAE", "best new: DFT cosine", "DOS MAE (predicted)",
                 "baseline MAE (predicted)"]


def compare_rows(rows: list[dict]) -> list[dict]:
    """The Comparison table's rows with the numbers compared right after the run's id (the Runs
    table's order put them past 'when', 'mode', 'status', out of sight at 1280 px), and the long
    title last (before them, it pushed mode and time out of sight)."""
    return [{**{k: r[k] for k in COMPARE_FIRST if k in r},
             **{k: v for k, v in r.items() if k not in COMPARE_FIRST and k != "title"},
             **({"title": r["title"]} if "title" in r else {})} for r in rows]


# the Runs table's columns as shown: short heads over narrow number columns (their full meaning in
# each head's help), so that time and mode fit a 1280 px window; the title, last, scrolls
RUNS_COLUMNS = {
    "id": st.column_config.TextColumn("id", width=100),
    "GPAW checks": st.column_config.NumberColumn("checks done", width=85, help="Finished GPAW checks of the run "
                                                                                "(running and queued ones not yet)"),
    "best new: DFT MAE": st.column_config.TextColumn(
        "best new MAE", width=105, help="DFT MAE (states/eV) of the run's best new structure"),
    "best new: DFT cosine": st.column_config.TextColumn(
        "best new cos", width=100, help="DFT cosine of the same structure (1: the target's shape exactly)"),
    "DOS MAE (predicted)": st.column_config.TextColumn(
        "pred. MAE", width=85, help="Mean predicted DOS MAE (states/eV) of the run's candidates"),
    "baseline MAE (predicted)": st.column_config.TextColumn(
        "pred. baseline", width=110, help="Mean predicted DOS MAE (states/eV) of the unconditional samples"),
    "when": st.column_config.TextColumn("when (UTC)", width=135),
    # walk 14 read "no target (basel" and "new structure, e" cut, and took the last column for no target
    "mode": st.column_config.TextColumn("mode", width=200),
    "title": st.column_config.TextColumn("target", width=330, help="The run's target DOS: which curve it is and where "
                                                                    "it came from (a DFT label, a prediction, a file)"),
    "candidates": st.column_config.NumberColumn("cand.", width=60, help="Candidates in the run"),
    "valid": st.column_config.TextColumn("valid", width=60, help="Candidates with a valid geometry (no atoms closer "
                                                                "than 0.5 Å, a sound cell) and no two atoms pressed "
                                                                "together, as the run's page counts them"),
    "settings": st.column_config.TextColumn("settings", width=260, help="How the run was made: its mode and seeds or "
                                                                      "template, candidates, steps, guidance w, random seed"),
    "compared on": st.column_config.TextColumn(
        "compared on", width=105, help="The energies (E − E_F) the run's target was compared on: a DOS file that "
                                       "covers part of the grid, or a part chosen; its MAEs are over those alone"),
}

RUNS_TABLE_NOTE = ("MAEs in states/eV, cosines 0-1 (1: the target's shape exactly); 'best new' is the run's new "
                   "structure with the lowest DFT MAE, by GPAW; 'pred.' numbers are the predictor's; times in UTC.")


def run_label(r: dict) -> str:
    """A stored run (RunStore.list's row) as a picker names it: runs towards one target share a
    title, so its mode and time tell them apart ('2b288df3f5 · target: … · grown from known sites · 12-06 03:17 UTC')."""
    when = dt.datetime.fromtimestamp(r["created"], dt.timezone.utc).strftime("%m-%d %H:%M")
    return f"{r['id']} · {r['title']} · {studio.MODE_WORDS.get(r['mode'], r['mode'])} · {when} UTC"


def runs_table(runs: list[dict], checks: dict[str, dict]) -> list[dict]:
    """The Runs table: one row per stored run (RunStore.list), its GPAW checks (Verifier.summaries)
    first after its id and title, then the predictor's numbers. A run cancelled before scoring has
    no valid count: a dash. Valid counts as the run's page does: no atoms pressed together (a
    walk read 8/8 here above 7 pressed cells)."""
    def valid(r):
        v = r["summary"].get("structurally_valid")
        return f"{v - (r.get('pressed') or 0)}/{r['candidates']}" if v is not None else "—"
    return compare_rows([{"id": r["id"],
                          "when": dt.datetime.fromtimestamp(r["created"], dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
                          "mode": studio.MODE_WORDS.get(r["mode"], r["mode"]), "status": r["status"],
                          "candidates": r["candidates"], "valid": valid(r),
                          "DOS MAE (predicted)": studio.rounded(r["summary"].get("mean_dos_mae")),
                          "baseline MAE (predicted)": studio.rounded(r["summary"].get("baseline_mean_dos_mae")),
                          **summary_columns(checks[r["id"]]),
                          # a run compared on part of the grid is not comparable number for number
                          "compared on": studio.window_text(r.get("window")) or "−10…10 eV",
                          "settings": settings_words(r.get("settings") or {}),
                          "title": r["title"]} for r in runs])


def no_better_text(run: dict) -> str:
    """When the predictor puts a run's candidates no closer to the target than its unconditional
    baseline samples: that, and the way on; '' otherwise (walk 18's fixed-type run, 0.690 against
    0.682, went unsaid)."""
    s = run.get("summary") or {}
    mean, base = s.get("mean_dos_mae"), s.get("baseline_mean_dos_mae")
    if mean is None or base is None or mean < base:
        return ""
    way = ("" if run.get("settings", {}).get("mode") == "seeded" else
           " Seeded mode (the default) grows candidates from the known sites closest to the target instead.")
    return (f"By the predictor, these candidates are no closer to the target than unconditional samples of the same "
            f"sizes ({mean:.3f} against {base:.3f} states/eV): the target did not steer this run." + way)


def invalid_text(run: dict) -> str:
    """When fewer than half of a run's candidates have a valid geometry: that, why when its steps
    were too few for new cells, and that the predicted means include them; '' otherwise."""
    s, settings = run.get("summary") or {}, run.get("settings") or {}
    n, valid = s.get("n"), s.get("structurally_valid")
    if not n or valid is None or valid >= n / 2:
        return ""
    why = studio.few_steps_text(settings.get("mode", ""), int(settings.get("steps") or studio.SOUND_STEPS))
    return (f"Only {valid} of {n} candidates have a valid geometry; the predicted means above include the others. "
            + (why or "Check each card's reasons below."))


def template_back_text(run: dict) -> str:
    """A template run whose candidates came back mostly as known crystals: how many, which, and the
    way to new ones; '' otherwise. Walk 14's 5 of 8 came back as the template BaTiO3 itself and
    the page said nothing of it."""
    settings = run.get("settings") or {}
    cands = run.get("candidates") or []
    if settings.get("mode") != "template" or not cands:
        return ""
    known = [c for c in cands if c.get("novel") is False or c.get("is_reference")]
    if len(known) < len(cands) / 2:
        return ""
    tid = settings.get("template_id")
    mine = sum(c.get("matches") == tid for c in known) if tid else 0
    name = studio.material_name(tid, next((c["formula"] for c in known if c.get("matches") == tid), "")) if mine else ""
    what = (f"as the template itself ({name})" if mine == len(known) else
            f"as known crystals, {mine} of them the template itself ({name})" if mine else "as known crystals")
    return (f"{len(known)} of {len(cands)} candidates came back {what}: at strength "
            f"{float(settings.get('strength', 0)):g} the noise does not carry the cell far enough from the template. "
            "Move “How far from the template” up for new structures, or use the seeded mode, which draws further "
            "from its seeds when too few draws are new.")


def compare_caption(drawn: bool, nothing: list[str]) -> str:
    """What the compared curves are (only when there are some), and which runs have none."""
    what = ("Each run's best new structure at its matching atom: by DFT (solid) where one was checked, else the "
            "predictor's curve of its top-ranked new candidate (dotted). Known structures (the seeds' copies, whose "
            "stored labels are the lookup) and candidates that relaxed into one are left out, as in each run's "
            "\"DFT MAE, best new\"." if drawn else "")
    why = (f"No curve for run{'s' * (len(nothing) > 1)} {', '.join(nothing)}: no target (an unconditional run) or "
           "no new structure (every candidate known, or relaxed by its check into a known compound)." if nothing else "")
    return " ".join(t for t in (what, why) if t)


def shown(rows: list[dict]) -> list[dict]:
    """A table's MAEs and cosines as table_text gives them: a dash, not 'None', where a run has none."""
    return [{k: table_text(k, v) if ("MAE" in k or "cosine" in k) else v for k, v in r.items()} for r in rows]


def headed(column: str) -> str:
    """A table's column as headed on the page: an MAE with its unit ('DFT MAE (states/eV)')."""
    return f"{column} (states/eV)" if column.endswith("MAE") else column


def table_text(column: str, v) -> str:
    """A DFT table cell as text: a dash for nothing, MAEs and cosines to 3 decimals (0.100, not 0.1:
    the cards and every other table show three), anything else as it is."""
    if v is None or v == "":
        return "—"
    if isinstance(v, float) and ("MAE" in column or "cosine" in column):
        return f"{v:.3f}"
    return str(v)


def dft_seeds(run: dict) -> dict[tuple, dict]:
    """(material id, site) → each seed of the run with a DFT curve and its match to the target: a
    known site's stored label, or a checked candidate grown from (s['known'] False)."""
    return {(s["material_id"], s["site"]): s for c in run["candidates"]
            if (s := c.get("seed")) and "mae" in s and s.get("source", "DFT") == "DFT"}


def seed_rows(run: dict) -> list[dict]:
    """The sites a seeded run grew from, as DFT table rows: a known site's stored DFT label against
    the target is what a search of the labels gives without generating (the lookup), the baseline a
    candidate has to beat; a candidate grown from (the next round) stands there with its DFT check,
    the parent to beat. A candidate seed scored only by the predictor has no DFT row."""
    seeds = dft_seeds(run)
    return [{"candidate": "known site" if s.get("known", True) else "grown from", "formula": formula(s["formula"]),
             "DFT MAE": round(s["mae"], 3), "DFT cosine": round(s["cosine"], 3), "predicted MAE": None,
             "cell": (f"the lookup: stored DFT label of {studio.material_name(s['material_id'], s['formula'])} site "
                      f"{s['site']} ({s['element']}), a seed"
                      if s.get("known", True) else
                      f"the parent: DFT check of {s['material_id']}, site {s['site']} ({s['element']})"),
             "relax (s)": "", "DFT (s)": ""} for s in seeds.values()]


def best_new_text(run: dict, dft: dict, new: dict[int, float]) -> str:
    """Which checked candidate the 'DFT MAE, best new' number is, the known site it grew from, and
    the closest known site of the run's seeds beside it (a walk found 0.434 named nowhere, and the
    seed's 0.128 only in the table below)."""
    if not new:
        return ""
    rank = min(new, key=new.get)
    c = next(c for c in run["candidates"] if c["rank"] == rank)
    cos = dft_maes(run, dft, metric="cosine").get(rank)
    kind = (dft.get(rank) or {}).get("result", {}).get("structure_type")
    text = (f"#{rank} · {formula(c['formula'])}" + (f", {short_name(kind)}" if kind else "")
            + (f", DFT cosine {cos:.3f}" if cos is not None else "") + ".")
    if of_reference_compound(run, c):
        text += " A polymorph of the target's own compound: its closeness is expected."
    seeds = {k: s for k, s in dft_seeds(run).items() if s.get("known", True)}

    def name(s: dict) -> str:
        return f"{studio.material_name(s['material_id'], s['formula'])} site {s['site']} ({s['element']})"
    own = seeds.get((c["seed"]["material_id"], c["seed"]["site"])) if c.get("seed") else None
    if own:
        text += f" Grown from {name(own)}, DFT MAE {own['mae']:.3f}."
    if seeds:
        best = min(seeds.values(), key=lambda s: s["mae"])
        closer = ", closer than any new structure checked." if best["mae"] < new[rank] else "."
        text += (f" That seed is the closest known site the run grew from{closer}" if best is own else
                 f" The closest known site the run grew from: {name(best)}, {best['mae']:.3f} (cosine "
                 f"{best['cosine']:.3f}){closer}")
    return text


def dft_rank_text(rank: int, maes: dict[int, float], same: dict[int, str] | None = None) -> str:
    """A card's DFT badge: 'DFT MAE 0.142 · 1st of 3 candidates by DFT' (dft_maes: checks and stored
    labels). Candidates only: the DFT table also lists the known sites the run grew from, and walk 13
    read '1st of 10' beside three of them listed above.
    same: rank → the stored label it shows (stored_label_of); copies of one known compound count as
    one entry, as the DFT table lists them on one row (a walk's CoPt copies read 'tied 1st of 9')."""
    same = same or {}
    entries = {same.get(r, r): round(m, 3) for r, m in maes.items()}      # equal as shown: equal place
    mine = entries[same.get(rank, rank)]
    k = 1 + sum(m < mine for m in entries.values())
    tied = sum(m == mine for m in entries.values()) > 1
    if len(entries) == 1:       # walk 14: five copies of the template each read "1st of 1 candidates"
        return f"DFT MAE {maes[rank]:.3f} · the run's only DFT result" + (" (a stored label)" if rank in same else "")
    nth = {1: "1st", 2: "2nd", 3: "3rd"}.get(k, f"{k}th")
    return f"DFT MAE {maes[rank]:.3f} · {'tied ' * tied}{nth} of {len(entries)} candidates by DFT"


def stored_label_of(run: dict, dft: dict[int, dict], maes: dict[int, float]) -> dict[int, str]:
    """rank → the stored label a known candidate's DFT MAE comes from (no finished check of its own),
    named as the DFT table's cell names it: candidates sharing one are one entry in a ranking."""
    # keyed as the table merges its rows: the label and its MAE (copies conditioned on other sites differ)
    return {c["rank"]: f"{stored_label_cell(c)} · {maes[c['rank']]:.3f}" for c in run["candidates"]
            if c["rank"] in maes and dft_mae(dft.get(c["rank"])) is None}


def into_name(into: str, c: dict, settings: dict) -> str:
    """The known structure a relaxed check became, in words: 'the reference itself (Au3Ni · L1₂ ·
    relaxed)' when it is the structure the target came from (its curve is the target), else 'the known
    Au3Ni · mp-…'."""
    name = studio.material_name(into, c["formula"])
    return f"the reference itself ({name})" if into == settings.get("reference_id") else f"the known {name}"


def checked_cell(result: dict) -> str:
    """A finished check's cell in words: 'as drawn', or 'relaxed · F-43m (216)' with its space group
    where the check kept one."""
    kind = f" · {short_name(t)}" if (t := result.get("structure_type")) else ""
    if not result.get("relaxed"):
        return "as drawn" + kind
    return "relaxed" + (f" · {studio.spacegroup_name(sg)}" if (sg := result.get("spacegroup")) else "") + kind


def cell_text(c: dict, status: dict, settings: dict | None = None) -> str:
    """The DFT table's word for the cell a check calculated: 'as drawn', 'relaxed · F-43m (216)' (its
    space group: the walk's relaxed 'new' GaP was zincblende, a compound the shipped tables lack), or
    'relaxed into the known Au3Ni · mp-…' when the relaxed cell is a known structure (then it is no
    new structure's result)."""
    if status["result"].get("relaxed") and (into := relaxed_into(status)):
        return f"relaxed into {into_name(into, c, settings or {})}"
    return checked_cell(status["result"])


# what "novel" can and cannot say: it is a match against what ships, not against every compound
def dft_table(run: dict, dft: dict[int, dict], stored: dict[int, dict[int, dict]] | None = None,
              maes: dict[int, float] | None = None) -> list[dict]:
    """Finished DFT checks and the stored DFT labels of known candidates (stored_labels), best DFT
    MAE first: a known candidate's DFT is already there, so it ranks beside the checked ones. With
    any of them, a seeded run's seeds too (seed_rows), so each candidate stands beside the lookup
    (or the parent it grew from). maes: dft_maes(run, dft, stored), when the caller has it."""
    maes = maes if maes is not None else dft_maes(run, dft, stored)
    cosines = dft_maes(run, dft, stored, "cosine")
    rows = []
    for c in run["candidates"]:
        if c["rank"] not in maes:
            continue
        s = dft.get(c["rank"])
        checked = dft_mae(s) is not None
        rows.append({"candidate": f"#{c['rank']}", "formula": formula(c["formula"]), "DFT MAE": round(maes[c["rank"]], 3),
                     "DFT cosine": round(cosines[c["rank"]], 3) if c["rank"] in cosines else None,
                     "predicted MAE": round(c["dos_mae"], 3) if np.isfinite(c.get("dos_mae", np.nan)) else None,
                     "cell": cell_text(c, s, run["settings"]) if checked else stored_label_cell(c),
                     "relax (s)": s["result"].get("relax_seconds") if checked else "",
                     "DFT (s)": s["result"].get("seconds") if checked else ""})
    rows = _one_row_per_stored_label(rows)
    rows += seed_rows(run) if rows else []
    # best first; on a tie a candidate before a known site, candidates in rank order
    return sorted(rows, key=lambda r: (r["DFT MAE"], not r["candidate"].startswith("#"),
                                       int(re.match(r"#(\d+)", r["candidate"])[1]) if r["candidate"].startswith("#")
                                       else 0))


def _one_row_per_stored_label(rows: list[dict]) -> list[dict]:
    """Known candidates that show one stored label (copies of one compound) share a row, marked
    known in its first column: a walk's table held CoPt's label three times, above the fold, and
    at 800 px the column that told a stored label from a check was off screen."""
    out, merged, predicted = [], {}, {}
    for r in rows:
        if not r["cell"].startswith("known: "):
            out.append(r)
            continue
        key = (r["cell"], r["DFT MAE"], r["DFT cosine"])
        if key not in merged:
            merged[key] = {**r, "candidate": f"{r['candidate']} (known)"}
            predicted[key] = [r["predicted MAE"]]
            out.append(merged[key])
        else:
            m = merged[key]
            m["candidate"] = m["candidate"].replace(" (known)", f", {r['candidate']} (known)")
            predicted[key].append(r["predicted MAE"])
    for key, vals in predicted.items():
        # copies predicted apart: their range (a dash read as "no prediction", beside cards showing one)
        got = sorted({v for v in vals if v is not None})
        merged[key]["predicted MAE"] = f"{got[0]:.3f}–{got[-1]:.3f}" if len(got) > 1 else (got[0] if got else None)
    return out


METRIC_NAMES = studio.METRIC_NAMES


def match_rows(match: dict, elements: list[str] | None = None) -> list[dict]:
    """A candidate's match metrics, one row per metric (named with its unit), one column per site:
    five metrics side by side were cut at 1280 px in a card's half ("Wass…"). elements: the
    candidate's atoms in site order, to head each column with its atom ('site 0 (Ni)')."""
    sites = sorted(match, key=int)

    def head(k):
        return f"site {int(k)}" + (f" ({elements[int(k)]})" if elements and int(k) < len(elements) else "")
    # as text: a number column drops trailing zeros, and 0.42 beside 0.103 reads as less precise
    return [{"metric": METRIC_NAMES.get(name, name), **{head(k): f"{match[k][name]:.3f}" for k in sites}}
            for name in (match[sites[0]] if sites else {})]


def count_text(cands: list[dict], summary: dict | None = None) -> str:
    """Where a seeded run's candidates came from: 'drawn by the generator' and 'substitutions of
    known structures' (more than asked for: the swaps join the draws), and why a second batch was
    drawn (summary['top_up']); '' for other runs."""
    subs = sum(c.get("origin") == "substitution" for c in cands)
    more = (summary or {}).get("top_up")
    why = (f"; {more['drawn']} of the draws are a second batch, drawn further from the seeds (strength "
           f"{more['strength']:g}), because too few of the first were new crystals") if more else ""
    if not subs:
        return f"{len(cands)} drawn by the generator{why}" if more else ""
    return f"{len(cands) - subs} drawn by the generator and {subs} substitution{'s' * (subs > 1)} of known structures{why}"


def halo_colours(c: dict) -> dict[int, str]:
    """Site → halo colour: pinned, fixed type, then conditioned on top (in fixed-type mode the
    conditioned atoms are the fixed ones, and what they carry is the target)."""
    hl = {int(k): FIXED_COLOUR for k in c.get("fixed_sites", {})}
    hl.update({int(k): PIN_COLOUR for k in c.get("pinned_sites", [])})
    hl.update({int(k): COND_COLOUR for k in c.get("site_to_target", {})})
    return hl


def halo_caption(c: dict) -> str:
    """The 3D view's key: only the halos this candidate has, told apart from the atoms' own
    (Jmol) element colours, which can be red, blue or green too."""
    cond, fixed = {int(k) for k in c.get("site_to_target", {})}, {int(k) for k in c.get("fixed_sites", {})}
    # a conditioned atom whose element is fixed too keeps the red halo (halo_colours)
    kinds = [("red", "conditioned" + (", element fixed" if cond & fixed and not fixed - cond else ""), bool(cond)),
             ("blue", "fixed type", bool(fixed - cond)), ("green", "pinned", bool(c.get("pinned_sites")))]
    key = ", ".join(f"{colour} = {what}" for colour, what, on in kinds if on)
    return (f"Halos: {key} · " if key else "") + "atoms in Jmol element colours · 2×2×2 cells, outline drawn"


def verification_rows(rows: list[dict], formulas: dict[tuple[str, int], str] | None = None) -> list[dict]:
    """The verifications table as people read it: clock times (UTC), the time taken, the candidate
    by rank and formula, its DFT match when it has one (rows read with results: Verifier.all(True)),
    and blanks rather than 'None'."""
    out = []
    for r in rows:
        name = (formulas or {}).get((r["run_id"], r["rank"]))
        took = r["finished"] - r["started"] if r.get("started") and r.get("finished") else None
        mae, cos = dft_mae(r), dft_mae(r, "cosine")
        out.append({"run": r["run_id"], "candidate": f"#{r['rank']}" + (f" · {formula(name)}" if name else ""),
                    "status": r["status"], "DFT MAE (states/eV)": f"{mae:.3f}" if mae is not None else "",
                    "DFT cosine": f"{cos:.3f}" if cos is not None else "",
                    # a check whose relaxed cell is a known compound says so here too (walk 15)
                    "cell": (f"relaxed into the known {into}" if (into := (r.get("result") or {}).get("relaxed_into"))
                             else checked_cell(r["result"]) if r.get("result") else ""),
                    "started": _clock(r.get("started")), "finished": _clock(r.get("finished")),
                    "took": duration(took) if took is not None else "", "error": r.get("error") or ""})
    return out


def reference_check_rows(rows: list[dict]) -> list[dict]:
    """The targets' GPAW calculations (reference_dft.ReferenceChecks.all) as the Verify page lists
    them, with the clock and the time taken as the candidates' checks are."""
    out = []
    for r in rows:
        took = r["finished"] - r["started"] if r.get("started") and r.get("finished") else None
        out.append({"structure": r.get("name") or "", "label id": r.get("material_id") or "", "status": r["status"],
                    "started": _clock(r.get("started")), "took": duration(took) if took is not None else "",
                    "error": r.get("error") or ""})
    return out


def _clock(t) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if t else ""


# a card's plot is narrow (3/5 of half the page): legend entries wrap at this many characters
CARD_LEGEND_WRAP = 36


def _card_dos(run: dict, c: dict, curves: list) -> None:
    """A card's DOS half: the plotted curves."""
    if curves:
        dos_chart(curves, key=f"dos_{run['id']}_{c['index']}", filename=f"{run['id']}_candidate{c['rank']}_dos",
                  wrap=CARD_LEGEND_WRAP)


def dft_rows(check: dict | None):
    """A finished check's DFT site rows (for the card's DOS CSV), else None."""
    return check["result"]["site_dos"] if check and check.get("status") == "done" else None


def window_words(run: dict) -> str:
    """' on −10…0.48 eV' for a run whose target is compared on part of the grid (Request.window),
    '' otherwise: said wherever its MAE and cosine are shown."""
    return f" on {studio.window_text(w)}" if (w := run_window(run)) else ""


def _card_match(run: dict, c: dict, struct, dft: dict | None = None) -> None:
    """The predicted match per conditioned site, the card's whole width under its plot and view (in
    the plot's column it was cut at 800 px), then its DFT match once a check has finished (a walk
    read predicted 0.096 on the card while DFT said 0.231 in a badge); struct: the card's
    structure, read once for the card."""
    elements = [x.specie.symbol for x in struct]
    if note := carrier_text(run, c, elements):
        st.caption(note)
    if m := c.get("dos_match") or {}:
        st.caption(f"Predicted DOS against the target{window_words(run)}, per conditioned site")
        st.dataframe(match_rows(m, elements), hide_index=True, width="stretch")
    if dft and dft.get("status") == "done" and (m := (dft.get("result") or {}).get("dos_match")):
        cell = "its relaxed cell" if dft["result"].get("relaxed") else "the cell as drawn"
        st.caption(f"DFT (GPAW, {cell}) DOS against the target{window_words(run)}, per conditioned site")
        st.dataframe(match_rows(m, elements), hide_index=True, width="stretch")


def _card_view(run: dict, c: dict, struct, live: bool, dft: dict | None = None) -> None:
    """A card's 3D view, with its conditioned, fixed and pinned sites haloed. live=False: drawn on
    request, since a browser keeps 16 WebGL contexts and blanks the oldest beyond that (the views
    above the cards and the first cards' stay drawn)."""
    hl = halo_colours(c)
    if live or st.toggle("3D view", key=f"view_{run['id']}_{c['index']}",
                         help=f"Browsers keep about {viz.MAX_LIVE_VIEWS} 3D views drawn at once; "
                              "turning on more blanks the earliest ones."):
        st.iframe(viz.structure_html(struct, hl, height=280, element_id=f"v{c['index']}",
                                     script_src=viz.STATIC_SRC), height=290)
        st.caption(" ".join(t for t in (halo_caption(c) + ".", view_note(c, dft, run["settings"])) if t))


def type_text(result: dict) -> str:
    """A new structure's checked cell in a known structure type: new to the project's tables, and
    perhaps not to chemistry (walk 12's "best new" AlP was zincblende)."""
    if not (t := result.get("structure_type")):
        return ""
    cell = "relaxed cell" if result.get("relaxed") else "cell"
    return (f"Its {cell} has {type_name(t)} (AFLOW prototype {t['aflow']}): new to the project's tables, but a "
            "compound in a known structure type may be known elsewhere.")


def became_text(into: str, c: dict, settings: dict, ratio: float | None = None) -> str:
    """A card's (and Verify's) note on a novel candidate whose relaxed check became a known structure.
    ratio: its relaxed cell's volume per atom over the known cell's (verify), said beyond
    RELAXED_VOLUME_TOL: the two curves then differ more."""
    own = ("the target's own curve" if into == settings.get("reference_id") else "that compound's")
    apart = (f" Its relaxed cell is {abs(ratio - 1) * 100:.0f} % {'larger' if ratio > 1 else 'smaller'} in volume than "
             "the stored one, so the two curves may differ by more."
             if ratio is not None and abs(ratio - 1) > RELAXED_VOLUME_TOL else "")
    return (f"Novel as drawn, but relaxed before its DFT check it became {into_name(into, c, settings)}: its DFT "
            f"curve is {own}, so it is no new structure with this DOS. Its DFT numbers and the stored label's can "
            "differ, typically by a few hundredths of a state/eV (up to about 0.2): two GPAW calculations of cells "
            "relaxed from different starts." + apart)


def view_note(c: dict, dft: dict | None, settings: dict | None = None) -> str:
    """What the 3D view shows when the DFT curve beside it is another cell's: the drawn cell, where
    the check calculated its relaxed cell (which may be a known compound)."""
    if not (dft and dft.get("status") == "done" and (dft.get("result") or {}).get("relaxed")):
        return ""
    into = relaxed_into(dft)
    became = f", which is {into_name(into, c, settings or {})}" if into else ""
    return (f"The view shows the cell as drawn; the DFT curve is of its relaxed cell{became} (its CIF is "
            "below).")


# The run's download buttons get bytes, not callables run on click: a callable's id lasts one run of
# the page, and a run cut short by another (a field changed, or a DFT result landed, mid-redraw)
# dropped it while its button stayed on screen ("Failed to generate file for download"). Bytes are
# served under their content's hash, the same id run after run; what is dear to make is cached.

def zip_key(run: dict, dft: dict, stored: dict) -> tuple:
    """What a run's zip depends on, in brief (hashing the run itself takes a second): a stored run
    changes while it is written and when it is re-scored (`dosmatgen evaluate`: its predicted MAEs),
    and a check's curves only when it ends, so its end stands for it (a check moving from queued to
    relaxing to GPAW does not build the zip again)."""
    checks = tuple(sorted((r, s.get("status"), s.get("finished")) for r, s in dft.items()
                          if (s or {}).get("status") in ("done", "failed")))
    labels = tuple(sorted((r, site, v["name"]) for r, sites in stored.items() for site, v in sites.items()))
    scores = tuple(round(float(c["dos_mae"]), 6) if np.isfinite(c.get("dos_mae", np.nan)) else None
                   for c in run["candidates"])
    return (run["id"], run.get("status"), len(run["candidates"]), len(run.get("baseline", [])), checks, labels,
            scores)


@st.cache_data(show_spinner=False, max_entries=8)
def _zip_file(key: tuple, _run: dict, _dft: dict, _curves: dict) -> bytes:
    return run_zip(_run, _dft, _curves)


@st.cache_data(show_spinner=False, max_entries=1024)
def _cell_files(cif: str) -> tuple[str, str, str]:
    """A candidate's symmetrised CIF (spglib), POSCAR and extxyz, from its stored CIF."""
    s = runsmod.structure_of({"cif": cif})
    return runsmod.cif_file(s, symmetrised=True), runsmod.to_poscar(s), runsmod.to_extxyz(s)


def partial_summary(run: dict) -> dict:
    """The counts a run's cards need, from its candidates: a run stopped before its summary
    (cancelled, failed, still running) has candidates but no summary."""
    cands = run.get("candidates", [])
    return {"n": len(cands), "structurally_valid": sum(bool(c.get("structurally_valid")) for c in cands)}


UNFINISHED = {"running": "is still being generated", "cancelled": "was cancelled",
              "failed": "failed", "interrupted": "stopped when the app's process ended"}


def unfinished_text(run: dict) -> str | None:
    """What a run that did not finish shows above its candidates (None for a finished run)."""
    status = run.get("status", "done")
    if status == "done":
        return None
    why = UNFINISHED.get(status, f"ended as {status!r}")
    if status == "failed" and run.get("error"):
        why += f" ({studio.plain(run['error'])})"
    n = len(run.get("candidates", []))
    if not n:
        return f"Run {run['id']} {why} before any candidate was scored."
    return (f"Run {run['id']} {why}: the {n} candidate{'s' * (n != 1)} scored "
            f"{'so far' if status == 'running' else 'before that'} are shown in the order they were drawn, "
            "not ranked" + (" yet; reload to see more." if status == "running" else "."))


def show_run(run: dict, dft: dict[int, dict] | None = None, stored: dict | None = None, max_cards: int = 20,
             heading: str = "5 · Results", live_views: int = 8, grow=None, waiting=(), skip=None, skippable=(),
             not_run: dict[int, str] | None = None) -> None:
    """dft: rank → Verifier.status; stored: stored_labels(...); heading: the Generate page numbers
    its steps, the Runs page does not; live_views: cards whose 3D view is drawn at once (the page's
    other views and these stay within viz.MAX_LIVE_VIEWS); grow: a callback taking
    seeding.grow_source(...), for a "Grow from this" button on each card with a target; waiting: ranks
    of a DFT batch still to start (the certifier queues them itself: the verifier knows them only once
    started), badged "DFT queued" as those it has queued are. skip: a callback taking a rank, for a
    "Skip its DFT check" button on the cards in skippable (certify.skippable); not_run: rank → why its
    check will not run ('DFT check skipped', '… stopped before it started'), badged so."""
    dft, stored, not_run = dft or {}, stored or {}, not_run or {}
    s = {**partial_summary(run), **run["summary"]}
    st.header(heading)
    if note := unfinished_text(run):
        st.warning(note)
    st.caption(f"Run `{run['id']}` · {studio.plain(run['title'])} · {studio.plain(studio.build_text(run['settings']))} "
               f"· seed {run['settings']['seed']} · device "
               f"{run['settings']['device']} · {run['settings']['steps']} steps · {guidance_text(run['settings'])}"
               f"{steering_text(run['settings'])}checkpoint {str(run['settings'].get('checkpoint_sha256'))[:10]}")
    maes = dft_maes(run, dft, stored)
    same = stored_label_of(run, dft, maes)      # copies of one known compound: one place
    # two to a row, each unit in its label: three to a row cut the values at 800 px ("0.161 s…"), and
    # five to a row cut the labels at 1280 px. GPAW's number first, the predictor's under it
    m1, m5 = st.columns(2)
    m3, m4 = st.columns(2)
    # the big number counts only sound cells: walk 17's class read "8/8" above 7 cells with O–Ti at 43 %
    m1.metric("Valid, no atoms pressed", f"{s['structurally_valid'] - pressed_count(run)}/{s['n']}",
              help=f"Candidates with a valid geometry (no atoms closer than 0.5 Å, a sound cell) and no two atoms "
                   f"pressed below {PRESSED:.0%} of their covalent radii, of all in the run.")
    if text := pressed_text(run):
        m1.caption(text)
    if s.get("mean_dos_mae") is not None:
        m3.metric("Predicted MAE, mean (states/eV)", f"{s['mean_dos_mae']:.3f}",
                  help="Mean DOS MAE of the candidates' conditioned sites, by the site-DOS predictor.")
    if s.get("baseline_mean_dos_mae") is not None:
        m4.metric("Predicted MAE, baseline (states/eV)", f"{s['baseline_mean_dos_mae']:.3f}",
                  help="Mean predicted DOS MAE of unconditional samples with the same atom counts: what the target adds.")
    if maes:        # the predicted numbers beside what DFT says
        new = new_structure_maes(run, dft, maes)
        m5.metric("DFT MAE, best new (states/eV)", f"{min(new.values()):.3f}" if new else "—",
                  help="The best DFT MAE among the checked candidates that are new structures: not "
                       "known ones (whose stored labels the DFT order below also shows), and not those whose relaxed "
                       "cell turned out to be a known compound.")
        if named := best_new_text(run, dft, new):
            m5.caption(named)
    if invalid := invalid_text(run):
        st.warning(invalid)
    if worse := no_better_text(run):
        st.info(worse)
    if back := template_back_text(run):
        st.info(back)
    if made := count_text(run["candidates"], run.get("summary")):
        st.caption(f"{s['n']} candidates: {made}.")
    if any(c.get("novel") for c in run["candidates"]):
        st.caption(NOVEL_NOTE)
    if words := window_words(run):
        st.caption(f"Every MAE and cosine of this run, predicted and DFT, is taken{words}, the energies its target "
                   "is compared on (outside them its file has no data, or they were left out). Runs compared on the "
                   "whole grid are not comparable number for number.")
    curves_of = {c["rank"]: candidate_curves(run, c, dft.get(c["rank"]), stored.get(c["rank"]))
                 for c in run["candidates"]}
    zip_box = st.container()        # the zip's button, filled after the cards: they do not wait for its plots
    # the DFT table and its notes appear as checks land: in one block, the cards below keep their
    # place in the page (a card that moves reloads its 3D view)
    with st.container():
        table = dft_table(run, dft, stored, maes)
        if table:
            st.subheader("DFT results, best first")
            st.caption("GPAW checks of this run's candidates, the stored DFT labels of candidates that are known "
                       "structures, and those of the known sites a seeded run grew from (the lookup: the closest labelled "
                       "sites, no generation) or of the checked candidate it grew from, as the baseline to beat. "
                       "Cosine 1 is the target's shape exactly.")
            # a stored label has no prediction and no timings: a dash, not the word None; shown as text,
            # since a column of numbers and blanks cannot go to Arrow as one type
            st.dataframe([{headed(k): table_text(k, v) for k, v in r.items()} for r in table], hide_index=True,
                         width="stretch")
        st.caption("'predicted' curves come from the site-DOS predictor, not DFT; 'DFT' curves are GPAW calculations "
                   "of the candidate; 'stored label' curves are the DFT label of a known structure the candidate "
                   f"matches. Both DFT kinds are {SPIN_WORDS}. Stability is {run_potential(run)} energy above a "
                   "hull of the same potential (an ML hull, not "
                   "the Materials Project hull).")
        if maes:
            st.caption("Cards stay in predicted rank (#): new structures first, then known ones; the table above and "
                       "each card's DFT badge give the order by DFT.")
    # the cards keep their order as DFT results land: moving a card reloads its 3D view, and a burst
    # of reloads makes the browser drop the oldest views on the page (measured: 5 of 6 known-site views)
    for k, c in enumerate(run["candidates"][:max_cards]):
        struct = runsmod.structure_of(c)
        with st.container(border=True):
            sg = c.get("spacegroup", {})
            st.markdown(f"**#{c['rank']} · {formula(c['formula'])}** · space group {studio.spacegroup_name(sg.get('0.1', '?'))} "
                        f"at 0.1 Å tolerance, {studio.spacegroup_name(sg.get('0.01', '?'))} at 0.01 Å · {c['n_atoms']} atoms")
            d = dft.get(c["rank"])
            into = relaxed_into(d)
            dft_badge = (f":violet-background[{dft_rank_text(c['rank'], maes, same)}]" if c["rank"] in maes else
                         f":gray-background[{not_run[c['rank']]}]" if c["rank"] in not_run else
                         {"failed": ":red-background[DFT failed]", "running": ":blue-background[DFT running]",
                          "queued": ":blue-background[DFT queued]"}.get((d or {}).get("status"),
                                                                         ":blue-background[DFT queued]"
                                                                         if c["rank"] in waiting else ""))
            st.markdown(" ".join([
                _geometry_badge(c),
                _charge_badge(c),
                _badge(c.get("unique"), "unique in run", "duplicate in run"),
                (":orange-background[the template itself]" if c.get("same_as_template") else
                 ":orange-background[the reference itself]" if c.get("is_reference") else
                 f":orange-background[relaxed into {into_name(into, c, run['settings'])}]" if into else
                 _badge(c.get("novel"), "novel", f"known ({known_name(c)})", "novelty not checked")),
                _stability_badge(c, run["settings"].get("stability")), dft_badge,
            ]))
            # the notes come and go as checks land (relaxed into a known compound, failed): in one block of
            # their own, the 3D view below keeps its place in the page, so it is not reloaded (a burst of
            # reloads makes the browser drop the oldest views)
            with st.container():
                # in this block, as the notes: a button that comes and goes must not move the 3D view
                # below (each move reloads it, and a burst of reloads drops the page's oldest views)
                if skip is not None and c["rank"] in skippable:
                    st.button("Skip its DFT check", key=f"skip_{run['id']}_{c['rank']}", on_click=skip,
                              args=(c["rank"],),
                              help="Its check has not started: it is left out, and the batch's other checks go on.")
                if c.get("known_via"):
                    st.caption(known_via_text(c))
                elif c.get("is_reference"):
                    st.caption(reference_text(c))
                elif into:
                    st.caption(became_text(into, c, run["settings"], d["result"].get("relaxed_into_volume_ratio")))
                elif c.get("novel") and d and d.get("status") == "done" and (kind := type_text(d["result"])):
                    st.caption(kind)
                elif sym := known_symmetry_text(c) or element_crystal_text(c):
                    st.caption(sym)
                elif not (d and d.get("status") == "done" and d["result"].get("relaxed")) and (drawn := as_drawn_text(c)):
                    st.caption(drawn)       # a relaxed check has answered it: relaxed_into, or still new
                if polymorph := polymorph_text(run, c):
                    st.caption(polymorph)
                if origin := origin_text(c):
                    st.caption(origin)
                if d and d.get("status") == "done" and (twin := twin_text(d.get("result"))):
                    st.caption(twin)
                if c.get("reasons"):
                    st.caption("; ".join(c["reasons"]))
                if d and d.get("status") == "failed":
                    st.caption(f"DFT check failed: {d.get('error')}")
            # an unconditional candidate has no curve to plot: its 3D view takes the card
            has_dos = bool(curves_of[c["rank"]] or c.get("dos_match"))
            if has_dos:
                left, right = st.columns([3, 2])
                with left:
                    _card_dos(run, c, curves_of[c["rank"]])
                with right:
                    _card_view(run, c, struct, live=k < live_views, dft=d)
                _card_match(run, c, struct, d)
            else:
                _card_view(run, c, struct, live=k < live_views, dft=d)
            stem = f"{run['id']}_{c['rank']}_{formula(c['formula'])}"      # Au3Ni, as the card says
            sym_cif, poscar, extxyz = _cell_files(c["cif"])
            # a row that wraps (five columns cut the labels at 800 px); files, not callables (see zip_key)
            with st.container(horizontal=True, key=f"files{stem}"):
                for label, data, name in (
                        ("CIF (sym)", sym_cif, f"{stem}_sym.cif"),
                        ("CIF (P1)", runsmod.cif_file(c["cif"]), f"{stem}_P1.cif"),
                        ("POSCAR", poscar, f"{stem}.vasp"),
                        ("extxyz", extxyz, f"{stem}.extxyz"),
                        ("DOS CSV", runsmod.dos_csv(c, run["settings"]["targets"], run_window(run), dft_rows(d),
                                                       bool(run["settings"].get("spread_calibration")),
                                                       runsmod.dos_csv_note(run, c)),
                         f"{stem}_dos.csv")):
                    st.download_button(label, data, name, key=f"{label}{stem}", on_click="ignore")
            if d and d.get("status") == "done" and (d.get("result") or {}).get("relaxed"):
                # the DFT curve is this cell's, not the drawn one's above
                st.download_button("CIF of the relaxed cell that DFT calculated", runsmod.cif_file(d["result"]["cif"]),
                                   f"{stem}_relaxed.cif", key=f"c6{stem}", on_click="ignore")
            if grow is not None and c["site_to_target"]:
                st.button("Grow from this candidate", key=f"grow{stem}", on_click=grow, args=(grow_source(run, c, d),),
                          help="The next round around this candidate (its DFT-checked cell once it has one), its "
                               "conditioned atom carrying the target: the model's draws and the swaps grown from it "
                               "alone (template mode when it has several conditioned atoms).")
    # built once per run and state of its checks (an SVG plot per candidate: seconds), not per redraw;
    # none for a run with no candidate yet (a walk saw a zip offered for a run still generating)
    if run["candidates"]:
        zip_box.download_button("Download the whole run (zip: CIFs, POSCARs, DOS CSVs and SVG plots, JSON)",
                                _zip_file(zip_key(run, dft, stored), run, dft, curves_of),
                                f"dosmatgen_run_{run['id']}.zip", mime="application/zip", key=f"zip_{run['id']}",
                                on_click="ignore")
