"""Verify: queue a GPAW DFT check of a candidate and overlay its site DOS on the target."""
import streamlit as st

from studio import shared as studio
from studio import figures as viz
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.scoring.verify import Verifier

st.set_page_config(page_title="Verify · DOSMatGen Studio", layout="wide")
st.title("Verify a candidate with DFT (GPAW)")
st.caption("The labelling recipe (PBE, LCAO dzp, Löwdin site projection) on the candidate as generated or, "
           "if asked, after a CHGNet relaxation. Small cells take about a minute; larger ones much longer.")


@st.cache_resource
def verifier():
    return Verifier(RunStore(studio.RUNS_PATH))


v = verifier()
runs = v.store.list()
if not runs:
    st.info("No runs yet. Generate some on the main page.")
    st.stop()
rid = st.selectbox("Run", [r["id"] for r in runs], format_func=lambda i: next(f"{i} · {r['title']}" for r in runs if r["id"] == i))
run = v.store.get(rid)
ranks = [c["rank"] for c in run["candidates"]]
rank = st.selectbox("Candidate (rank)", ranks, format_func=lambda k: next(f"#{k} · {c['formula']}" for c in run["candidates"] if c["rank"] == k))
cur = v.status(rid, rank)
relaxed = st.checkbox("Relax with CHGNet first (positions and cell)", value=False, key="relaxed")
if st.button("Queue DFT verification", disabled=bool(cur and cur["status"] in ("queued", "running"))):
    v.submit(rid, rank, relaxed=relaxed)
    st.rerun()


@st.fragment(run_every=2.0)
def status_panel():
    s = v.status(rid, rank)
    if s is None:
        st.info("Not verified yet.")
        return
    if s["status"] in ("queued", "running"):
        st.info(f"{s['status']} … (started {s['started']:.0f})")
    elif s["status"] == "failed":
        st.error(f"Verification failed: {s['error']}")
    else:
        res = s["result"]
        cand = next(c for c in run["candidates"] if c["rank"] == rank)
        st.success(f"Done in {res['seconds']} s; E_F = {res['e_fermi_eV']:.3f} eV (absolute).")
        for site, row in cand["site_to_target"].items():
            curves = [{"y": run["settings"]["targets"][int(row)], "name": "target", "style": "target"},
                      {"y": res["site_dos"][int(site)], "name": f"DFT site {site}"}]
            if cand.get("predicted_dos"):
                curves.append({"y": cand["predicted_dos"][int(site)], "name": "predicted", "style": "baseline"})
            st.plotly_chart(viz.dos_figure(curves, title=f"site {site}"), width="stretch", key=f"ver_{site}")
            st.json(res["dos_match"].get(str(site)) or res["dos_match"].get(site))


status_panel()
st.subheader("All verifications")
st.dataframe(v.all(), hide_index=True, width="stretch")
