"""Generate: pick a target DOS, choose how candidates are built, see the cost, generate, and watch
the top candidates checked by DFT. Widgets only; the science lives in dosmatgen_core."""
from __future__ import annotations

import pandas as pd
import streamlit as st
from pymatgen.core import Composition

from dosmatgen_core import checks
from dosmatgen_core.candidates import rounds
from dosmatgen_core.candidates.pipeline import Request
from dosmatgen_core.candidates.seeding import known_hits, seed_arguments
from dosmatgen_core.scoring.search import site_index
from dosmatgen_core.structures import StructureError, atoms_from_cif, to_structure
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.verify import default_workers
from dosmatgen_core.labels.labeller import RECIPE_WORDS
from dosmatgen_core.paths import missing_mp_tables
from studio import catalogue, cell_dft, state
from studio.charts import dos_chart
from studio.estimate import estimate
from studio.form import FieldMessages
from studio import figures as viz
from studio import shared as studio
from studio import run_view
from studio import nav

nav.inside_app()     # a page opened by its own URL on a fresh server runs through the app

R = state.resources()
state.warm_start()        # a fresh install parses the MP tables while the user picks a target
CANDIDATE = "__candidate__"      # the template key of a candidate taken by its card's "Grow from this candidate"
db, model, predictor = R["db"], R["model"], R["predictor"]
store = state.store()

with st.sidebar:
    st.caption(f"Device: **{studio.device_label()}**")
    for e in R["errors"]:
        st.error(e)
    st.caption("Model statistics and benchmarks: the Model page.")
    st.caption("Structures: Materials Project (CC BY 4.0). Method: DOSMatGen, arXiv:2504.06249. "
               f"DFT: {RECIPE_WORDS}.")

st.title("Generate structures for a target DOS")
# the Generate button sits far down a long form: a newcomer with the example's target set can go straight there
INTRO = ("Pick the target (1), how candidates are built (2) and the settings (3), then {go}. Every step starts "
         "from a working default (the target: the paper's Ni in Au₃Ni), so you can go straight there.")
# the link is drawn once the page reaches the button: a form stopped above it (a refused file, no
# target yet) has no section 4, and the link pointed at nothing
intro = st.empty()
intro.markdown(INTRO.format(go="**Generate** (4)"))
if db is None:
    st.error("The reference database is missing; build it with `./run.sh dosmatgen build-db`.")
    st.stop()
rows_all = state.reference_rows(studio.DB_URL)
labelled_ids = frozenset(r["material_id"] for r in rows_all)
name_of = {r["material_id"]: r["name"] for r in rows_all}
formula_of = {r["material_id"]: r["formula"] for r in rows_all}


def use_material(key: str, query: str) -> None:
    """Buttons that point the search at one material (the preset, a closest chemistry)."""
    st.session_state["ref_query"] = query
    st.session_state["ref_select"] = key


def use_labelled(key: str, site: int) -> None:
    """An uploaded or unlabelled cell that is a labelled material: that material, by its formula,
    at its site that plays the role of the one picked."""
    state.forget_upload("ref_upload", True)
    use_material(key, Composition(formula_of[key]).reduced_formula)
    st.session_state[f"site_{key}"] = site


def use_preset() -> None:
    use_material(studio.PRESET_ID, "Au3Ni")
    st.session_state["target_src"] = "A site of a material"
    st.session_state["preset_pending"] = True


# ---- 1. target --------------------------------------------------------------------------------
def earlier_note(name: str, key: str) -> None:
    """An upload kept from before a visit to another page (the uploader shows none): said, with a
    way to drop it."""
    with st.container(horizontal=True, vertical_alignment="center"):
        st.info(f"Using {studio.plain(name)}, uploaded earlier in this session (the box above is empty after a "
                "visit to another page). Upload another file to replace it.", width="stretch")
        st.button("Forget it", key=f"forget_{key}", on_click=state.forget_upload, args=(key, True))


st.header("1 · Target DOS")
src = st.radio("Where does the target DOS come from?", ["A site of a material", "A DOS file (CSV)"],
               horizontal=True, key="target_src", persist_state="session",
               help="A site's DOS from the reference database (DFT), from a structure you upload "
                    "(predicted), or from a VASP run you upload (vasprun.xml: its own DOS); or a curve you upload "
                    "as a CSV file.")
