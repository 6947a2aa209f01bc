"""Model: the model cards and the latest benchmark results."""
import json

import pandas as pd
import streamlit as st

from studio import shared as studio
from dosmatgen_core.model.checkpoint import card_path

st.set_page_config(page_title="Model · DOSMatGen Studio", layout="wide")
st.title("Models and benchmarks")
st.caption(f"Device in use: {studio.device_label()}")
for name, path in (("Generator (denoiser)", studio.MODEL_PATH), ("Site-DOS predictor", studio.PREDICTOR_PATH)):
    st.subheader(name)
    cp = card_path(path)
    if cp.exists():
        card = json.loads(cp.read_text())
        st.json(card, expanded=False)
        if "heldout" in card:
            st.dataframe(pd.DataFrame(card["heldout"]).T, width="stretch")
    else:
        st.warning(f"No model card at {cp}.")
# the training run that made the shipped generator (its card names it)
gen_card = json.loads(card_path(studio.MODEL_PATH).read_text()) if card_path(studio.MODEL_PATH).exists() else {}
log = studio.ROOT / gen_card.get("run_dir", "runs/train/main") / "log.csv"
if log.exists():
    df = pd.read_csv(log)
    st.subheader(f"Training curve ({gen_card.get('type_diffusion', 'continuous')} atom types)")
    # val_labelled_loss is the conditional branch's health: it rises when labels are memorised
    st.line_chart(df.set_index("epoch")[[c for c in ("train_loss", "val_loss", "val_labelled_loss") if c in df]])
st.subheader("Benchmarks")
bench_dir = studio.ROOT / "bench"
files = sorted(bench_dir.glob("*.json")) if bench_dir.exists() else []
if not files:
    st.info("No benchmark results yet: run `./run.sh dosmatgen bench generate` (or label / evaluate).")
for f in files:
    res = json.loads(f.read_text())
    with st.expander(f.name, expanded=True):
        flat = pd.json_normalize({k: v for k, v in res.items() if k != "machine"}, sep=" · ").T
        flat.columns = ["value"]
        flat["value"] = flat["value"].astype(str)
        st.dataframe(flat, width="stretch")
        if "au3ni_ni_site" in res:
            df = pd.DataFrame(res["au3ni_ni_site"]).T[["share_ni_conditional", "share_ni_unconditional"]]
            df.index.name = "N atoms"
            st.caption("Au3Ni case: share of conditioned atoms that come out as Ni")
            st.bar_chart(df, stack=False)
        if "steps_comparison" in res:
            st.caption("Reduced step counts against 1000 steps")
            st.dataframe(pd.DataFrame(res["steps_comparison"]).T, width="stretch")
        st.caption(f"machine: {res.get('machine', {})}")
