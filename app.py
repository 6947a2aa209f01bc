"""DOSMatGen Studio — Generate page. Widgets only; all science lives in dosmatgen_core."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from studio import shared as studio
from studio import figures as viz
from dosmatgen_core.candidates.pipeline import Request
from dosmatgen_core.structures import StructureError, to_structure

st.set_page_config(page_title="DOSMatGen Studio", layout="wide")


@st.cache_resource
def resources():
    """Model, predictor, reference db, hull cache and job manager: loaded once per process."""
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.candidates.jobs import JobManager
    from dosmatgen_core.training.guide import load_guide
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.labels.reference_db import open_db
    out = {"errors": []}
    for key, fn in (("model", lambda: load_model(studio.MODEL_PATH)),
                    ("predictor", lambda: load_predictor(studio.PREDICTOR_PATH)),
                    ("guide", lambda: load_guide(studio.GUIDE_PATH)),
                    ("db", lambda: open_db(studio.DB_URL))):
        try:
            out[key] = fn()
        except Exception as exc:
            out[key] = None
            out["errors"].append(f"{key}: {exc}")
    from dosmatgen_core.scoring.stability import Hull
    out["hull"] = Hull(studio.HULL_PATH, studio.DB_URL)
    out["jobs"] = JobManager()
    return out


R = resources()
from dosmatgen_core.candidates.runs import RunStore  # noqa: E402
R["store"] = RunStore(studio.RUNS_PATH)      # cheap; not cached, so its path follows the environment
db, model, predictor = R["db"], R["model"], R["predictor"]

with st.sidebar:
    st.markdown("### DOSMatGen Studio")
    st.caption(f"Device: **{studio.device_label()}**")
    if model:
        st.caption(studio.model_summary(model.card))
    if predictor:
        h = predictor.card.get("heldout", {}).get("all", {})
        st.caption(f"Site-DOS predictor: held-out MAE {h.get('mae', float('nan')):.3f} states/eV, "
                   f"cosine {h.get('cosine', float('nan')):.2f}")
    for e in R["errors"]:
        st.error(e)
    st.markdown("---")
    st.caption("Structures: Materials Project (CC BY 4.0). Method: DOSMatGen, arXiv:2504.06249. "
               "DFT: GPAW (PBE, LCAO, Löwdin site projection).")

st.title("Generate structures for a target DOS")
if db is None:
    st.error("The reference database is missing; build it with `./run.sh dosmatgen build-db`.")
    st.stop()

# ---- 1. reference -----------------------------------------------------------------------------
st.header("1 · Reference material and site")
c1, c2 = st.columns([3, 1])
with c2:
    st.write("")
    if st.button("Preset: Ni in Au₃Ni (paper)", key="preset", width="stretch"):
        st.session_state["ref_query"] = "Au3Ni"
        st.session_state["ref_id"] = studio.PRESET_ID
        st.session_state["site"] = None
        st.session_state["preset_site"] = "Ni"
with c1:
    query = st.text_input("Search by formula, MP id or elements (e.g. Au3Ni, mp-522, Au-Ni, Ni)",
                          key="ref_query", value=st.session_state.get("ref_query", "Au3Ni"))
try:
    hits = db.search(text=query, limit=200) if query.strip() else db.search(limit=200)
except ValueError as exc:
    st.warning(str(exc))
    hits = []
if not hits:
    st.info("No reference material matches; try a formula such as Au3Ni or an element such as Ni.")
    st.stop()
labels = {h["material_id"]: f"{h['formula']} · {h['material_id']} · {h['spacegroup']} · {h['natoms']} atoms" for h in hits}
ids = list(labels)
default = ids.index(st.session_state["ref_id"]) if st.session_state.get("ref_id") in ids else 0
ref_id = st.selectbox("Reference", ids, index=default, format_func=labels.get, key="ref_select")
st.session_state["ref_id"] = ref_id
ref = db.get(ref_id)
ref_struct = to_structure(ref.atoms)
rows = viz.site_table(ref_struct)

left, right = st.columns([1, 1])
with left:
    sel = st.dataframe(pd.DataFrame(rows), hide_index=True, on_select="rerun", selection_mode="single-row",
                       key=f"sites_{ref_id}", width="stretch")
    picked = sel.selection.rows[0] if sel and sel.selection.rows else None
    site_key = f"site_{ref_id}"
    # a new row picked in the table moves the site selector; the selector stays free to change
    if picked is not None and st.session_state.get(f"picked_{ref_id}") != picked:
        st.session_state[f"picked_{ref_id}"] = picked
        st.session_state[site_key] = picked
    if st.session_state.pop("preset_site", None) == "Ni" and "Ni" in ref.symbols:
        st.session_state[site_key] = ref.symbols.index("Ni")
    if site_key not in st.session_state or st.session_state[site_key] >= len(rows):
        st.session_state[site_key] = 0
    site = st.selectbox("Site", range(len(rows)), format_func=lambda i: f"{i}: {rows[i]['element']} ({rows[i]['wyckoff']})",
                        key=site_key)
with right:
    st.iframe(viz.structure_html(ref_struct, {site: "#ff3b30"}, element_id="refview", script_src=viz.STATIC_SRC), height=330)
st.plotly_chart(viz.dos_figure([{"y": ref.site_dos[site], "name": f"{rows[site]['element']} site {site} (DFT)",
                                 "style": "target"}], title=f"{ref.formula}: site {site} DOS"),
                width="stretch", key="refdos")

# ---- 2. target --------------------------------------------------------------------------------
st.header("2 · Target DOS")
src = st.radio("Source", ["Picked site", "Upload CSV (energy − E_F, DOS)"], horizontal=True, key="target_src")
base = ref.site_dos[site]
if src.startswith("Upload"):
    up = st.file_uploader("CSV with two columns: E − E_F (eV), DOS (states/eV)", type=["csv", "txt", "dat"])
    if up is not None:
        try:
            base = studio.read_dos_csv(up.getvalue())
            st.success("Read and regridded onto −10…10 eV, 400 points.")
        except ValueError as exc:
            st.error(f"Could not use this file: {exc}. The picked site's DOS is used instead.")
k1, k2, k3 = st.columns(3)
shift = k1.slider("Shift (eV)", -3.0, 3.0, 0.0, 0.05)
scale = k2.slider("Scale", 0.2, 3.0, 1.0, 0.05)
smear = k3.slider("Extra smearing (eV)", 0.0, 1.0, 0.0, 0.05)
target = studio.shape_target(base, shift, scale, smear)
st.plotly_chart(viz.dos_figure([{"y": base, "name": "source", "style": "baseline"},
                                {"y": target, "name": "target", "style": "target"}]),
                width="stretch", key="targetdos")

# ---- 3. mode ----------------------------------------------------------------------------------
st.header("3 · Mode")
mode = st.radio("Constrained generation", ["masked", "template", "fixed_type", "unconditional"], horizontal=True,
                format_func={"masked": "Masked", "template": "Template", "fixed_type": "Fixed atom type",
                             "unconditional": "Unconditional (baseline)"}.get, key="mode")
req_kw: dict = {"mode": mode}
if mode in ("masked", "fixed_type", "unconditional"):
    n_atoms = st.number_input("Number of atoms N", 1, 20, 4, key="n_atoms")
    req_kw["n_atoms"] = int(n_atoms)
    if mode != "unconditional":
        cond = st.multiselect("New atoms that carry the target", list(range(int(n_atoms))), default=[0],
                              key="cond_new")
        req_kw.update(cond_sites=cond, targets=[target.tolist()] * len(cond))
    if mode == "fixed_type":
        el = st.text_input("Element held fixed on the conditioned atoms", value=rows[site]["element"], key="fixed_el")
        req_kw["fixed"] = {int(i): el for i in req_kw.get("cond_sites", [])}
elif mode == "template":
    t_hits = db.search(limit=500)
    t_ids = [h["material_id"] for h in t_hits]
    t_id = st.selectbox("Template material", t_ids, index=t_ids.index(ref_id) if ref_id in t_ids else 0,
                        format_func=lambda i: next(f"{h['formula']} · {i}" for h in t_hits if h["material_id"] == i),
                        key="tpl_id")
    tpl = db.get(t_id)
    tpl_rows = viz.site_table(to_structure(tpl.atoms))
    strength = st.slider("Strength s (t_start = s·T; 1 = from pure noise)", 0.05, 1.0, 0.5, 0.05, key="strength")
    opts = list(range(len(tpl_rows)))
    fmt = lambda i: f"{i}: {tpl_rows[i]['element']}"
    cond = st.multiselect("Template atoms conditioned on the target", opts, default=[site] if site in opts else [0],
                          format_func=fmt, key="tpl_cond")
    pin = st.multiselect("Pin (keep species and position of) these atoms", [i for i in opts if i not in cond],
                         format_func=fmt, key="tpl_pin")
    req_kw.update(n_atoms=len(tpl_rows), cond_sites=cond, targets=[target.tolist()] * len(cond), template_id=t_id,
                  template={"numbers": tpl.atoms.numbers.tolist(), "frac": tpl.atoms.get_scaled_positions().tolist(),
                            "lattice": tpl.atoms.cell.array.tolist()}, strength=float(strength), pinned=pin)

# ---- 4. settings ------------------------------------------------------------------------------
st.header("4 · Settings")
s1, s2, s3, s4, s5 = st.columns(5)
req_kw["n_candidates"] = int(s1.number_input("Candidates", 1, 100, 8, key="n_cand"))
req_kw["guidance"] = float(s2.number_input("Guidance w", 0.0, 10.0, 1.0, 0.5, key="w"))
req_kw["steps"] = int(s3.select_slider("Steps", [50, 100, 250, 500, 1000], value=studio.DEFAULT_STEPS,
                                          key="steps"))
req_kw["seed"] = int(s4.number_input("Seed", 0, 2**31 - 1, 0, key="seed"))
import torch  # noqa: E402  (only to list devices)
devs = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
req_kw["device"] = s5.selectbox("Device", devs, key="device", help="auto = GPU when one is present")
if mode != "unconditional":
    req_kw["particles"] = int(st.number_input(
        "DOS steering: particles per candidate (1 = off)", 1, 16, studio.DEFAULT_PARTICLES if R["guide"] else 1,
        key="particles",
        disabled=R["guide"] is None,
        help="Each candidate is drawn as this many trajectories; a noise-aware DOS guide resamples them on the way "
             "and keeps the one closest to the target. Closer DOS matches, at this many times the sampling time."))
req_kw["stability"] = st.checkbox("Stability: relax each candidate with CHGNet and place it on an ML convex hull "
                                   "(a few seconds per candidate; an ML hull, not the Materials Project hull)",
                                   value=False, key="stability")
req_kw["title"] = f"{mode} · target {rows[site]['element']} site {site} of {ref.formula}"

# ---- 5. generate ------------------------------------------------------------------------------
st.header("5 · Generate")
if model is None:
    st.error("No generator checkpoint is available, so nothing can be generated. Train one with `dosmatgen train`.")
else:
    if st.button("Generate", type="primary", key="generate"):
        try:
            job = R["jobs"].submit(Request(**req_kw), model, predictor, R["store"], studio.DB_URL, hull=R["hull"],
                                   guide=R["guide"])
            st.session_state["job"] = job.id
        except (ValueError, StructureError) as exc:
            st.error(f"Cannot generate: {exc}")


@st.fragment(run_every=1.0)
def job_panel():
    jid = st.session_state.get("job")
    job = R["jobs"].get(jid) if jid else None
    if job is None:
        return
    if job.active:
        st.progress(min(job.progress, 1.0), text=f"{job.message or 'starting'} · about {job.eta:.0f} s left")
        if st.button("Cancel", key=f"cancel_{job.id}"):
            R["jobs"].cancel(job.id)
    elif job.status == "done":
        if st.query_params.get("run") != job.run_id:
            st.query_params["run"] = job.run_id
            st.session_state.pop("job", None)
            st.rerun()
    elif job.status == "cancelled":
        st.warning("Generation cancelled; nothing was stored.")
    elif job.status == "failed":
        st.error(f"Generation failed: {job.error}. Your settings are unchanged; adjust them and try again.")


job_panel()

# ---- 6. results -------------------------------------------------------------------------------
run_id = st.query_params.get("run")
if run_id:
    from studio.results import show_run
    try:
        show_run(R["store"].get(run_id))
    except KeyError:
        st.info(f"Run {run_id} is no longer stored.")