mat: catalogue.Material | None = None
site = 0
window = None          # where the target is known: a file that covers part of −10…10 eV (dos.file_window)
if src == "A site of a material":
    state.hide_upload("dos_csv")
    if "ref_query" not in st.session_state:
        # a reload, or a shared link, names its material and site; a first visit gets the example
        if linked := state.linked_target(labelled_ids):
            st.session_state["ref_query"] = Composition(formula_of[linked[0]]).reduced_formula
            st.session_state["ref_select"] = linked[0]
            st.session_state[f"site_{linked[0]}"] = linked[1]
        else:
            st.session_state["ref_query"] = "Au3Ni"
            st.session_state["ref_select"] = studio.PRESET_ID
    query = st.text_input("Find a material", key="ref_query", persist_state="session",
                          help="A formula (NaCl, GaAs), a Materials Project id (mp-22862), elements (Au-Ni) or a structure "
                               "type (perovskite, rutile, Heusler). "
                               f"Searches all {len(rows_all)} labelled materials and, when none fits, the "
                               "Materials Project structures that ship with the project.")
    # on a line of its own: beside the search its label was cut at 800 px
    st.button("Example: Ni in Au₃Ni (paper)", key="preset", on_click=use_preset,
              help="The paper's showcase: the Ni site of L1₂ Au₃Ni as the target.")
    upload = state.kept_upload("ref_upload", lambda wkey: st.file_uploader(
        "…or upload a structure (CIF or POSCAR: its sites get predicted DOS curves) or a VASP "
        "run (vasprun.xml with LORBIT ≥ 10: its atoms' own DOS)", type=None,      # POSCAR and CONTCAR have no extension
        key=wkey))
    if upload is not None:
        up_name, up_bytes, earlier = upload
        if earlier:
            earlier_note(up_name, "ref_upload")
        try:
            mat = cell_dft.calculated(catalogue.from_upload(up_name, up_bytes, predictor))
        except (ValueError, StructureError) as exc:
            # the page stops here: below, the searched material (Au3Ni) would stand in for the refused file
            state.forget_upload("ref_upload")          # a refused file is not brought back after another page
            run_view.stop_form(f"Could not use {studio.plain(up_name)}: {str(exc).rstrip('.')}. Upload another file, or remove this one (×) "
                      "to pick a material from the database.")
        else:
            # PAW spheres leave the interstitial out; the labels' Löwdin projection shares every state
            whose = ("VASP's projected DOS of each atom (E − E_F, spins summed, VASP's own broadening kept), "
                     "regridded onto −10…10 eV. VASP projects onto spheres around the atoms, so its curves hold "
                     "fewer states than the Löwdin-projected labels here: rank known sites by shape (cosine), or "
                     "scale the height under “Adjust the target”" if mat.source == "vasp" else
                     "DFT, calculated here with GPAW on this very cell" if mat.source == "gpaw" else
                     "predicted by the site-DOS predictor, not DFT")
            st.success(f"Using {studio.plain(up_name)}: {mat.formula}, {len(mat.structure)} atoms. Its DOS curves "
                       f"are {whose}. Remove the file to search the database again.")
            if mat.energy is not None and (note := studio.grid_note(mat.energy)):
                st.warning(note)
                window = studio.file_window(mat.energy)
    if mat is None:
        try:
            found = catalogue.search(query, rows_all)
        except ValueError as exc:
            run_view.stop_form(str(exc))
        q = found["query"]
        if not found["labelled"] and ("formula" in q or "id" in q):
            found = catalogue.search(query, rows_all, state.mp_structures())
        if found["labelled"] and (lone := catalogue.lone_element(q, found["labelled"])):
            found = {**found, "mp": state.elemental_structures(lone)}
            st.caption(catalogue.lone_element_text(lone, len(found["mp"])))
        options = {r["material_id"]: catalogue.option_text(r) for r in found["labelled"]}
        mp_by_key = {f"mp:{mid}": s for mid, s in found["mp"]}
        mp_names = {k: f"{studio.formula(s.composition.reduced_formula)} · {k[3:]} · {len(s)} atoms"
                    for k, s in mp_by_key.items()}
        # one calculated here with GPAW says so (walk 15 read "predicted DOS" beside VO's DFT)
        done = cell_dft.calculated_keys(mp_by_key)
        options.update({k: f"{name} · " + ("no label: DFT calculated here" if k in done else "no label: predicted DOS")
                        for k, name in mp_names.items()})
        if not found["labelled"]:
            asked = q.get("formula") or q.get("id") or query
            st.warning(f"**{asked}** has no DFT label in the reference database ({len(rows_all)} materials)."
                       + (" Its Materials Project structures are listed below without one: their sites get the "
                          "site-DOS predictor's DOS, or DFT once calculated here with GPAW (the button under the "
                          "structure)." if mp_by_key else
                          " It is not among the Materials Project structures that ship with the project either."
                          if not (missing := missing_mp_tables()) else
                          " The Materials Project tables are not installed here "
                          f"({', '.join(missing)}), so structures without a label cannot be offered."))
            near = catalogue.closest_chemistries(q.get("elements") or [], rows_all) if q.get("elements") else []
            if near:
                st.markdown("Next step: use a **labelled material of a close chemistry**, upload a structure "
                            "above, or switch to **A DOS file (CSV)**.")
                # each button as wide as its name, wrapping to a new line: in equal columns the names were
                # cut ("AlAs · mp-…", walk 17)
                with st.container(horizontal=True):
                    for r in near:
                        st.button(r["name"], key=f"near_{r['material_id']}", on_click=use_material, width="content",
                                  args=(r["material_id"], r["reduced"]),
                                  help=f"{studio.spacegroup_name(r['spacegroup'])}, {r['natoms']} atoms, DFT label")
            else:
                st.markdown("Next step: upload a structure above, or switch to **A DOS file (CSV)**.")
        if not options:
            run_view.stop_form()
        keys = list(options)
        if st.session_state.get("ref_select") not in keys:
            st.session_state["ref_select"] = keys[0]
        ref_key = st.selectbox("Material", keys, format_func=options.get, key="ref_select", persist_state="session",
                               help="Labelled materials carry DFT site DOS curves; others get predicted ones.")
        if ref_key in mp_by_key:
            try:
                mat = cell_dft.calculated(catalogue.predicted(ref_key, mp_names[ref_key], mp_by_key[ref_key],
                                                              predictor))
            except ValueError as exc:
                run_view.stop_form(str(exc))
        else:
            mat = catalogue.from_db(db.get(ref_key))
    s = mat.structure
    rows = viz.site_table(s)
    site_key = f"site_{mat.key}"
    if st.session_state.pop("preset_pending", False) or (mat.key == studio.PRESET_ID and site_key not in st.session_state):
        st.session_state[site_key] = [x.specie.symbol for x in s].index("Ni") if mat.key == studio.PRESET_ID else 0
    left, right = st.columns([2, 1])       # the table wider: at 1024 px its x, y and z were cut (walk 17)
    with left:
        coord = {k: st.column_config.NumberColumn(k, width=56, format="%.4f") for k in "xyz"}
        sel = st.dataframe(pd.DataFrame(rows), hide_index=True, on_select="rerun", selection_mode="single-row",
                           key=f"sites_{mat.key}", width="stretch",
                           column_config={"site": st.column_config.NumberColumn("site", width=36),
                                          "element": st.column_config.TextColumn("element", width=58),
                                          "wyckoff": st.column_config.TextColumn("Wyckoff", width=62), **coord})
        picked = sel.selection.rows[0] if sel and sel.selection.rows else None
        # a row clicked in the table moves the one site picker; the picker stays free to change
        if picked is not None and st.session_state.get(f"picked_{mat.key}") != picked:
            st.session_state[f"picked_{mat.key}"] = picked
            st.session_state[site_key] = picked
        if site_key not in st.session_state or st.session_state[site_key] >= len(rows):
            st.session_state[site_key] = 0
        site = st.selectbox("Site whose DOS is the target", range(len(rows)), key=site_key, persist_state="session",
                            format_func=lambda i: f"{i}: {rows[i]['element']} (Wyckoff {rows[i]['wyckoff']})",
                            help="Click a row of the table or choose here; the atom is ringed red in the picture.")
    with right:
        st.iframe(viz.structure_html(s, {site: viz.SITE_COLOURS["picked"]}, element_id="refview",
                                     script_src=viz.STATIC_SRC), height=330)
        st.caption(f"{studio.plain(mat.name)}: 2×2×2 cells, atoms wrapped into the cell; red halo: site {site}")
    if mat.source == "predicted":
        st.info(studio.predicted_target_text(predictor.card.get("heldout", {}), s[site].specie.symbol,
                                             gpaw_here=cell_dft.offered(mat)))
    cell_dft.offer(mat, cell_dft.labelled_copy_of(mat, rows_all), use=use_labelled, site=site)
    state.link_target(mat.key if mat.key in labelled_ids else None, site)
    base = mat.site_dos[site]
    base_name = mat.curve_name(site)
    table = None                        # a curve on the grid already: the knobs below act on it
    target_id = f"{mat.key}:{site}"
