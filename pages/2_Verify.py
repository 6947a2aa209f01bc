"""Verify: queue a GPAW DFT check of a candidate and overlay its site DOS on the target."""
import time

import streamlit as st

from studio import shared as studio
from studio import state
from studio.charts import dos_chart
from studio.results import window_words, became_text, candidate_name, match_rows, predicted_curve, reference_check_rows, run_label, target_label, verification_rows
from studio.shared import formula
from studio import nav
from dosmatgen_core.candidates.words import twin_text
from dosmatgen_core.labels.labeller import RECIPE_WORDS
from dosmatgen_core.candidates.runs import structure_of
from dosmatgen_core.scoring.verify import default_workers, relaxed_into, run_window

nav.inside_app()     # a page opened by its own URL on a fresh server runs through the app

st.title("Verify a candidate with DFT (GPAW)")
load, cpus = state.cpu_load()
busy = studio.slowdown(default_workers(), load, cpus)       # the prior was timed on a quiet CPU
st.caption(f"The labelling recipe ({RECIPE_WORDS}) on the candidate as generated or, "
           f"if asked, after a {studio.potential_label()} relaxation. Small cells take about "
           f"{studio.duration(studio.dft_seconds_prior() * busy)} here (relaxation included when asked for"
           + (f"; ×{busy:.1f} for the {studio.load_words(load, cpus)}" if busy >= 1.05 else "")
           + f"); larger ones much longer. {default_workers()} run at a time (one per CPU core).")
# walk 18 looked here for a way to check a CIF of their own
st.caption("A structure of your own (CIF, POSCAR): upload it on the Generate page (“…or upload a structure”) and "
           "press “Calculate this cell with GPAW” under it (offered for cells of at most "
           f"{studio.SHIPPED.max_dft_atoms} atoms whose elements the recipe covers); its sites' DFT curves then become "
           "the target's.")
v = state.verifier(str(studio.RUNS_PATH))
runs = v.store.list()
if not runs:
    st.info("No runs yet. Generate some on the Generate page.")
    st.stop()
titles = {r["id"]: run_label(r) for r in runs}
# the newest run with candidates first: one still generating has none to check yet
if st.session_state.get("verify_run") not in titles:
    # ... and with a target (an unconditional run has none to overlay)
    st.session_state["verify_run"] = next((r["id"] for r in runs if r["candidates"] and r["mode"] != "unconditional"),
                                          next((r["id"] for r in runs if r["candidates"]), runs[0]["id"]))
rid = st.selectbox("Run", list(titles), format_func=titles.get, key="verify_run")
run = v.store.get(rid)
if not run["candidates"]:
    st.info(f"Run {rid} has no candidates to check: " + studio.NO_CANDIDATES_YET.get(
        run["status"], f"it is {run['status']} and holds none") + ". Pick another run.")
    st.stop()
checked = v.statuses(run)
names = {c["rank"]: candidate_name(c, checked.get(c["rank"]), run["settings"]) for c in run["candidates"]}
# a known candidate has its stored label already (the reference's is the target): the first new one
first_new = next((k for k, c in enumerate(run["candidates"]) if c.get("novel") is not False), 0)
rank = st.selectbox("Candidate", list(names), index=first_new, format_func=names.get, key=f"verify_rank_{rid}")
cur = v.status(rid, rank)
relaxed = st.checkbox(f"Relax with {studio.potential_label()} first (positions and cell)", value=studio.SHIPPED.dft_relaxed, key="relaxed")
# a finished check of this cell (drawn or relaxed, as ticked) is its answer: the same again is not queued
same_done = bool(cur and cur["status"] == "done" and bool((cur.get("result") or {}).get("relaxed")) == relaxed)
if note := studio.other_cell_note(cur, relaxed):
    st.caption(note)
if st.button("Queue DFT verification", disabled=bool(cur and cur["status"] in ("queued", "running")) or same_done,
             key="queue", help="Already checked this way: its result is below." if same_done else None):
    v.submit(rid, rank, relaxed=relaxed)
    st.rerun()


@st.fragment(run_every=2.0)
def status_panel():
    s = v.status(rid, rank)
    seen = f"verify_seen_{rid}_{rank}"
    if s is not None and st.session_state.get(seen) in ("queued", "running") and s["status"] not in ("queued", "running"):
        st.session_state[seen] = s["status"]
        st.rerun(scope="app")            # ended: the table below shows it too
    st.session_state[seen] = s and s["status"]
    if s is None:
        st.info("Not verified yet.")
        return
    if s["status"] == "queued":
        st.info("Queued: it starts when a worker is free.")
    elif s["status"] == "running":
        since = f" for {studio.duration(time.time() - s['started'])}" if s.get("started") else ""
        doing = f": {s['stage']}" if s.get("stage") else " (relaxation, if asked for, then GPAW)"
        st.info(f"Running{since}{doing}; small cells usually take about "
                f"{studio.duration(studio.dft_seconds_prior() * busy)} here.")
    elif s["status"] == "failed":
        st.error(f"Verification failed: {s['error']}")
    else:
        res = s["result"]
        cand = next(c for c in run["candidates"] if c["rank"] == rank)
        relax = res.get("relax_seconds")
        gpaw = (f"#{res['same_crystal_as']}'s GPAW run" if res.get("same_crystal_as") is not None
                else f"GPAW {res['seconds']} s")
        st.success(f"Done: {gpaw}" + (f" after a {relax} s relaxation" if relax else "")
                   + f" (the table's time also counts the wait and the setup); E_F = {res['e_fermi_eV']:.3f} eV "
                   "(absolute).")
        if into := relaxed_into(s):
            st.warning(became_text(into, cand, run["settings"], res.get("relaxed_into_volume_ratio")))
        if twin := twin_text(res):
            st.info(twin)
        elements = [x.specie.symbol for x in structure_of(cand)]
        for site, row in cand["site_to_target"].items():
            curves = [{"y": run["settings"]["targets"][int(row)], "name": target_label(run), "style": "target",
                       "window": run_window(run)},
                      {"y": res["site_dos"][int(site)], "name": f"DFT of candidate #{rank}"
                       + (" (relaxed cell)" if res.get("relaxed") else ""), "style": "dft"}]
            if cand.get("predicted_dos"):
                curves.append(predicted_curve(cand, int(site), f"predicted for candidate #{rank}",
                                              run["settings"].get("spread_calibration")))
            dos_chart(curves, key=f"ver_{site}", filename=f"{rid}_candidate{rank}_site{site}_dft",
                      title=f"candidate #{rank} · {formula(cand['formula'])} · site {site} ({elements[int(site)]})")
            if m := res["dos_match"].get(str(site)) or res["dos_match"].get(site):
                st.caption(f"DFT DOS against the target{window_words(run)}")
                st.dataframe(match_rows({site: m}, elements), hide_index=True, width="stretch")


status_panel()
st.subheader("All verifications")
rows = v.all(results=True)
stored = {r["id"] for r in runs}       # a verification can outlive its run
formulas = {(r, c["rank"]): c["formula"] for r in {x["run_id"] for x in rows} & stored
            for c in v.store.get(r)["candidates"]}
st.dataframe(verification_rows(rows, formulas), hide_index=True, width="stretch")
if targets := state.reference_checks().all():
    # a target structure calculated from the Generate page runs in the background too
    st.subheader("Target structures calculated with GPAW")
    st.caption("Uploaded and unlabelled structures whose sites' DFT became the target (“Calculate this cell with "
               "GPAW” on the Generate page); each result is kept as a label under its id.")
    st.dataframe(reference_check_rows(targets), hide_index=True, width="stretch")
