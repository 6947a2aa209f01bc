"""Streamlit rendering of a stored run (shared by the Generate and Runs pages)."""
from __future__ import annotations

import numpy as np
import streamlit as st

from dosmatgen_core.candidates import runs as runsmod
from studio import figures as viz

COND_COLOUR, FIXED_COLOUR, PIN_COLOUR = "#ff3b30", "#007aff", "#34c759"


def _badge(ok: bool | None, yes: str, no: str, na: str = "n/a") -> str:
    if ok is None:
        return f":gray-background[{na}]"
    return f":green-background[{yes}]" if ok else f":red-background[{no}]"


def _stability_badge(c: dict) -> str:
    e = c.get("e_above_hull")
    if e is None:
        return f":gray-background[stability: {c.get('hull_note') or 'not computed'}]"
    text = f"E_hull {e * 1000:.0f} meV/atom (CHGNet)"
    return f":green-background[{text}]" if e <= 0.1 else f":orange-background[{text}]"


def steering_text(settings: dict) -> str:
    """'DOS steering K = 4 · ' for a steered run, '' for a plain one (runs stored before steering have no key)."""
    k = int(settings.get("particles") or 1)
    return f"DOS steering K = {k} · " if k > 1 else ""


def show_run(run: dict, max_cards: int = 20) -> None:
    s = run["summary"]
    st.header("6 · Results")
    st.caption(f"Run `{run['id']}` · {run['title']} · seed {run['settings']['seed']} · device "
               f"{run['settings']['device']} · {run['settings']['steps']} steps · w = {run['settings']['guidance']} · "
               f"{steering_text(run['settings'])}checkpoint {str(run['settings'].get('checkpoint_sha256'))[:10]}")
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Candidates", s["n"])
    m2.metric("Structurally valid", f"{s['structurally_valid']}/{s['n']}")
    if s.get("mean_dos_mae") is not None:
        m3.metric("Mean DOS MAE (predicted)", f"{s['mean_dos_mae']:.3f}")
    if s.get("baseline_mean_dos_mae") is not None:
        m4.metric("Unconditional baseline MAE", f"{s['baseline_mean_dos_mae']:.3f}")
    st.caption("DOS of generated atoms comes from the site-DOS predictor, not DFT; queue a GPAW check on the "
               "Verify page. Stability is CHGNet energy above a CHGNet hull of known structures (MP tables, "
               "reference database, elemental references): an ML hull, not the Materials Project hull.")
    targets = run["settings"]["targets"]
    base = run.get("baseline", [])
    for c in run["candidates"][:max_cards]:
        struct = runsmod.structure_of(c)
        with st.container(border=True):
            sg = c.get("spacegroup", {})
            st.markdown(f"**#{c['rank']} · {c['formula']}** · {sg.get('0.1', '?')} (0.1 Å) · "
                        f"{sg.get('0.01', '?')} (0.01 Å) · {c['n_atoms']} atoms")
            st.markdown(" ".join([
                _badge(c["structurally_valid"], "geometry valid", "geometry invalid"),
                _badge(c["charge_neutral"], "charge balanced", "not charge balanced"),
                _badge(c.get("unique"), "unique in run", "duplicate in run"),
                _badge(c.get("novel"), "novel", f"known ({c.get('matches')})"),
                _stability_badge(c),
            ]))
            if c.get("reasons"):
                st.caption("; ".join(c["reasons"]))
            left, right = st.columns([3, 2])
            with left:
                curves = []
                for site, row in sorted(c["site_to_target"].items(), key=lambda kv: int(kv[0])):
                    curves.append({"y": targets[int(row)], "name": f"target (site {site})", "style": "target"})
                    if c.get("predicted_dos") is not None:
                        el = struct[int(site)].specie.symbol
                        curves.append({"y": c["predicted_dos"][int(site)], "name": f"generated {el} site {site}"})
                    b = base[c["index"]] if c["index"] < len(base) else None
                    if b is not None and b.get("predicted_dos") is not None and int(site) < len(b["predicted_dos"]):
                        curves.append({"y": b["predicted_dos"][int(site)], "name": "unconditional", "style": "baseline"})
                if curves:
                    st.plotly_chart(viz.dos_figure(curves, height=280), width="stretch",
                                    key=f"dos_{run['id']}_{c['index']}")
                m = c.get("dos_match") or {}
                if m:
                    st.dataframe([{"site": k, **{kk: round(v, 3) for kk, v in mm.items()}} for k, mm in m.items()],
                                 hide_index=True, width="stretch")
            with right:
                hl = {int(k): COND_COLOUR for k in c["site_to_target"]}
                hl.update({int(k): FIXED_COLOUR for k in c.get("fixed_sites", {})})
                hl.update({int(k): PIN_COLOUR for k in c.get("pinned_sites", [])})
                st.iframe(viz.structure_html(struct, hl, height=280, element_id=f"v{c['index']}", script_src=viz.STATIC_SRC), height=290)
                st.caption("red: conditioned · blue: fixed type · green: pinned")
            d1, d2, d3, d4, d5, d6 = st.columns(6)
            stem = f"{run['id']}_{c['rank']}_{c['formula']}"
            d1.download_button("CIF (sym)", runsmod.to_cif(struct, symmetrised=True), f"{stem}_sym.cif", key=f"c1{stem}")
            d2.download_button("CIF (P1)", c["cif"], f"{stem}_P1.cif", key=f"c2{stem}")
            d3.download_button("POSCAR", runsmod.to_poscar(struct), f"{stem}.vasp", key=f"c3{stem}")
            d4.download_button("extxyz", runsmod.to_extxyz(struct), f"{stem}.extxyz", key=f"c4{stem}")
            d5.download_button("DOS CSV", runsmod.dos_csv(c, targets), f"{stem}_dos.csv", key=f"c5{stem}")
            d6.download_button("Run JSON", runsmod.run_json(run), f"{run['id']}.json", key=f"c6{stem}")