else:
    state.hide_upload("ref_upload")
    state.link_target(None, None)
    up = state.kept_upload("dos_csv", lambda wkey: st.file_uploader(
        "CSV with two columns: E − E_F (eV), DOS (states/eV); or three headed E, up, down (summed)",
        type=None, key=wkey))     # the reader goes by the content: a CIF here is named as one, not refused unsaid
    if up is None:
        st.info("Upload a DOS file to go on. Any energy grid works: it is regridded onto −10…10 eV, 400 points. "
                "A VASP vasprun.xml goes in “A site of a material” (its upload), where you pick the atom.")
        run_view.stop_form()
    up_name, up_bytes, earlier = up
    if earlier:
        earlier_note(up_name, "dos_csv")
    # a table of several named curves (the app's own DOS CSV: target, predicted, DFT) offers its columns
    columns = studio.curve_columns(up_bytes)
    column_key = f"dos_column_{up_name}"

    def pick_column():
        return st.selectbox("Column to use as the target", columns, index=None, placeholder="choose one of its curves",
                            key=column_key, persist_state="session", help="The file holds several curves side by side; the target is one of them.")
    column = st.session_state.get(column_key) if columns else None
    said_box = st.container()       # the read's error or success right under the uploader, the field below it
    # a DOSCAR's energies are absolute: subtracted before the curve is cut to the grid (walk 17's file
    # ran 5 eV high, and the ±3 eV shift below could not bring it back)
    e_fermi = st.number_input("Fermi energy in the file (eV)", -100.0, 100.0, 0.0, 0.1, format="%.3f",
                              key=f"efermi_{up_name}", persist_state="session",
                              help="Leave 0 when the file's energies are E − E_F already. Where they are absolute "
                                   "(VASP's DOSCAR, most codes' raw output), give its Fermi energy: it is subtracted "
                                   "before the curve is cut to −10…10 eV.")
    try:
        said: list[str] = []
        energy, values = studio.read_dos_table(up_bytes, said, column=column, e_fermi=e_fermi)
        base = studio.table_to_grid(energy, values)
    except ValueError as exc:
        # one message right under the uploader; a table of several curves is kept, its columns offered
        # below it (a question, not an error: walk 18), and so is one whose energies miss the grid: the
        # Fermi energy below can mend it
        if columns and column is None:
            said_box.info(f"{studio.plain(up_name)} holds {len(columns)} curves side by side "
                          f"({studio.plain(', '.join(columns))}): choose the one to use as the target below.")
        else:
            said_box.error(f"Could not use {studio.plain(up_name)}: {exc}")
        if columns:
            pick_column()
        elif not isinstance(exc, studio.EnergyRangeError):
            state.forget_upload("dos_csv")
        run_view.stop_form()
    if columns:
        pick_column()
    base_name = studio.file_curve_name(up_name, column, e_fermi)
    table = (energy, values)
    target_id = f"file:{up_name}:{column}:{e_fermi:g}"
    said_box.success(f"Read {studio.plain(up_name)}; regridded onto −10…10 eV, 400 points.")
    for note in said:
        st.info(note)
    if note := studio.grid_note(energy, e_fermi):
        st.warning(note)
    window = studio.file_window(energy)
    if note := studio.negative_note(values):
        st.info(note)

# the knobs belong to one target: another file or site starts from the curve as given (walk 17's
# shift for one file applied to the next without a word)
if st.session_state.get("adjusted_target") != target_id:
    st.session_state.update(shift=0.0, scale=1.0, smear=0.0, adjusted_target=target_id)
    for k in [k for k in st.session_state if str(k).startswith("window_")]:     # the energies compared too
        del st.session_state[k]
with st.expander("Adjust the target (shift, scale, smear, energies compared)", expanded=False):
    k1, k2, k3 = st.columns(3)
    shift = k1.slider("Shift along energy (eV)", *studio.SHIFT_RANGE_EV, 0.0, 0.05, key="shift", persist_state="session",
                      help="Move the whole curve; positive moves states up in energy.")
    scale = k2.slider("Scale the height", *studio.SCALE_RANGE, 1.0, 0.05, key="scale", persist_state="session", help="Multiply the DOS by this.")
    smear = k3.slider("Extra smearing (eV)", *studio.SMEAR_RANGE_EV, 0.0, 0.05, key="smear", persist_state="session", help="Blur sharp peaks by this width.")
    # what the CLI's --window does: within what the file covers (its window), the whole grid otherwise
    cover = tuple(window) if window else (studio.EMIN, studio.EMAX)
    picked = st.slider("Compare on E − E_F (eV)", float(cover[0]), float(cover[1]), (float(cover[0]), float(cover[1])),
                       0.05, key=f"window_{cover[0]:g}_{cover[1]:g}", persist_state="session",
                       help="Match the target only on these energies (the occupied states: up to 0 eV). Search, "
                            "scoring and the DFT checks compare there; outside, the generator is given the closest "
                            "known site's curve.")
    if picked != cover:
        if picked[1] - picked[0] < studio.MIN_SPAN_EV:
            st.warning(f"Compare on at least {studio.MIN_SPAN_EV:g} eV: the whole of "
                       f"{studio.window_text(cover) or '−10…10 eV'} is compared instead.")
        else:
            window = (round(picked[0], 4), round(picked[1], 4))
