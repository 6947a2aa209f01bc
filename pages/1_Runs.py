"""Runs: history of generation runs; reopen, compare, delete."""
import datetime as dt

import streamlit as st

from studio import shared as studio
from studio.results import show_run
from dosmatgen_core.candidates.runs import RunStore

st.set_page_config(page_title="Runs · DOSMatGen Studio", layout="wide")
st.title("Runs")
store = RunStore(studio.RUNS_PATH)
runs = store.list()
if not runs:
    st.info("No runs yet. Generate some on the main page.")
    st.stop()
table = [{"id": r["id"], "when": dt.datetime.fromtimestamp(r["created"]).strftime("%Y-%m-%d %H:%M"),
          "title": r["title"], "candidates": r["summary"].get("n"),
          "valid": r["summary"].get("structurally_valid"),
          "DOS MAE": r["summary"].get("mean_dos_mae"), "baseline MAE": r["summary"].get("baseline_mean_dos_mae")}
         for r in runs]
st.dataframe(table, hide_index=True, width="stretch")
ids = [r["id"] for r in runs]
label = {r["id"]: f"{r['id']} · {r['title']}" for r in runs}
c1, c2 = st.columns(2)
pick = c1.selectbox("Open run", ids, format_func=label.get, key="open_run")
other = c2.multiselect("Compare with", [i for i in ids if i != pick], format_func=label.get, key="compare")
if other:
    st.subheader("Comparison")
    st.dataframe([t for t in table if t["id"] in [pick, *other]], hide_index=True, width="stretch")
with st.expander("Delete this run"):
    sure = st.checkbox(f"Yes, delete run {pick} and its candidates for good", key="confirm_delete")
    if st.button("Delete", disabled=not sure, key="delete"):
        store.delete(pick)
        st.success(f"Run {pick} deleted.")
        st.rerun()
show_run(store.get(pick))
