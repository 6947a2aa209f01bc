"""Model: the shipped models' statistics and the latest benchmark result of each kind."""
import json

import altair as alt
import pandas as pd
import streamlit as st

from dosmatgen_core.model.checkpoint import card_path
from studio import shared as studio
from studio import figures as viz
from studio import nav
from studio.standing import STANDING_WORDS, truth_rows, verdict

nav.inside_app()     # a page opened by its own URL on a fresh server runs through the app

st.title("Models and benchmarks")
st.caption(f"Device in use: {studio.device_label()}")


# the held-out table's columns (studio.heldout_table's names), sized to show every value and heading
# at 800 px (the main area is about 470 px wide there); each says more in its tooltip
HELDOUT_COLUMNS = {
    "_index": st.column_config.TextColumn("sites", width=70),
    "sites": st.column_config.NumberColumn("count", width=55, format="%d", help="Held-out sites"),
    "cosine": st.column_config.NumberColumn("cosine", width=60, format="%.3f"),
    studio.METRIC_NAMES["mae"]: st.column_config.NumberColumn(
        studio.METRIC_NAMES["mae"], width=115, format="%.3f", help="Mean absolute error over the whole grid"),
    studio.METRIC_NAMES["mae_ef2"]: st.column_config.NumberColumn(
        "MAE near E_F (states/eV)", width=160, format="%.3f",
        help=studio.METRIC_NAMES["mae_ef2"].replace("E_F", "the Fermi level E_F")),
}


def card(path) -> dict:
    cp = card_path(path)
    return json.loads(cp.read_text()) if cp.exists() else {}


# DFT first: whether a match holds is GPAW's word on targets no model trained on, not the predictor's
standing = truth_rows(studio.RESULTS_DIR)
if standing:
    st.subheader("Where the app stands, by DFT")
    st.caption(STANDING_WORDS)
    shares = ("app: cosine ≥ 0.9", "lookup: cosine ≥ 0.9")
    table = pd.DataFrame(standing)
    table[list(shares)] *= 100        # "65 %": Streamlit's "percent" format writes 64.52%
    st.markdown(verdict(standing))
    # narrow columns, units in the help: at 1024 and 800 px the last ones were cut (walk 17)
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "set": st.column_config.TextColumn("set", width=40), "targets": st.column_config.NumberColumn(width=60),
        "bar met": st.column_config.CheckboxColumn("bar met", width=60),
        **{k: st.column_config.NumberColumn(format="%.0f %%", width=90) for k in shares},
        **{k: st.column_config.NumberColumn(k, format="%.3f", width=90, help="states/eV") for k in
           ("app: DFT MAE", "lookup: DFT MAE", "checked: predicted MAE", "checked: DFT MAE")},
        "record": st.column_config.TextColumn("record", width=90)})
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
    # the page's whole width, under both columns, named in words with units: in half the width the
    # last column showed blank cells at 1280 px (its numbers sit at its right, past the cut edge) and
    # the MAE column was gone at 800 px. Fixed widths that fit 800 px's 470 px, a tooltip each.
    st.caption("The site-DOS predictor on held-out sites, by block of the periodic table; "
               "MAE near E_F: within ±2 eV of the Fermi level.")
    st.dataframe(studio.heldout_table(pred["heldout"]), width="content", column_config=HELDOUT_COLUMNS)
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
    # drawn with Altair rather than st.line_chart: its legend, one row at the chart's foot, ran past
    # the right edge at 800 px and took the x-axis' last label with it; here the legend lists the
    # curves one a line and the axis keeps its end labels inside the chart (labelFlush)
    long = shown.melt("epoch", drawn, var_name="curve", value_name="loss")
    long["curve"] = long["curve"].map(names)
    line = alt.Chart().mark_line().encode(
        x=alt.X("epoch:Q", title="epoch", scale=alt.Scale(nice=False, zero=False),
                axis=alt.Axis(format="d", tickMinStep=1, labelFlush=True)),
        y=alt.Y("loss:Q", title=studio.LOSS_AXIS),
        color=alt.Color("curve:N", title=None, sort=[names[c] for c in drawn],
                        legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=0)),
        tooltip=["epoch:Q", "curve:N", alt.Tooltip("loss:Q", format=".3f")])
    st.altair_chart(alt.layer(line, data=long), width="stretch")
    st.caption(note)

st.subheader("Benchmarks: the latest result of each kind")
# dated by each record's own date, else the git commit that wrote it, never the file's modification
# time (a checkout sets it: every undated record tied, and the oldest predictors record showed as latest)
latest = studio.latest_results(studio.RESULTS_DIR)
if not latest:
    st.info("No benchmark results yet: run `./run.sh dosmatgen bench generate` (or label / evaluate).")
# current records first: a superseded one (measured before a fix) stays listed, marked as such
latest = sorted(latest, key=lambda i: bool(i["record"].get("superseded")))
st.dataframe([{"what it measures": studio.RESULT_KINDS.get(i["kind"], i["kind"]),
               "status": "superseded" if i["record"].get("superseded") else "current", "file": i["file"],
               "date": studio.date_text(i),
               "note": str(i["record"].get("note") or i["record"].get("superseded") or "")[:120]} for i in latest],
             hide_index=True, width="stretch")
# the superseded ones' rows only on request: a walk found 33 expanders, old ones among them, too many for a demo
old = sum(bool(i["record"].get("superseded")) for i in latest)
show_old = old and st.toggle(f"Show the {old} superseded records' rows too", key="show_superseded")
for item in latest:
    res = item["record"]
    if res.get("superseded") and not show_old:
        continue
    with st.expander(("superseded: " if res.get("superseded") else "") + studio.result_title(item)):
        if res.get("superseded"):
            st.warning(str(res["superseded"]))
        st.dataframe(studio.record_rows(res), hide_index=True, width="stretch")
        if "au3ni_ni_site" in res:
            df = pd.DataFrame(res["au3ni_ni_site"]).T[["share_ni_conditional", "share_ni_unconditional"]]
            df.index.name = "N atoms"
            st.caption("Au3Ni case: share of conditioned atoms that come out as Ni")
            st.bar_chart(df, stack=False)