shaped = (shift, scale, smear) != studio.AT_REST
base_window = window
try:
    # a file is moved before it is cut to the grid: what it holds beyond ±10 eV comes in, no zeros
    target, window = studio.adjusted_target(base, shift, scale, smear, window, table)
except ValueError as exc:
    st.error(f"{str(exc)[:1].upper()}{str(exc)[1:]}.")
    run_view.stop_form()
target_desc = studio.adjusted_name(base_name, shift, scale, smear)
curves = [{"y": target, "name": f"target: {target_desc}", "style": "target", "window": window}]
if shaped:
    curves.append({"y": base, "name": f"{base_name} (before adjusting)", "style": "source", "window": base_window})
dos_chart(curves, key="targetdos", filename="target_dos", title="Target DOS")

# ---- known sites ------------------------------------------------------------------------------
st.subheader("Known sites with this DOS")
by = st.radio("Rank by", checks.SEED_ORDERS, horizontal=True, key="known_by", persist_state="session",
              index=checks.SEED_ORDERS.index(studio.SHIPPED.seed_by),
              format_func={"mae": "closeness (MAE)", "cosine": "shape (cosine)"}.get,
              help="MAE: smallest average difference in states/eV. Cosine: most similar shape, whatever the height. "
                   "Seeded generation grows from the table's best matches in this order.")
align = st.checkbox("Allow a ±1 eV shift", key="known_shift", persist_state="session", help="Compare curves also moved rigidly along energy.")
exclude = {mat.db_id} if mat is not None and mat.db_id and studio.SHIPPED.leave_out_reference else set()
# the reference's own copies (a candidate that relaxed into it, DFT-checked) are the reference too
# a changed order or shift redraws the table in seconds (11 s under load): say so above the old one
with st.spinner("Comparing the target with every labelled site…", show_time=True):
    hits = known_hits(site_index(studio.DB_URL), target, 6, [mat.structure] if exclude else [],
                      lambda mid: to_structure(db.get(mid).atoms), by=by, exclude=exclude, align_shift=align,
                      window=window)


def grow_from(src: dict) -> None:
    """A card's "Grow from this candidate": taken up below, where the form's target is known."""
    st.session_state["grow_pending"] = src


def set_up_round(src: dict, ref) -> None:
    """The next round from a candidate (seeding.grow_source) set up in the form: with one
    conditioned atom, the seeded mode grown from it alone (the model's draws and the swaps, as
    benchmarks.refine measured); with several, template mode on it, its conditioned atoms kept."""
    if len(src["sites"]) == 1:
        st.session_state.update(mode="seeded", seed_candidate=src, seed_candidate_ref=ref)
    else:
        st.session_state.update(mode="template", tpl_id=CANDIDATE, tpl_candidate=src, tpl_ref=ref,
                                tpl_cond=src["sites"], tpl_cond_for=CANDIDATE)


# a card's grow button, here, before the mode's widgets: a candidate of a run made for this very
# target sets up the form; one of another target's run (opened by its link, or the form changed
# since) grows towards its own run's target, as from the Runs page. The form's target would have
# grown a P site towards a Ni d band.
if pending := st.session_state.pop("grow_pending", None):
    try:
        if rounds.aims_at(store.get(pending["run"]), pending, target, window):
            set_up_round(pending, mat.key if mat is not None else None)
        else:
            st.session_state["rounds_note"] = state.start_round(pending, store)
    except (ValueError, StructureError, KeyError) as exc:
        st.error(f"Could not grow from {studio.plain(pending['name'])}: {exc}")


def grow_from_known_sites() -> None:
    st.session_state.pop("seed_candidate", None)


def use_as_template(material_id: str, hit_site: int) -> None:
    st.session_state["mode"] = "template"
    st.session_state["tpl_id"] = material_id
    st.session_state["tpl_ref"] = st.session_state.get("current_ref")
    st.session_state["tpl_cond"] = [hit_site]
    st.session_state["tpl_cond_for"] = material_id


# four columns, the button under the name: at 800 px six columns wrapped the numbers and cut the button
KNOWN_COLUMNS = [3, 1.2, 1.4, 2.2]
if window:
    st.caption(f"MAE and cosine on {studio.window_text(window)}, the energies compared (outside them the target's file has no data, or you left them out).")
head = st.columns(KNOWN_COLUMNS)
for col, text in zip(head, ["material · site", "MAE (states/eV)", "cosine" + (" (shift)" if align else ""), "structure"]):
    col.caption(text)
for h in hits:
    c = st.columns(KNOWN_COLUMNS, vertical_alignment="center")
    # by its formula even when the listing was cached before the database was rebuilt under the app
    c[0].markdown(f"**{name_of.get(h.material_id) or studio.material_name(h.material_id, h.formula)}** · "
                  f"site {h.site} ({h.element})")
    c[0].button("Use as template", key=f"tpl_{h.material_id}_{h.site}", on_click=use_as_template,
                args=(h.material_id, h.site), help="Template mode with this material, this site carrying the target")
    c[1].write(f"{h.mae:.3f}")
    # three decimals, as every other table: at two, 0.895 would read as the 0.9 bar
    c[2].write(f"{h.cosine:.3f}" + (f" ({h.shift_ev:+.1f} eV)" if h.shift_ev else ""))
    with c[3]:
        st.iframe(viz.structure_html(to_structure(db.get(h.material_id).atoms), {h.site: viz.SITE_COLOURS["picked"]},
                                     height=110, element_id=f"hit{h.material_id}", script_src=viz.STATIC_SRC), height=115)

# the lookup is the baseline to beat: what the truth bench says about beating one this close (its
# MAEs are over the whole grid: a window's are not comparable)
if hits and not window and (odds := studio.lookup_odds(min(h.mae for h in hits), state.truth_pairs())):
    st.caption(odds)

# ---- 2. mode ----------------------------------------------------------------------------------
st.header("2 · How candidates are built")
MODES = {"seeded": "Grow from the known sites closest to the target",
         "masked": "New structure with N atoms", "template": "Change a template structure",
         "fixed_type": "New structure, element of the target atoms fixed", "unconditional": "No target (baseline)"}
