"""Runs: history of generation runs; reopen, compare, delete; DFT results of each run's candidates."""
from functools import cache

import streamlit as st

from dosmatgen_core.structures import StructureError
from studio import shared as studio
from studio import state
from studio.charts import dos_chart
from studio.results import (RUNS_COLUMNS, RUNS_TABLE_NOTE, compare_caption, compare_figures, dft_mae, opened_first, run_label,
                            runs_table, show_run, shown)
from studio import nav

nav.inside_app()     # a page opened by its own URL on a fresh server runs through the app

st.title("Runs")
store = state.store()


def grow_from(src: dict) -> None:
    """A card's "Grow from this candidate": the next round, started below (a callback cannot switch pages)."""
    st.session_state["grow_pending"] = src


if src := st.session_state.pop("grow_pending", None):
    # the round runs as the Generate page's job: that page follows it, DFT-checks its top as shipped
    try:
        st.session_state["rounds_note"] = state.start_round(src, store)
    except (ValueError, StructureError, KeyError) as exc:
        st.error(f"Could not grow from {studio.plain(src['name'])}: {exc}")
    else:
        st.switch_page(nav.pages()[0])
seen = state.activity()


@st.fragment(run_every=5.0 if state.busy(seen) else 15.0)
def follow():
    """The page redraws itself when a run or a check changes: every 5 s while one is at work, every
    15 s while none is, so that a run started from another tab shows up too (walk 10)."""
    if state.activity() != seen:
        st.rerun(scope="app")


follow()
runs = store.list()
if not runs:
    st.info("No runs yet. Generate some on the Generate page.")
    st.stop()
# a predicted number stands beside its DFT check: each run's GPAW checks come first, then the
# predictor's numbers
read = cache(store.get)      # a run is read once per page run: for its summary, the overlay and the card
checks = state.verifier(str(studio.RUNS_PATH)).summaries([r["id"] for r in runs], get=read)
table = runs_table(runs, checks)
# narrow number columns, so that time and mode fit a 1280 px window beside them (the title, last, scrolls)
st.dataframe(shown(table), hide_index=True, width="stretch", column_config=RUNS_COLUMNS)
st.caption(RUNS_TABLE_NOTE)
ids = [r["id"] for r in runs]
label = {r["id"]: run_label(r) for r in runs}
# one under the other: side by side, at 800 px the picker cut the runs' titles
pick = st.selectbox("Open run", ids, index=opened_first(runs), format_func=label.get, key="open_run")
other = st.multiselect("Compare with", [i for i in ids if i != pick], format_func=label.get, key="compare")
if other:
    st.subheader("Comparison")
    # the predicted numbers beside what GPAW said of each run's checked candidates; the numbers
    # compared come first (after the title, at 1280 px the DFT columns were scrolled out of sight)
    st.dataframe(shown([t for t in table if t["id"] in [pick, *other]]), hide_index=True, width="stretch",
                 column_config=RUNS_COLUMNS)      # the Runs table's heads: one name per number (walk 17)
    # each run's best curve over its target: DFT where a check finished, else the predictor's
    compared = [read(i) for i in [pick, *other]]
    figs, nothing = compare_figures([(r, state.dft_statuses(r)) for r in compared])
    for k, (title, curves) in enumerate(figs):
        dos_chart(curves, key=f"compare_dos_{k}", filename=f"compare-{'-'.join(r['id'] for r in compared)}-{k}",
                  title=title, height=320)
    st.caption(compare_caption(bool(figs), nothing))
# the certified flow's batch queues its checks one worker at a time: those not started are queued too
batch = state.certifier(str(studio.RUNS_PATH)).progress(pick)
status_of = {r["id"]: r["status"] for r in runs}


def delete_run(rid: str) -> None:
    """Delete, then untick the confirmation: it named this run, and the next one opened is another."""
    store.delete(rid)
    st.session_state["confirm_delete"] = False
    st.session_state["deleted_note"] = f"Run {rid} deleted."


if note := st.session_state.pop("deleted_note", None):
    st.success(note)
with st.expander("Delete this run"):
    # a run still generating would write itself back when it ends, and running checks into a deleted run
    why = ("it is still generating: cancel it on the Generate page first" if status_of.get(pick) == "running" else
           "its DFT checks are running: stop them on the Generate page first" if batch and batch["active"] else "")
    if why:
        st.caption(f"Run {pick} cannot be deleted now: {why}.")
    sure = st.checkbox(f"Yes, delete run {pick} and its candidates for good", key="confirm_delete", disabled=bool(why))
    st.button("Delete", disabled=not sure or bool(why), key="delete", on_click=delete_run, args=(pick,))
run = read(pick)
dft = state.dft_statuses(run)
st.subheader("DFT checks of this run")
waiting = [r for r in batch["ranks"] if r not in dft] if batch and batch["active"] and not batch["cancelled"] else []
# stopped before they started: named, not gone (a walk saw #3 vanish from this table)
stopped = [r for r in batch["ranks"] if r not in dft] if batch and batch["cancelled"] else []
if dft or waiting or stopped:
    # a check still running has no MAE yet, and only a failed one has an error: blank, not "None"
    st.dataframe([{"candidate": f"#{rank}", "status": s["status"],
                   "DFT MAE": f"{m:.3f}" if (m := dft_mae(s)) is not None else "", "error": s.get("error") or ""}
                  for rank, s in sorted(dft.items())]
                 + [{"candidate": f"#{r}", "status": "queued", "DFT MAE": "", "error": ""} for r in waiting]
                 + [{"candidate": f"#{r}", "status": "stopped before it started", "DFT MAE": "", "error": ""}
                    for r in stopped],
                 hide_index=True, width="stretch")
elif status_of.get(pick) == "running":
    st.caption("This run is still generating: the DFT checks of its top candidates start when it ends.")
else:
    st.caption("No candidate of this run has been checked with DFT; queue one on the Verify page.")
job = state.current_job()
busy = getattr(job, "active", False)        # one generation at a time, followed on the Generate page
if busy:
    st.caption("A generation is running (see the Generate page): growing from a candidate waits until it ends.")
show_run(run, dft, state.stored_labels(run), heading="Results", grow=None if busy else grow_from)
