"""A reference structure without a label, calculated with GPAW from the page: its sites' predicted
curves become DFT ones (scoring.reference_dft does the work, in the background)."""
from __future__ import annotations

import dataclasses
import sqlite3
import time

import numpy as np
import streamlit as st

from dosmatgen_core.labels.labeller import RECIPE_WORDS
from dosmatgen_core.scoring.reference_dft import label_id, why_not
from studio import shared as studio
from studio import state
from studio.catalogue import Material

TICK_S = 2.0


def calculated(mat: Material) -> Material:
    """mat with its sites' DFT curves (source 'gpaw') when this very cell was calculated here
    before (asked from the page, or checked as a candidate), else mat unchanged."""
    if mat.source != "predicted":
        return mat
    try:
        s = state.reference_checks().status(mat.structure)
    except sqlite3.OperationalError:       # the store busy (locked) this moment: predicted until the next rerun
        return mat
    if not s or s["status"] != "done":
        return mat
    line = s["line"]
    return dataclasses.replace(mat, site_dos=np.asarray(line["site_dos"], float), source="gpaw",
                               dft_seconds=float(line.get("seconds") or 0.0))


def calculated_keys(cells: dict[str, object]) -> set[str]:
    """The keys of the listed cells (material key → Structure) calculated here before; none when
    the store is busy this moment."""
    try:
        return state.reference_checks().calculated(cells)
    except sqlite3.OperationalError:
        return set()


def offered(mat: Material) -> bool:
    """Whether the page offers GPAW for this material's cell (a predicted one GPAW can calculate here)."""
    return mat.source == "predicted" and why_not(mat.structure) is None


def _estimate() -> str:
    load, cpus = state.cpu_load()
    busy = studio.slowdown(1, load, cpus)
    quiet = studio.dft_seconds_prior(relaxed=False)
    return (f"about {studio.duration(quiet * busy)} here"
            + (f" ({studio.duration(quiet)} on a quiet CPU, ×{busy:.1f} for the {studio.load_words(load, cpus)})"
               if busy >= 1.05 else ""))


def offer(mat: Material) -> None:
    """Under a target read off the predictor: a button that calculates the cell with GPAW, then its
    progress; the page reruns with the DFT curves when it lands. Under one calculated here: what
    it was."""
    if mat.source == "gpaw":
        st.success(f"These curves are DFT, calculated here on this very cell with the labelling recipe "
                   f"({RECIPE_WORDS}), its sites numbered as in the table above, in "
                   f"{studio.duration(mat.dft_seconds or 1)} of GPAW. "
                   "The result is kept as a label for the next retrain, and the same cell again is answered at once.")
        return
    if mat.source != "predicted":
        return
    if (why := why_not(mat.structure)) is not None:
        st.caption(f"No DFT of this cell from the app: {why}.")
        return
    checks = state.reference_checks()
    s = checks.status(mat.structure)
    if s and s["status"] in ("queued", "running"):
        _progress(mat)
        return
    if s and s["status"] == "failed":
        st.error(f"GPAW could not calculate this cell: {s['error']}")
    if st.button("Calculate this cell with GPAW", key=f"gpaw_{mat.key}", icon=":material/calculate:",
                 help=f"The labelling recipe ({RECIPE_WORDS}) on the cell as given, {_estimate()}, in the "
                      "background: its sites' curves then become DFT, and the result is kept as a label."):
        checks.submit(mat.structure, label_id(mat.key, mat.structure), mat.name)
        st.rerun()


def _progress(mat: Material) -> None:
    @st.fragment(run_every=TICK_S)
    def tick():
        s = state.reference_checks().status(mat.structure)
        if not s or s["status"] not in ("queued", "running"):
            st.rerun(scope="app")          # landed (or failed): the page redraws with it
        since = time.time() - (s["started"] or time.time())
        what = ("waiting for a free core (the candidates' checks use them too)" if s["status"] == "queued"
                else f"GPAW is calculating this cell, for {studio.duration(since)} so far")
        st.info(f"{what}; a cell like this takes {_estimate()}. You can pick the site and settings meanwhile: "
                "the target becomes DFT when it lands.", icon=":material/hourglass_top:")
    tick()