if "mode" not in st.session_state:       # a reload or a link names the mode (walk 18), else the default
    st.session_state["mode"] = state.linked("mode", list(MODES)) or studio.SHIPPED.mode
mode = st.radio("Mode", list(MODES), format_func=MODES.get, horizontal=True, key="mode", persist_state="session",
                help="Grow from known sites: the labelled structures whose site is closest to the target (the "
                     "table above) are reworked around that site, which carries the target, and (by default) "
                     "also have one element swapped for its same-group neighbour. New structure: the "
                     "model builds N atoms, the chosen ones carrying the target. Template: it reworks a structure "
                     "you choose around its conditioned atoms. Baseline: no target at all.")
state.link("mode", mode)
# each mode's purpose under the picker: the walk found only the first explained on the page
MODE_WORDS = {
    "seeded": "Known structures whose site already has a DOS close to the target are reworked into new ones; "
              "the best odds of a close match (the default).",
    "masked": "The model builds whole new cells of N atoms from noise; the atoms you choose carry the target, "
              "the others are free. Expect more variety and looser matches than from known structures.",
    "template": "A structure you choose (the reference, another known one, an upload, or a candidate) is partly "
                "noised and rebuilt: its chosen atoms carry the target, their element free to change as every "
                "unpinned atom's is; pinned atoms keep their element and fractional position (the cell is rebuilt).",
    "fixed_type": "As a new structure of N atoms, but the atoms carrying the target keep the element you name, so "
                  "the match has to come from their surroundings.",
    "unconditional": "Plain samples with no target: the baseline every other mode is measured against.",
}
st.caption(MODE_WORDS[mode])
# every mode records the reference, so that rounds never grow from it (rounds.next_round)
req_kw: dict = {"mode": mode, "seed_exclude": sorted(exclude), "reference_id": mat.db_id if exclude else None,
                "window": list(window) if window else None,
                "target_element": mat.structure[site].specie.symbol if table is None else ""}
notes = FieldMessages()      # each input's check message goes right under it
ref_key = mat.key if mat is not None else None
st.session_state["current_ref"] = ref_key
if mode == "seeded":
    if st.session_state.get("seed_candidate_ref", ref_key) != ref_key:
        grow_from_known_sites()         # a candidate grown from belongs to the target it was made for
    parent = st.session_state.get("seed_candidate")       # set by a card's "Grow from this candidate"
    if parent:
        p1, p2 = st.columns([3, 1], vertical_alignment="center")
        p1.info(f"Growing from **{studio.plain(parent['name'])}** alone: its site {parent['sites'][0]} carries the "
                f"target ({parent['source']} MAE {parent['mae']:.3f}, cosine {parent['cosine']:.3f}). The model's "
                "draws and the swaps all start from it: the next round around what "
                + ("DFT confirmed." if parent["source"] == "DFT" else "the predictor scored."))
        p2.button("Grow from the known sites instead", key="seed_known", on_click=grow_from_known_sites)
    g1, g2 = st.columns(2)
    g3 = st.container()     # the checkboxes under the two, full width: at 800 px a third column cut their labels
    n_seeds = 1 if parent else g1.number_input(
        "Known structures to grow from (1–10)", value=studio.SHIPPED.n_seeds, step=1, key="n_seeds", persist_state="session",
        help=f"The best matches of the table above, in its order (cells of at most "
             f"{studio.SHIPPED.max_dft_atoms} atoms, no ±1 eV shift), taken in turn.")
    notes.under("n_seeds", g1)
    strength = g2.slider("How far from the known structure (0 = keep it, 1 = anything)", 0.05, 1.0,
                         float(studio.SHIPPED.strength), 0.05, key="seed_strength", persist_state="session",
                         help="How much of each known structure is noised away before the model rebuilds it; "
                              "too little returns the known structure itself.")
    notes.under("strength", g2)
    fix_el = g3.checkbox("Keep the matching atom's element", key="seed_fix", persist_state="session",
                         help="The atom carrying the target keeps the element it has in the known structure.")
    subs = g3.checkbox("Also swap in same-group elements", value=studio.SHIPPED.substitutions, key="seed_subs", persist_state="session",
                       help="Besides the model's candidates, each known structure with one of its elements swapped "
                            "for its neighbour in the same group (Au → Ag, Al → Ga), the matching atom kept: "
                            "new compounds one chemical step from a known match, ranked with the others.")
    far = g3.checkbox("… only beyond the matching atom's neighbours", value=studio.SHIPPED.distant_swaps,
                      key="seed_far", persist_state="session", disabled=not subs or bool(parent),
                      help="Swap one atom outside the matching atom's first shell of neighbours (in a cell doubled "
                           "where needed) instead of every atom of an element: the matching atom keeps its "
                           "neighbours, so its DOS stays closer to the known match's. Grown from a candidate, "
                           "both kinds of swap are made, as the refinement rounds were measured.")
    req_kw.update(targets=[target.tolist()], cond_sites=[], n_seeds=int(n_seeds), seed_by=by, strength=float(strength),
                  fix_element=bool(fix_el), substitutions=bool(subs), distant_swaps=bool(far),
                  seed_exclude=sorted(exclude), db_url=studio.DB_URL,
                  grow_from=[seed_arguments(parent)] if parent else [])
    st.caption(("The known structures to grow from never include the reference material itself. " if exclude else
                "A DOS file names no material: the known structures to grow from can include the very one its curve "
                "came from (the table above, at MAE 0). " if mat is None else
                f"{studio.plain(mat.name)} has no DFT label, so no known structure is left out as the reference. "
                if mat.source == "predicted" else
                f"{studio.plain(mat.name)} is not in the reference database, so no known structure is left out as it. "
                if not mat.db_id else "The reference material itself may be a seed (the shipped setting keeps it). ") +
               "A candidate can still come back as a structure "
               "already known (one it grew from, a Materials Project entry or a candidate checked before): it is marked "
               "known, its stored DFT label is shown, and the DFT check goes to the next candidates instead.")
