"""Model: the shipped models' statistics and the latest benchmark result of each kind."""
import json

import pandas as pd
import streamlit as st

from dosmatgen_core.model.checkpoint import card_path
from studio import shared as studio
from studio import figures as viz
from studio import nav

nav.inside_app()     # a page opened by its own URL on a fresh server runs through the app

st.title("Models and benchmarks")
st.caption(f"Device in use: {studio.device_label()}")


def card(path) -> dict:
    cp = card_path(path)
    return json.loads(cp.read_text()) if cp.exists() else {}


gen, pred = card(studio.MODEL_PATH), card(studio.PREDICTOR_PATH)
m1, m2 = st.columns(2)
with m1:
    st.subheader("Generator")
    st.write(studio.model_summary(gen) if gen else "No model card.")
with m2:
    st.subheader("Site-DOS predictor")
    h = pred.get("heldout", {}).get("all", {})
    if h:
        st.write(f"Held-out MAE {h.get('mae', float('nan')):.3f} states/eV, cosine {h.get('cosine', float('nan')):.3f}")
    if "heldout" in pred:
        # named in words, with units, as the results' tables name them
        st.dataframe(studio.heldout_table(pred["heldout"]), width="stretch")
for name, c in (("Generator model card", gen), ("Predictor model card", pred)):
    with st.expander(name):
        st.dataframe(studio.record_rows(c), hide_index=True, width="stretch")
log = studio.ROOT / gen.get("run_dir", "runs/train/main") / "log.csv"
if log.exists():
    df = pd.read_csv(log)
    st.subheader(f"Training curve ({gen.get('type_diffusion', 'continuous')} atom types)")
    # val_labelled_loss is the conditional branch's health: it rises when labels are memorised
    names = studio.LOSS_CURVES
    drawn = [c for c in names if c in df]
    # leading epochs far above the rest are left off, and a fine-tune (the card's warm start) says
    # it starts trained: both decided from the log and the card (figures.training_view)
    shown, note = viz.training_view(df, drawn, gen.get("warm_start"))
    st.line_chart(shown.set_index("epoch")[drawn].rename(columns=names), x_label="epoch", y_label=studio.LOSS_AXIS)
    st.caption(note)

st.subheader("Benchmarks: the latest result of each kind")
latest = studio.latest_results()
if not latest:
    st.info("No benchmark results yet: run `./run.sh dosmatgen bench generate` (or label / evaluate).")
# current records first: a superseded one (measured before a fix) stays listed, marked as such
latest = sorted(latest, key=lambda i: bool(i["record"].get("superseded")))
st.dataframe([{"what it measures": studio.RESULT_KINDS.get(i["kind"], i["kind"]),
               "status": "superseded" if i["record"].get("superseded") else "current", "file": i["file"],
               "date": i["date"].strftime("%Y-%m-%d %H:%M"),
               "note": str(i["record"].get("note") or i["record"].get("superseded") or "")[:120]} for i in latest],
             hide_index=True, width="stretch")
for item in latest:
    res = item["record"]
    with st.expander(("superseded: " if res.get("superseded") else "") + studio.result_title(item)):
        if res.get("superseded"):
            st.warning(str(res["superseded"]))
        st.dataframe(studio.record_rows(res), hide_index=True, width="stretch")
        if "au3ni_ni_site" in res:
            df = pd.DataFrame(res["au3ni_ni_site"]).T[["share_ni_conditional", "share_ni_unconditional"]]
            df.index.name = "N atoms"
            st.caption("Au3Ni case: share of conditioned atoms that come out as Ni")
            st.bar_chart(df, stack=False)
