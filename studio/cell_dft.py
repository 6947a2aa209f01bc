"""A reference structure without a label, calculated with GPAW from the page: its sites' predicted
curves become DFT ones (scoring.reference_dft does the work, in the background)."""
from __future__ import annotations

import dataclasses
import sqlite3
import time

import numpy as np
import streamlit as st

from dosmatgen_core.labels.labeller import RECIPE_WORDS
from dosmatgen_core.candidates.runs import to_cif
from dosmatgen_core.scoring.evaluate import RELAXED_VOLUME_TOL
from dosmatgen_core.labels.material_query import reduced
from dosmatgen_core.scoring.reference_dft import label_id, labelled_copy, why_not
from dosmatgen_core.structures import atoms_from_cif, to_structure
from studio import shared as studio
from studio import state
from studio.catalogue import Material
from studio.known import matching_site

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


@st.cache_data(max_entries=64, show_spinner=False)
def _copy_of(cif: str, candidates: tuple[str, ...]) -> tuple[str, float, bool] | None:
    """labelled_copy over the reference materials of the cell's formula, once per cell."""
    db = state.resources()["db"]
    cell = atoms_from_cif(cif)
    return labelled_copy(to_structure(cell), [(mid, to_structure(db.get(mid).atoms)) for mid in candidates])


def labelled_copy_of(mat: Material, rows: list[dict]) -> tuple[str, float, bool] | None:
    """The labelled reference material that a predicted cell is (id, volume ratio), else None."""
    if mat.source != "predicted" or state.resources()["db"] is None:
        return None
    formula = mat.structure.composition.reduced_formula
    same = tuple(r["material_id"] for r in rows if reduced(r["formula"]) == formula)     # lru-cached per formula
    return _copy_of(to_cif(mat.structure), same) if same else None


def labelled_site(mat: Material, site: int, mid: str) -> int:
    """The site of the labelled material mid that is mat's site (known.matching_site: by elements
    and positions, else by surroundings); 0 when it has none of that element. Walk 16's Cl target
    became the labelled NaCl's site 0, Na."""
    j = matching_site(mat.structure, site, to_structure(state.resources()["db"].get(mid).atoms))
    return 0 if j is None else j


def offer(mat: Material, copy: tuple[str, float, bool] | None = None, use=None, site: int = 0) -> None:
    """Under a target read off the predictor: a button that calculates the cell with GPAW, then its
    progress; the page reruns with the DFT curves when it lands. Under one calculated here: what
    it was. copy: the labelled material this cell is (labelled_copy_of), offered first with
    use(id, its site that plays the role of `site`) as its button's callback: its DFT labels are
    there at once, for the same atom."""
    if copy is not None and mat.source == "predicted":
        mid, ratio, same_shape = copy
        close = abs(ratio - 1.0) <= RELAXED_VOLUME_TOL and same_shape
        st.info(f"This cell is **{studio.plain(studio.material_name(mid, mat.formula))}** of the reference database: "
                + ("the same structure" if same_shape else "the same structure, its cell shaped a little differently")
                + f", its volume per atom {ratio - 1:+.0%} of the labelled cell's. "
                + ("Its sites have DFT labels already, the DFT of this very compound."
                   if close else
                   "Its sites have DFT labels, but in another cell the DOS shifts (0.18 states/eV apart on "
                   "average beyond 5 % of volume): GPAW on this cell gives its own."), icon=":material/database:")
        if use is not None:
            st.button(f"Use the labelled {mat.formula} ({mid}) instead", key=f"use_copy_{mat.key}",
                      on_click=lambda: use(mid, labelled_site(mat, site, mid)),
                      help=f"Its site that plays the role of site {site} ({mat.structure[site].specie.symbol}) "
                           "becomes the target.")
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