elif mode in studio.DE_NOVO_MODES:
    n_atoms = st.number_input(f"Atoms in each candidate (1–{checks.MAX_ATOMS})", value=studio.SHIPPED.n_atoms, step=1, key="n_atoms", persist_state="session",
                              help="How many atoms each generated unit cell holds.")
    notes.under("n_atoms")
    req_kw["n_atoms"] = int(n_atoms)
    if mode != "unconditional":
        cond = st.multiselect("Which new atoms carry the target DOS", list(range(min(max(int(n_atoms), 1), checks.MAX_ATOMS))), default=[0],
                              key="cond_new", persist_state="session", help="Each of these atoms is steered towards the target curve.")
        notes.under("cond_sites")
        req_kw.update(cond_sites=cond, targets=[target.tolist()] * len(cond))
    if mode == "fixed_type":
        # a site's own element; an uploaded curve's most likely one is its closest known site's. It
        # follows the target (another site, material or file) until the user types one of their own
        el0 = mat.structure[site].specie.symbol if mat is not None else hits[0].element if hits else ""
        if st.session_state.get("fixed_el") in (None, "", st.session_state.get("fixed_el_auto")):
            st.session_state["fixed_el"] = el0
        st.session_state["fixed_el_auto"] = el0
        el = st.text_input("Element of the target atoms", key="fixed_el", persist_state="session",
                           help="The atoms carrying the target are this element in every candidate; it follows "
                                "the target's site until you type another.")
        if mat is None and hits and el == hits[0].element:
            st.caption(f"Suggested by the closest known site: {studio.formula(hits[0].formula)} site "
                       f"{hits[0].site} ({hits[0].element}).")
        notes.under("fixed")
        req_kw["fixed"] = {int(i): el for i in req_kw.get("cond_sites", [])}
elif mode == "template":
    # the template follows the reference: whenever the reference changes, it is reset to it
    grown = st.session_state.get("tpl_candidate")      # set by a card's "Grow from this candidate"
    tpl_keys = (([CANDIDATE] if grown else []) + ([ref_key] if ref_key and ref_key not in labelled_ids else [])
                + [r["material_id"] for r in rows_all])
    if st.session_state.get("tpl_ref") != ref_key or st.session_state.get("tpl_id") not in tpl_keys + ["__upload__"]:
        st.session_state["tpl_ref"] = ref_key
        st.session_state["tpl_id"] = ref_key if ref_key else tpl_keys[0]
    tpl_names = dict(name_of, **({ref_key: mat.name} if ref_key else {}), **({CANDIDATE: grown["name"]} if grown else {}),
                     __upload__="Upload a structure file…")
    t_id = st.selectbox("Template structure", tpl_keys + ["__upload__"], key="tpl_id", persist_state="session",
                        format_func=lambda k: tpl_names.get(k, k) + (" (the reference)" if k == ref_key else ""),
                        help="Type to search all labelled materials. It starts as the reference and follows it.")
    tpl_struct = None
    if t_id == "__upload__":
        tu = st.file_uploader("Template structure (CIF or POSCAR)", type=None, key="tpl_upload")
        if tu is not None:
            try:
                tpl_struct = catalogue.from_upload(tu.name, tu.getvalue(), predictor).structure
            except (ValueError, StructureError) as exc:
                st.error(f"Could not use {studio.plain(tu.name)}: {exc}")
        if tpl_struct is None:
            if tu is None:      # a refused file has its one error line under the uploader already
                st.info("Upload a template structure to go on.")
            run_view.stop_form()
    elif t_id == CANDIDATE:
        tpl_struct = to_structure(atoms_from_cif(grown["cif"]))      # ASE keeps its site order
    elif t_id == ref_key and mat is not None:
        tpl_struct = mat.structure
    else:
        tpl_struct = to_structure(db.get(t_id).atoms)
    tpl_rows = viz.site_table(tpl_struct)
    opts = list(range(len(tpl_rows)))
    if st.session_state.get("tpl_cond_for") != t_id or any(i >= len(opts) for i in st.session_state.get("tpl_cond", [])):
        st.session_state["tpl_cond_for"] = t_id
        st.session_state["tpl_cond"] = [site if (t_id == ref_key and site in opts) else 0]
    strength = st.slider("How far from the template (0 = keep it, 1 = anything)", 0.05, 1.0,
                         float(studio.SHIPPED.strength), 0.05, key="strength", persist_state="session",
                         help="How much of the template is noised away before the model rebuilds it.")
    notes.under("strength")
    fmt = lambda i: f"{i}: {tpl_rows[i]['element']}"  # noqa: E731
    cond = st.multiselect("Template atoms that carry the target DOS", opts, format_func=fmt, key="tpl_cond", persist_state="session")
    notes.under("cond_sites")
    pin = st.multiselect("Atoms kept as they are (element and fractional position)", [i for i in opts if i not in cond],
                         format_func=fmt, key="tpl_pin", persist_state="session")
    req_kw.update(n_atoms=len(tpl_rows), cond_sites=cond, targets=[target.tolist()] * len(cond),
                  template_id=None if t_id in ("__upload__", CANDIDATE) else t_id,
                  template={"numbers": list(tpl_struct.atomic_numbers), "frac": (tpl_struct.frac_coords % 1.0).tolist(),
                            "lattice": tpl_struct.lattice.matrix.tolist()},
                  strength=float(strength), pinned=pin)
    st.caption(f"Template: {tpl_names.get(t_id, t_id)}; conditioned atoms: "
               f"{', '.join(fmt(i) for i in cond) or 'none'}; pinned: {', '.join(fmt(i) for i in pin) or 'none'}"
               + (". The template is the target's own material: its site already has this DOS, so at low strength "
                  "most candidates come back as the material itself (marked known). Raise the strength, or grow "
                  "from other known sites (the first mode), for new structures." if t_id == ref_key else ""))

# ---- 3. settings ------------------------------------------------------------------------------
PER_SOURCE_HELP = ("After the overall top candidates, also check the best of the generator's draws and the best of the "
                   "swaps that are not among them: the predictor's error is larger than the gaps between the two "
                   "kinds' best, so DFT decides. The overall top are checked first, so they land first.")
st.header("3 · Settings")
s1, s2, s3 = st.columns(3)
req_kw["n_candidates"] = int(s1.number_input(f"Candidates (1–{studio.SHIPPED.max_candidates})", value=studio.SHIPPED.n_candidates, step=1, key="n_cand", persist_state="session",
                                             help="How many structures the generator draws. In the default mode the "
                                                  "known structures' same-group swaps join them, and when too few "
                                                  "of the draws are new crystals, as many again are drawn further "
                                                  "from the known structures: a run can hold two to four times this."))
notes.under("n_candidates", s1)
req_kw["guidance"] = float(s2.number_input(f"How closely to follow the target DOS (0–{studio.SHIPPED.max_guidance:g})",
                                           value=float(studio.SHIPPED.guidance), step=0.5, key="w", persist_state="session",
                                           disabled=mode == "unconditional",      # walk 14: offered with no target
                                           help="Guidance weight w: 0 ignores the target, 1 is the trained "
                                                "balance, higher follows it harder (and gives fewer valid cells). "
                                                "The unconditional baseline has no target to follow."))
notes.under("guidance", s2)
import torch  # noqa: E402  (only to list devices)
devs = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
req_kw["device"] = s3.selectbox("Run on", devs, key="device", persist_state="session", help="auto = the GPU when there is one")
notes.under("device", s3)
ADVANCED = ("steps", "seed", "particles", "dft_top", "dft_rounds")      # the fields inside the expander below
with st.expander("Advanced settings", expanded=False):
    a1, a2, a3 = st.columns(3)
    req_kw["steps"] = int(a1.select_slider("Denoising steps", [10, 25, 50, 100, 250, 500, 1000],
                                           value=studio.DEFAULT_STEPS, key="steps", persist_state="session",
                                           help="More steps cost time; 100 scored like 1000 in the benchmark. Below 50 most cells come out invalid "
                                                "(atoms too close or the volume far off)."))
    notes.under("steps", a1)
    if few := studio.few_steps_text(mode, req_kw["steps"]):
        a1.warning(few)
    req_kw["seed"] = int(a2.number_input("Random seed (0 to 2³¹ − 1)", value=studio.SHIPPED.seed, step=1, key="seed", persist_state="session",
                                         help="The same seed and settings give the same candidates."))
    notes.under("seed", a2)
    req_kw["particles"] = 1
    if mode != "unconditional":
        req_kw["particles"] = int(a3.number_input(
            f"Trajectories per candidate (1–{studio.SHIPPED.max_particles}; DOS steering, 1 = off)",
            value=studio.DEFAULT_PARTICLES if R["guide"] else 1, step=1, key="particles", persist_state="session", disabled=R["guide"] is None,
            help="Each candidate is drawn as this many trajectories; a DOS guide keeps the one closest to the "
                 "target. Closer matches, at this many times the sampling time."))
        notes.under("particles", a3)
        if R["guide"] is None:      # the box is off without a guide: no steering, whatever it holds
            req_kw["particles"] = 1
    req_kw["stability"] = st.checkbox(f"Relax each candidate with {R['hull'].label} and place it on an ML convex hull "
                                      "(a few seconds per candidate; not the Materials Project hull)",
                                      value=False, key="stability", persist_state="session")
    dft_top = st.number_input(f"DFT check of the top candidates after ranking (0–{checks.MAX_DFT_TOP}; cells of at most "
                              f"{certify.MAX_ATOMS} atoms; 0 = none)", value=certify.DEFAULT_TOP, step=1, key="dft_top", persist_state="session",
                              help=f"GPAW with the labelling recipe, {default_workers()} at a time (one per CPU "
                                   f"core), about {studio.duration(studio.dft_seconds_prior())} each on this machine.")
    notes.under("dft_top")
    dft_relaxed = st.checkbox(f"Relax each checked candidate with {studio.potential_label()} before its DFT check",
                              value=studio.SHIPPED.dft_relaxed, key="dft_relaxed", persist_state="session", disabled=not dft_top,
                              help="A drawn cell is not at equilibrium: relaxing it moves the checked atom's DFT curve "
                                   "by about 0.2 states/eV. On 31 held-out targets the relaxed best of three matched "
                                   "the target a little better (DFT MAE 0.201 against 0.213 as drawn). Adds a few "
                                   "seconds to a minute per candidate. A candidate that relaxes into a known compound "
                                   "is no new structure: the next candidate in line is checked in its place.")
    two_sources = mode == "seeded" and bool(req_kw.get("substitutions"))
    per_source_label = "… and as many of the best draws and of the best swaps besides (up to twice the checks)"
    if dft_top and two_sources:
        dft_per_source = st.checkbox(per_source_label, value=certify.PER_SOURCE, key="dft_per_source", persist_state="session",
                                     help=PER_SOURCE_HELP)
    else:
        # not applicable here (one kind of candidate, or no checks): shown off, the user's choice kept for later
        dft_per_source = st.checkbox(per_source_label, value=False, disabled=True, key="dft_per_source_off",
                                     help=PER_SOURCE_HELP + " Only where the known structures' swaps join the draws.")
    dft_rounds = st.number_input(
        f"Further rounds from the best DFT check while its cosine to the target is below {rounds.BAR} "
        f"(0–{rounds.MAX_ROUNDS})", value=0, step=1, key="dft_rounds", persist_state="session", disabled=not dft_top or mode == "unconditional",
        help="Each round grows a new run from the checked candidate whose DFT curve has the target's shape most "
             "closely (the model's draws and the swaps, from it alone), or, where known sites' stored DFT curves "
             "have that shape more closely still at no larger MAE, from those known sites (up to the number of "
             "known structures to grow from, the reference never), and checks that run's top candidates by DFT again: a generation "
             "and its DFT checks, minutes, per round. Measured on 61 held-out targets: about one more target in "
             "thirty reached cosine 0.9 in each of the first two rounds from a check, none in a third; rounds from "
             "better-shaped known sites rescued 2 of 16 hard targets.")
    notes.under("dft_rounds")
req_kw["title"] = f"target: {target_desc}" if mode != "unconditional" else "no target (unconditional baseline)"

# the numbers' ranges are checked here, not by the inputs: a box with bounds turns red on an
# out-of-range number and says nothing more, while the check's line names the range under it
# a box greyed out is not used, and a number kept in it must not hold Generate off (the review)
problems = checks.request_problems({**req_kw, "dft_top": dft_top,
                                    **({"dft_rounds": dft_rounds} if dft_top and mode != "unconditional" else {})})

# ---- cost up front ----------------------------------------------------------------------------
# a fresh install parses the MP tables in the background (state.warm_start): while it works, the
# estimate counts what is left of it and redraws every few seconds; once it ends, the page redraws
warming = state.warm_start()
parsing_s = warming.running_s() if warming is not None else None


@st.fragment(run_every=5.0 if parsing_s is not None else None)
def cost_up_front():
    running = warming.running_s() if warming is not None else None
    if parsing_s is not None and running is None:
        st.rerun(scope="app")
    if problems:      # an estimate of settings that cannot run would only mislead
        st.info("The estimated time shows once the settings above can run.")
    else:
        load, cpus = state.cpu_load()
        e = estimate(mode, req_kw["n_candidates"], req_kw["steps"], req_kw["particles"],
                     substitutions=req_kw.get("substitutions", False), grow_from=bool(req_kw.get("grow_from")),
                     stability=bool(req_kw.get("stability")), dft_top=dft_top, dft_relaxed=dft_relaxed,
                     per_source=bool(dft_per_source and two_sources), load=load, cpus=cpus,
                     under_way={"MP structures parsed": running} if running is not None else None)
        est, dft_est, n_checks, n_scored, cold, rates = e.seconds, e.dft_seconds, e.n_checks, e.n_scored, e.cold, e.rates
        sr = rates["steered_row"]
        gpu = req_kw["device"] == "cuda" or (req_kw["device"] == "auto" and torch.cuda.is_available())
        # the estimate in plain words; how it was made (measured rates and their records) under it
        st.info(f"Estimated time: **about {studio.duration(est)}** to generate and score the candidates on "
                + ("the GPU (timed on a CPU, so expect less)" if gpu else "this CPU") + "."
                + (f" Then a DFT check of the top {dft_top}" + (f" and of the best {dft_top} of each kind, the model's draws and the swaps (up to {n_checks})"
                                                                  if n_checks > dft_top else "")
                   + f", about {studio.duration(dft_est)}, "
                   "in the background." if dft_top and mode != "unconditional" else "")
                + (f" Then up to {dft_rounds} further round{'s' * (dft_rounds > 1)} while the best DFT cosine stays below "
                   f"{rounds.BAR}, about {studio.duration(est + dft_est)}" + (" each" if dft_rounds > 1 else "") + "."
                   if dft_top and dft_rounds and mode != "unconditional" else "")
                + studio.busy_note(e.load, e.cpus, e.gen_x, e.dft_x if dft_top and mode != "unconditional" else 1.0))
        st.caption(f"How it is estimated: {sr['seconds']:.1f} s for {sr['candidates']} DOS-steered candidates of 4–7 atoms "
                   f"at {sr['steps']} denoising steps and {rates['plain_row']['seconds']:.1f} s without steering "
                   f"({rates['source']}), scaled by candidates, steps and steering trajectories"
                   + ("; one unconditioned sample per candidate is drawn as the baseline" if mode != "unconditional" else "")
                   # a seed gives as many swaps as it has same-group partners, so their number is a ceiling
                   + f"; scoring {'up to ' if mode == 'seeded' and req_kw.get('substitutions') else ''}{n_scored} structures"
                   # the second batch is drawn only when the first holds too few new crystals (top-up.json: 2 of 61 sites)
                   + (" (a second batch, when too few draws are new crystals, adds about half)"
                      if mode == "seeded" and not req_kw.get("grow_from") and studio.SHIPPED.top_up > 0 else "")
                   + (" with the hull's relaxations" if req_kw.get("stability") else "")
                   + f" ({studio.SCORING_FILE.name})"
                   + (f"; this session's first run also builds what later runs reuse: {', '.join(cold)}"
                      + (" (once per install: the parsed tables are kept)" if "MP structures parsed" in cold else "")
                      + f" ({studio.STARTUP_FILE.name})" if cold else "")
                   + (f"; each DFT check about {studio.duration(studio.dft_seconds_prior(relaxed=dft_relaxed))} on a quiet "
                      "CPU (the timed app flow)" if dft_top and mode != "unconditional" else "")
                   # walk 13 counted a 7th check against the "up to 6"
                   + ("; a check whose cell relaxes into a known compound hands its place to the next candidate, "
                      "a check more" if dft_top and dft_relaxed and mode != "unconditional" else "") + ".")
    if running is not None:
        st.caption(f"The Materials Project structures are being parsed in the background, once per install "
                   f"({studio.duration(running)} so far): the estimate counts what is left of it.")


cost_up_front()

# ---- 4. generate ------------------------------------------------------------------------------
st.header("4 · Generate", anchor="generate")
intro.markdown(INTRO.format(go="[**Generate** (4)](#generate)"))
for line in notes.show(problems):        # a problem whose input is not on the page shows here
    st.error(f"Cannot generate: {line}")
for field, line in problems:     # under a box in the closed expander it is out of sight: said here too
    if field in ADVANCED:
        st.error(f"Cannot generate (Advanced settings): {line}")
if model is None:
    st.error("No generator checkpoint is available, so nothing can be generated. Train one with `dosmatgen train`.")
elif st.button("Generate", type="primary", key="generate", disabled=bool(problems) or getattr(state.current_job(), "active", False),
               help="One generation at a time: this is off while one runs (Cancel stops it)."):
    try:
        dft_on = bool(dft_top) and mode != "unconditional"
        state.submit(Request(**req_kw), store, {"top": dft_top if dft_on else 0, "relaxed": dft_relaxed,
                                                "per_source": dft_per_source and two_sources},
                     rounds_left=int(dft_rounds) if dft_on else 0)
        st.session_state.pop("rounds_note", None)       # a new Generate ends the chain this page followed (state.submit)
        st.rerun()      # redraw at once with Generate off while the job runs
    except (ValueError, StructureError) as exc:
        # a check that names its input is shown under it; anything else here, by the button
        notes.show([(getattr(exc, "field", None) or "", f"Cannot generate: {exc}")], fallback=st)
elif problems:
    st.caption("Generate is off until the problem named in red above is fixed.")


run_view.current_run(target, req_kw["title"], viz.MAX_LIVE_VIEWS - 1 - len(hits), grow_from)
