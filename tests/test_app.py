"""Page logic through streamlit.testing, and the app's helpers on small real data."""
import datetime as dt
import io
import json
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

import pytest
from streamlit.testing.v1 import AppTest

from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.scoring import certify
from studio import catalogue
from studio import figures as viz
from studio import shared as studio
from studio import state as state_mod

APP = str(studio.ROOT / "app.py")


def p1_cif(a: float, angle: float, atoms: str) -> str:
    """A P1 CIF of a cell with equal edges and angles, its atoms ('Cl 0.5 0.5 0.5') in the order given."""
    lines = [f"{el}{k} {el} {xyz}" for k, (el, xyz) in enumerate(r.split(" ", 1) for r in atoms.strip().splitlines())]
    return ("data_NaCl\n" + "".join(f"_cell_length_{x} {a}\n" for x in "abc")
            + "".join(f"_cell_angle_{x} {angle}\n" for x in ("alpha", "beta", "gamma"))
            + "_symmetry_space_group_name_H-M 'P 1'\nloop_\n_atom_site_label\n_atom_site_type_symbol\n"
            + "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n" + "\n".join(lines) + "\n")


NACL_CL_FIRST = p1_cif(5.69, 90, "Cl 0.5 0.5 0.5\nNa 0.0 0.0 0.0")
# rock salt itself (the fcc primitive cell, a = 5.64 Å), Cl written first: for the tests that run GPAW
# on it (NACL_CL_FIRST's CsCl arrangement at 5.69 Å is an expanded cell, fine for order, not for physics)
ROCKSALT_CL_FIRST = p1_cif(3.98808, 60, "Cl 0.5 0.5 0.5\nNa 0.0 0.0 0.0")


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs a page as __main__ and leaves it there; a process spawned later (the labeller's
    Dask workers) would then re-import that page as its main module and fail to start."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture()
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def db():
    return open_db(studio.DB_URL)


def test_page_loads_with_all_sections_and_the_preset_site(app):
    heads = [h.value for h in app.header]
    assert heads[:4] == ["1 · Target DOS", "2 · How candidates are built", "3 · Settings", "4 · Generate"]
    assert any("Device:" in c.value for c in app.sidebar.caption)
    assert any("not spin-polarised" in c.value for c in app.sidebar.caption)    # the DFT's one blind spot, named
    assert f"(1–{studio.SHIPPED.max_candidates})" in app.number_input(key="n_cand").label   # as the CLI's --n
    assert app.selectbox(key="ref_select").value == studio.PRESET_ID
    site = app.selectbox(key=f"site_{studio.PRESET_ID}").value
    assert open_db(studio.DB_URL).get(studio.PRESET_ID).symbols[site] == "Ni"
    assert any("Estimated time" in i.value for i in app.info)          # cost before Generate


def test_template_follows_the_reference(app):
    app.text_input(key="ref_query").set_value("NaCl").run()
    assert app.selectbox(key="ref_select").value == "mp-22862"
    app.radio(key="mode").set_value("template").run()
    assert app.selectbox(key="tpl_id").value == "mp-22862"
    assert len(app.selectbox(key="tpl_id").options) > 2000             # the whole database, not 500 rows
    app.text_input(key="ref_query").set_value("Au3Ni").run()
    assert app.selectbox(key="tpl_id").value == studio.PRESET_ID
    site = app.selectbox(key=f"site_{studio.PRESET_ID}").value
    assert app.multiselect(key="tpl_cond").value == [site]
    assert app.slider(key="strength").value == studio.SHIPPED.strength
    assert any("the target's own material" in c.value for c in app.caption)   # it will mostly come back as itself
    assert not app.exception


def test_use_as_template_sets_template_mode_with_that_site(app):
    buttons = [b for b in app.button if b.key and b.key.startswith("tpl_")]
    assert buttons, "the known-sites table offers no template"
    mid, site = buttons[0].key[len("tpl_"):].rsplit("_", 1)
    buttons[0].click().run()
    assert app.radio(key="mode").value == "template"
    assert app.selectbox(key="tpl_id").value == mid
    assert app.multiselect(key="tpl_cond").value == [int(site)]
    assert mid != studio.PRESET_ID                                   # the reference itself is left out


def test_a_template_chosen_survives_another_mode_and_another_page(tmp_path, monkeypatch):
    """The template picked from the known sites, its atoms and its pins are the user's choice: a look
    at another mode or at the Runs page does not put the reference back."""
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(APP, default_timeout=120).run()
    button = next(b for b in at.button if b.key and b.key.startswith("tpl_"))
    mid, _ = button.key[len("tpl_"):].rsplit("_", 1)
    button.click().run()
    pins = [i for i in at.multiselect(key="tpl_pin").options]
    assert pins
    at.multiselect(key="tpl_pin").set_value([at.multiselect(key="tpl_pin").options[0]]).run()
    chosen = (at.selectbox(key="tpl_id").value, at.multiselect(key="tpl_cond").value, at.multiselect(key="tpl_pin").value)
    at.radio(key="mode").set_value("masked").run()
    at.switch_page("pages/1_Runs.py").run()
    at.switch_page("pages/generate.py").run()
    at.radio(key="mode").set_value("template").run()
    assert not at.exception, [e.value for e in at.exception]
    assert (at.selectbox(key="tpl_id").value, at.multiselect(key="tpl_cond").value,
            at.multiselect(key="tpl_pin").value) == chosen and chosen[0] == mid


def test_unlabelled_formula_offers_a_next_step(app):
    # the first search past the labels parses the 18k shared MP structures (minutes on a clean clone,
    # cached under data/cache after that)
    app.text_input(key="ref_query").set_value("GaAs").run(timeout=900)
    assert any("GaAs" in w.value and "no DFT label" in w.value for w in app.warning)
    near = [b for b in app.button if b.key and b.key.startswith("near_")]
    assert any("AlAs" in b.label or "GaP" in b.label for b in near)
    near[0].click().run()
    assert app.selectbox(key="ref_select").value == near[0].key[len("near_"):]


@pytest.mark.needs_mp
def test_an_element_with_no_label_of_its_own_says_so(app):
    """A walk typed Fe and got FeH first, with no word that elemental Fe has no label. The list says
    so, and offers the element's shipped MP structures (no label: a predicted DOS) after the labels."""
    app.text_input(key="ref_query").set_value("Fe").run(timeout=900)
    assert any("No DFT label of elemental Fe, and no shipped structure of it" in c.value for c in app.caption)
    assert app.selectbox(key="ref_select").options and not app.exception
    app.text_input(key="ref_query").set_value("S").run()
    assert any("No DFT label of elemental S: " in c.value and "its 1 Materials Project structure" in c.value
               for c in app.caption)
    options = app.selectbox(key="ref_select").options
    assert "mp-555760" in options[-1] and "no label: predicted DOS" in options[-1]
    app.selectbox(key="ref_select").set_value("mp:mp-555760").run()       # 9 atoms of S: too large here
    assert any(c.value.startswith("No DFT of this cell from the app: it has 9 atoms") for c in app.caption)
    assert not any(b.key == "gpaw_mp:mp-555760" for b in app.button)
    assert "DFT label" in options[0]                       # the labelled ones first
    app.text_input(key="ref_query").set_value("Cu").run()    # fcc Cu is labelled: nothing to say
    assert not any("No DFT label of elemental" in c.value for c in app.caption)

@pytest.mark.needs_mp
def test_an_unlabelled_mp_structure_offers_gpaw_from_the_page(app):
    """Its sites' curves are predicted; a button calculates the cell with GPAW. Small MP structures
    with no label (the labeller may yet label some: the first still unlabelled is taken)."""
    for formula in ("CsH", "VO", "CoO", "LiHF2", "NaRuO2"):
        app.text_input(key="ref_query").set_value(formula).run(timeout=900)
        key = app.selectbox(key="ref_select").value
        if key.startswith("mp:"):
            break
    assert key.startswith("mp:"), "every listed structure has a label now: name another unlabelled one"
    assert [b.label for b in app.button if b.key == f"gpaw_{key}"] == ["Calculate this cell with GPAW"]
    assert any("GPAW on this cell (below)" in i.value for i in app.info)
    assert not app.exception


def test_mode_switches_show_their_controls(app):
    app.radio(key="mode").set_value("fixed_type").run()
    assert app.text_input(key="fixed_el").value == "Ni"
    # the fixed element follows the target's site until the user types one of their own
    app.selectbox(key=f"site_{studio.PRESET_ID}").set_value(1).run()          # Au3Ni's site 1 is Au
    assert app.text_input(key="fixed_el").value == "Au"
    app.text_input(key="fixed_el").set_value("Fe").run()
    app.selectbox(key=f"site_{studio.PRESET_ID}").set_value(0).run()
    assert app.text_input(key="fixed_el").value == "Fe"
    app.radio(key="mode").set_value("masked").run()
    assert app.number_input(key="n_atoms").value == studio.SHIPPED.n_atoms
    assert not app.exception


def test_seeded_mode_is_the_default_and_never_seeds_from_the_reference(app):
    assert app.radio(key="mode").value == "seeded"
    assert app.number_input(key="n_seeds").value == 3
    assert any("never include the reference material" in c.value for c in app.caption)
    assert app.checkbox(key="seed_subs").value is studio.SHIPPED.substitutions
    assert app.checkbox(key="seed_far").value is studio.SHIPPED.distant_swaps


def drawn_after(at, widget):
    """The element drawn right after `widget` in its container: where its check message goes."""
    stack = [at._tree]
    while stack:
        block = stack.pop()
        kids = [block.children[i] for i in sorted(getattr(block, "children", {}))]
        for i, k in enumerate(kids):
            if k is widget:
                return kids[i + 1] if i + 1 < len(kids) else None
        stack.extend(kids)
    raise AssertionError("widget not in the page")


def test_generate_without_conditioned_atoms_says_why_under_the_input(app):
    app.radio(key="mode").set_value("masked").run()
    app.multiselect(key="cond_new").set_value([]).run()
    note = drawn_after(app, app.multiselect(key="cond_new"))
    assert note.type == "error" and "no atom carries a target DOS" in note.value
    assert [e.value for e in app.error] == [note.value]                # one line, nowhere else
    assert app.button(key="generate").disabled
    app.multiselect(key="cond_new").set_value([0]).run()
    assert not app.error and not app.button(key="generate").disabled


def test_unknown_element_in_fixed_mode_says_why_under_the_input(app):
    app.radio(key="mode").set_value("fixed_type").run()
    app.text_input(key="fixed_el").set_value("Qq").run()
    note = drawn_after(app, app.text_input(key="fixed_el"))
    assert "unknown element 'Qq'" in note.value and len(app.error) == 1
    assert app.button(key="generate").disabled


def test_a_number_out_of_range_says_its_range_under_its_input(app):
    """The walk: a box with bounds only turned red on an out-of-range number ("Press Enter to
    apply"), and the number was dropped. The boxes take any number; the library's check says the
    range under the box, Generate is off and the estimate waits, and the number stays as typed."""
    cap = studio.SHIPPED.max_candidates
    app.number_input(key="n_cand").set_value(cap + 1).run()
    assert not app.exception, [e.value for e in app.exception]
    note = drawn_after(app, app.number_input(key="n_cand"))
    assert note.value == f"number of candidates is {cap + 1}; a run draws at most {cap} candidates"
    assert len(app.error) == 1 and app.button(key="generate").disabled
    assert app.number_input(key="n_cand").value == cap + 1
    assert not any("Estimated time" in i.value for i in app.info)
    app.number_input(key="n_cand").set_value(0).run()        # the range said is the box's, not the library's 1000
    assert drawn_after(app, app.number_input(key="n_cand")).value == f"number of candidates is 0; it must be between 1 and {cap}"
    # the DFT checks' count and the rounds are checked too; a CLI flag is never offered as the fix
    app.number_input(key="n_cand").set_value(8)
    app.number_input(key="dft_top").set_value(11)
    app.number_input(key="dft_rounds").set_value(-1).run()
    lines = {k: drawn_after(app, app.number_input(key=k)).value for k in ("dft_top", "dft_rounds")}
    assert lines["dft_top"].startswith("number of DFT checks is 11; it must be between 0 and 10")
    assert lines["dft_rounds"].startswith("number of further rounds is -1; it must be between 0 and ")
    # under their boxes, and again by the button: the expander they sit in may be closed
    assert len(app.error) == 4 and not any("--" in e.value for e in app.error)
    assert any(e.value.startswith("Cannot generate (Advanced settings): number of DFT checks is 11") for e in app.error)
    # with no DFT checks the rounds box is off: what it holds does not keep Generate off
    app.number_input(key="dft_top").set_value(0).run()
    assert not app.error and not app.button(key="generate").disabled
    app.number_input(key="dft_top").set_value(3).run()
    app.number_input(key="dft_rounds").set_value(0).run()
    assert not app.error and not app.button(key="generate").disabled
    assert any("Estimated time" in i.value for i in app.info)


def test_a_count_of_atoms_out_of_range_keeps_the_page_whole(app):
    """Masked mode's atom picker lists the candidate's atoms: a count out of range still draws it."""
    app.radio(key="mode").set_value("masked").run()
    for n in (0, 25):
        app.number_input(key="n_atoms").set_value(n).run()
        assert not app.exception, [e.value for e in app.exception]
        note = drawn_after(app, app.number_input(key="n_atoms"))
        assert note.value.startswith(f"number of atoms is {n}; the model makes cells of 1 to ")
        assert app.button(key="generate").disabled


def test_request_problems_name_their_fields():
    from dosmatgen_core import checks
    got = checks.request_problems({"mode": "fixed_type", "n_atoms": 4, "cond_sites": [], "fixed": {0: "Qq"},
                                   "n_candidates": 0, "guidance": 1.0, "steps": 5000, "seed": 0, "particles": 4})
    assert [f for f, _ in got] == ["cond_sites", "fixed", "n_candidates", "steps"]
    assert all("\n" not in line for _, line in got)
    assert checks.request_problems({"mode": "seeded", "n_seeds": 3, "strength": 0.5, "steps": 100}) == []
    with pytest.raises(checks.UserError) as e:
        checks.check_guidance(99)
    assert e.value.field == "guidance"


def test_search_that_matches_nothing_is_explained(app):
    app.text_input(key="ref_query").set_value("Zz9").run()
    assert any("neither a formula" in e.value for e in app.error) and len(app.error) == 1


def test_csv_upload_parsing():
    e = np.linspace(-8, 8, 161)
    g = np.exp(-e ** 2)
    text = "energy,dos\n" + "\n".join(f"{a},{b}" for a, b in zip(e, g))
    out = studio.read_dos_csv(text.encode())
    assert out.shape == (400,) and out.max() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="NaN"):
        studio.read_dos_csv("1,2\n2,nan\n3,1\n4,1\n5,1\n")


def test_csv_only_target_needs_no_reference(app):
    app.radio(key="target_src").set_value("A DOS file (CSV)").run()
    assert not app.exception
    assert any("Upload a DOS file" in i.value for i in app.info)
    assert [h.value for h in app.header] == ["1 · Target DOS"]        # nothing to build on yet, said plainly


def test_uploaded_cif_keeps_its_site_order_and_is_marked_predicted(db):
    from dosmatgen_core.scoring.predictor import load_predictor
    m = catalogue.from_upload("rocksalt.cif", NACL_CL_FIRST.encode(), load_predictor(studio.PREDICTOR_PATH))
    assert [s.specie.symbol for s in m.structure] == ["Cl", "Na"]
    assert m.source == "predicted" and m.site_dos.shape == (2, 400) and np.isfinite(m.site_dos).all()
    assert m.curve_name(0) == "predicted DOS of NaCl site 0 (Cl)"
    with pytest.raises(ValueError, match="could not read the CIF file: it has no cell or atom-site tags"):
        catalogue.from_upload("bad.cif", b"data_x\nnonsense", None)
    ref = catalogue.from_db(db.get(studio.PRESET_ID))
    assert ref.name == "Au3Ni · L1₂ · relaxed" and ref.curve_name(0) == "DFT label of Au3Ni site 0 (Ni)"


def test_a_poscar_or_cif_upload_is_read_whatever_its_name(db):
    """The walk: a file named POSCAR (VASP's own name, no extension) was refused by the uploader
    with a reason only in its chip's tooltip. The uploader takes any name; the reader goes by the
    name (POSCAR, CONTCAR, *.vasp, *.cif), else by the content."""
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.structures import atoms_from_cif
    pred = load_predictor(studio.PREDICTOR_PATH)
    buf = io.StringIO()
    atoms_from_cif(NACL_CL_FIRST).write(buf, format="vasp")         # ASE keeps the file's order: Cl first
    poscar = buf.getvalue().encode()
    for name, data in (("POSCAR", poscar), ("CONTCAR", poscar), ("Al2AsP", poscar), ("rocksalt.txt", NACL_CL_FIRST.encode())):
        m = catalogue.from_upload(name, data, pred)
        assert [x.specie.symbol for x in m.structure] == ["Cl", "Na"], name
    from dosmatgen_core import checks
    assert checks.structure_format("x.txt", NACL_CL_FIRST.encode()) == "cif"
    assert checks.structure_format("x.txt", poscar) == "poscar"
    with pytest.raises(ValueError):
        catalogue.from_upload("picture.png", bytes(range(256)) * 4, pred)
    src = (studio.ROOT / "pages" / "generate.py").read_text()
    assert 'state.kept_upload("ref_upload"' in src and '"cif", "vasp", "poscar"' not in src


def test_names_people_read():
    assert studio.formula("ClNa") == "NaCl" and studio.formula("NiAu3") == "Au3Ni" and studio.formula("Ga4Te4") == "GaTe"
    assert studio.material_name("mp-22862", "ClNa") == "NaCl · mp-22862"
    assert studio.material_name("gen:008d78a03b6aa6dcf9f3", "NaCl") == "NaCl · DFT-checked candidate 008d78a0"
    assert studio.duration(40) == "40 s" and studio.duration(150) == "2 min"


def test_closest_chemistries_of_gaas(db):
    rows = catalogue.reference_rows(db)
    near = [r["reduced"] for r in catalogue.closest_chemistries(["Ga", "As"], rows)]
    assert set(near[:4]) <= {"AlAs", "InAs", "GaSb", "GaP", "InP", "AlP"} and "GaAs" not in near
    assert catalogue.search("GaAs", rows)["labelled"] == []
    assert [r["material_id"] for r in catalogue.search("NaCl", rows)["labelled"]] == ["mp-22862"]


def test_the_cli_and_the_app_find_the_same_materials(db):
    """`dosmatgen materials TEXT` (ReferenceDB.search) and the page's search box (catalogue.search over
    the cached rows) read text by one parser: the same ids in the same order, or the same refusal."""
    rows = catalogue.reference_rows(db)

    def found(search):
        try:
            return [r["material_id"] for r in search()]
        except ValueError as exc:
            return str(exc)

    for text in ("NaCl", "mp-22862", "MP-22862", "Au-Ni", "Ni", "perovskite", "rutile", "Heusler", "L1_2", "L12",
                 "B2", "A15", "C15", "none", "xx", "Qz", "", studio.PRESET_ID):
        cli = found(lambda: db.search(text=text))
        assert cli == found(lambda: catalogue.search(text, rows)["labelled"]), text
        assert isinstance(cli, str) == (text in ("none", "xx", "Qz")), (text, cli)


def test_cost_estimate_reproduces_the_measured_rates():
    rates = studio.timing_rates()
    assert studio.estimate_seconds(50, 100, 4, baseline=False, rates=rates) == pytest.approx(43.06, abs=0.01)
    assert studio.estimate_seconds(50, 100, 1, baseline=False, rates=rates) == pytest.approx(8.03, abs=0.01)
    assert studio.estimate_seconds(10, 200, 4, rates=rates) == pytest.approx(43.06 * 0.4 + 8.03 * 0.4, abs=0.01)


def test_the_first_runs_loading_time_comes_from_the_startup_record(tmp_path):
    import json
    from dosmatgen_core.candidates import pipeline
    # the shipped record times every part the pipeline can name as cold
    assert set(json.loads(studio.STARTUP_FILE.read_text())["cold_s"]) == set(pipeline.COLD_PARTS)
    rec = tmp_path / "startup.json"
    rec.write_text(json.dumps({"cold_s": {"novelty tables": 4.6, "relaxation potential": 2.7}}))
    assert studio.startup_seconds(["novelty tables"], rec) == pytest.approx(4.6)
    assert studio.startup_seconds(list(pipeline.COLD_PARTS), rec) == pytest.approx(7.3)
    assert studio.startup_seconds([], rec) == 0.0
    assert studio.startup_seconds(["novelty tables"], tmp_path / "missing.json") == 0.0


def test_scoring_estimate_counts_every_structure_and_the_hull_only_when_asked():
    import json
    per = json.loads(studio.SCORING_FILE.read_text())["seconds_per_candidate_per_check"]
    quick = sum(v for k, v in per.items() if k != "stability")
    assert studio.scoring_seconds(24) == pytest.approx(24 * quick)
    assert studio.scoring_seconds(24, stability=True) == pytest.approx(24 * quick + 24 * per["stability"])
    assert studio.scoring_seconds(24, stability=True) > 10 * studio.scoring_seconds(24)   # the hull relaxes each one


def test_latest_result_of_each_kind(tmp_path):
    (tmp_path / "generate-a.json").write_text(json.dumps({"machine": {"date": "2026-01-02T00:00:00+00:00"}}))
    (tmp_path / "generate-b.json").write_text(json.dumps({"machine": {"date": "2026-01-01T00:00:00+00:00"}}))
    (tmp_path / "dft.json").write_text(json.dumps({"date": "2025-05-05"}))
    got = {i["kind"]: i["file"] for i in studio.latest_results(tmp_path)}
    assert got == {"generate": "generate-a.json", "dft": "dft.json"}
    assert {i["kind"] for i in studio.latest_results()} >= {"generate", "dft", "models", "predictors"}


def test_supercell_atoms_lie_inside_its_outline(db):
    from dosmatgen_core.structures import to_structure
    s = to_structure(db.get("mp-22862").atoms)
    s.translate_sites(list(range(len(s))), [1.3, -0.7, 2.2])            # coordinates outside [0, 1)
    xyz, origin = viz.supercell_xyz(s)
    pos = np.array([[float(v) for v in line.split()[1:]] for line in xyz.splitlines()[2:]])
    frac = np.linalg.solve((s.lattice.matrix * 2).T, pos.T).T
    assert len(pos) == 8 * len(s) and frac.min() > -1e-6 and frac.max() < 1 + 1e-6
    assert len(viz.cell_edges(s.lattice.matrix)) == 12


def test_each_image_of_a_highlighted_site_gets_a_halo_wider_than_its_atom(db):
    import json as _json
    import re as _re
    from pymatgen.core import Element
    from dosmatgen_core.structures import to_structure
    s = to_structure(db.get("mp-22862").atoms)                              # NaCl
    page = viz.structure_html(s, {0: "#ff3b30", 1: "#34c759"})
    halos = _json.loads(_re.search(r"const halos = (\[.*?\]);", page).group(1))
    assert len(halos) == 2 * 8                                             # both sites, every 2×2×2 image
    for h in halos:
        el = s[0].specie.symbol if h["color"] == "#ff3b30" else s[1].specie.symbol
        assert h["radius"] > viz.SPHERE_SCALE * float(Element(el).van_der_waals_radius) + 0.3


def test_known_candidate_maps_to_the_matching_stored_site(db):
    from dosmatgen_core.structures import to_structure
    from studio.known import matching_site
    known = to_structure(db.get(studio.PRESET_ID).atoms)
    cand = known.copy()
    cand.make_supercell([2, 1, 1])
    cand = cand.get_sorted_structure(key=lambda site: site.specie.symbol)     # Au first, Ni later
    ni = [i for i, x in enumerate(cand) if x.specie.symbol == "Ni"][0]
    assert known[matching_site(cand, ni, known)].specie.symbol == "Ni"
    assert matching_site(cand, 0, to_structure(db.get("mp-22862").atoms)) is None


def _small_run(tmp_path):
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor
    ni = open_db(studio.DB_URL).get(studio.PRESET_ID)
    req = Request(mode="masked", n_atoms=4, targets=[ni.site_dos[0].tolist()], cond_sites=[0], n_candidates=2,
                  steps=5, title="target: DFT label of Au3Ni site 0 (Ni)")
    return run_generation(req, load_model(studio.MODEL_PATH), load_predictor(studio.PREDICTOR_PATH),
                          store=RunStore(tmp_path / "runs.db"), check_novelty=False)


def _opened_run(tmp_path, monkeypatch):
    """A small stored run, and the app opened on it by its link (?run=ID), as a fresh session."""
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    run = _small_run(tmp_path)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = run["id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return run, at


def test_a_generation_starts_its_dft_checks_with_no_page_open(tmp_path):
    """A walk pressed Generate and opened the Runs page at once: the run ended, and its DFT checks
    waited for the Generate page to be shown again (closing the tab would have lost them). The job
    now starts them in its own thread (a `then` such as candidates.chain's: certify.check_top),
    before it reads as done; a failure there leaves the run done and says why."""


    from dosmatgen_core.candidates.jobs import JobManager
    from dosmatgen_core.candidates.pipeline import Request
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor

    class Cert:            # records what would go to GPAW; the checks themselves are tested in test_certify
        started = []

        def start(self, run_id, ranks, relaxed=True, top=0, after=None, spares=(), asked=0):
            self.started.append((run_id, ranks, top))
    store, cert = RunStore(tmp_path / "runs.db"), Cert()
    ni = open_db(studio.DB_URL).get(studio.PRESET_ID)
    req = Request(mode="masked", n_atoms=4, targets=[ni.site_dos[0].tolist()], cond_sites=[0], n_candidates=4,
                  steps=50, title="t")        # enough steps for cells a check takes
    jobs, loaded, pred = JobManager(), load_model(studio.MODEL_PATH), load_predictor(studio.PREDICTOR_PATH)

    def ran(then):
        job = jobs.submit(req, loaded, pred, store, studio.DB_URL, then=then)
        while job.active:
            time.sleep(0.2)
        return job
    job = ran(lambda run: certify.check_top(cert, store.get(run["id"]), 3))
    assert job.status == "done" and "why" not in job.followup, job.followup
    assert job.status == "done" and job.followup["ranks"] and cert.started == [(job.run_id, job.followup["ranks"], 3)]
    assert job.followup["ranks"] == certify.pick(store.get(job.run_id), 3)

    def broken(run):
        raise OSError("disk full")
    job = ran(broken)
    assert job.status == "done" and job.followup == {"error": "OSError: disk full"}
    assert certify.check_top(cert, store.get(job.run_id), 0) == {"ranks": []}       # no checks asked for

def test_run_zip_legends_and_top_k(tmp_path):
    from studio.export import run_zip
    from studio.results import candidate_curves
    run = _small_run(tmp_path)
    c = run["candidates"][0]
    fake_dft = {c["rank"]: {"status": "done", "result": {"site_dos": np.zeros((c["n_atoms"], 400)), "seconds": 1,
                                                          "dos_match": {"0": {"mae": 0.5}}}}}
    curves = {x["rank"]: candidate_curves(run, x, fake_dft.get(x["rank"]), None) for x in run["candidates"]}
    z = zipfile.ZipFile(io.BytesIO(run_zip(run, fake_dft, curves)))
    names = z.namelist()
    assert "run.json" in names and "dft.json" in names
    assert sum(n.endswith(".cif") for n in names) == 2 and sum(n.endswith("_dos.csv") for n in names) == 3
    stem = next(n for n in names if n.startswith(f"candidates/{c['rank']:03d}_") and n.endswith("_dos.csv")
                and "_dft_" not in n)
    assert stem.startswith(f"candidates/{c['rank']:03d}_{studio.formula(c['formula'])}_")    # named as the card
    assert z.read(stem).decode().startswith("# run ") and "dft_site0" in z.read(stem).decode().splitlines()[1]     # the card's CSV, its DFT rows beside
    relaxed_check = {c["rank"]: {"status": "done", "result": {**fake_dft[c["rank"]]["result"], "relaxed": True,
                                                                "cif": c["cif"]}}}
    zr = zipfile.ZipFile(io.BytesIO(run_zip(run, relaxed_check)))
    (cell,) = [n for n in zr.namelist() if n.endswith("_relaxed.cif")]
    assert zr.read(cell).decode().startswith("# Atoms in the candidate's site order")
    svgs = [n for n in names if n.endswith("_dos.svg")]
    assert len(svgs) == 2                                               # every candidate's plot
    first = z.read(next(n for n in svgs if n.startswith(f"candidates/{c['rank']:03d}_")))
    assert f"DFT of candidate #{c['rank']}".encode() in first
    legend = [x["name"] for x in candidate_curves(run, c, fake_dft[c["rank"]], None)]
    assert legend[:3] == ["target: DFT label of Au3Ni site 0 (Ni)", f"predicted for candidate #{c['rank']}",
                          f"DFT of candidate #{c['rank']}"]
    want = [x["rank"] for x in run["candidates"] if x["structurally_valid"]][:1]
    assert certify.pick(run, 1) == want
    # the predicted curve carries the ensemble's spread: a band in the plot, a column in the CSV
    band = candidate_curves(run, c, None, None)[1]["band"]
    assert np.asarray(band).shape == (400,) and np.all(np.asarray(band) >= 0) and np.max(band) > 0
    fig = viz.dos_figure(candidate_curves(run, c, None, None))
    shaded = [t for t in fig.data if t.fill == "tonexty"]
    assert len(shaded) == 1 and shaded[0].name == (f"predicted for candidate #{c['rank']} ± 1σ (ensemble spread "
                                                   "calibrated on DFT)")
    assert np.allclose(np.asarray(shaded[0].y) - np.asarray(c["predicted_dos"])[0], band)
    # faint, so the DFT curve under it shows: the alpha is the fill's own (a trace opacity drew it solid)
    assert shaded[0].fillcolor == f"rgba(31,119,180,{viz.BAND_ALPHA:g})" and shaded[0].opacity in (None, 1)
    # the band is the calibrated spread (benchmarks.band_calibration), and the run says so; a run
    # stored before the calibration (none in its settings) says its band is not calibrated
    k, floor = run["settings"]["spread_calibration"]
    assert np.min(band) >= floor - 1e-6 and k > 1
    legacy = {**run, "settings": {**run["settings"], "spread_calibration": None}}
    assert candidate_curves(legacy, c, None, None)[1]["band_calibrated"] is False
    assert viz.band_name(candidate_curves(legacy, c, None, None)[1]).endswith("(not calibrated: narrower than its error)")
    csv = z.read(next(n for n in names if n.startswith(f"candidates/{c['rank']:03d}_") and n.endswith("_dos.csv")))
    # the column names what it holds: the calibrated band of this run, the raw spread of a run before it
    assert b"predicted_band_halfwidth_site0" in csv.splitlines()[1] and b"predicted_sd_site0" not in csv
    assert "predicted_band_halfwidth_site<i>: the half-width of the predicted curve's ±1σ band" in \
        z.read("README.txt").decode()
    zl = zipfile.ZipFile(io.BytesIO(run_zip(legacy, fake_dft)))
    old = zl.read(next(n for n in zl.namelist() if n.startswith(f"candidates/{c['rank']:03d}_") and n.endswith("_dos.csv")
                       and "_dft_" not in n))
    assert b"predicted_sd_site0" in old.splitlines()[1]
    assert "predicted_sd_site<i>: the predictor ensemble's standard deviation, not calibrated" in \
        zl.read("README.txt").decode()
    line = certify.status_line({"ranks": [2, 3, 4], "done": [2], "failed": [], "running": [3], "left_s": 130,
                                "active": True, "cancelled": False}, studio.duration)
    assert line == "DFT check of candidates #2, #3, #4: 1 of 3 done, ~2 min left"      # #1 known: not checked
    line = certify.status_line({"ranks": [1, 2, 3], "done": [], "failed": [], "running": [1, 2], "left_s": 200,
                                "active": True, "cancelled": False, "relaxed": True}, studio.duration)
    assert line.startswith("Relaxation and DFT check of candidates #1, #2, #3: 0 of 3 done")
    # per-kind extras after the overall top 3 are named as such
    line = certify.status_line({"ranks": [1, 2, 3, 9, 11], "done": [1], "failed": [], "running": [2, 3], "left_s": 200,
                                "active": True, "cancelled": False, "relaxed": True, "top": 3}, studio.duration)
    assert line.startswith("Relaxation and DFT check of candidates #1, #2, #3 and the best of each kind (draws, swaps), #9, #11: 1 of 5 done")
    # a check running past the mean: say so, rather than a countdown stuck near zero
    line = certify.status_line({"ranks": [1, 2], "done": [1], "failed": [], "running": [2], "left_s": 7,
                                "active": True, "cancelled": False, "per_s": 70.0, "overdue": True}, studio.duration)
    assert line.endswith("1 of 2 done, one is taking longer than the usual ~70 s")
    # ... and for how long it has run, so that a line that stays put still shows the check is alive
    line = certify.status_line({"ranks": [1, 2], "done": [1], "failed": [], "running": [2], "left_s": 7,
                                "active": True, "cancelled": False, "per_s": 70.0, "overdue": True,
                                "running_s": 300.0}, studio.duration)
    assert line.endswith("one is taking longer than the usual ~70 s (running for 5 min)"), line
    line = certify.status_line({"ranks": [1], "done": [], "failed": [], "running": [1], "left_s": 100,
                                "active": True, "cancelled": False}, studio.duration)
    assert line == "DFT check of candidate #1: 0 of 1 done, ~2 min left"
    # ... while another check still has most of its time to run: its countdown, and the slow one named
    line = certify.status_line({"ranks": [1, 2, 3], "done": [1], "failed": [], "running": [2, 3], "left_s": 65,
                                "active": True, "cancelled": False, "per_s": 70.0, "overdue": True}, studio.duration)
    assert line.endswith("1 of 3 done, ~65 s left; one is taking longer than the usual ~70 s")
    # the only check left, overdue: its remaining time grows with it, so no countdown beside it
    line = certify.status_line({"ranks": [1], "done": [], "failed": [], "running": [1], "left_s": 42,
                                "active": True, "cancelled": False, "per_s": 120.0, "overdue": True,
                                "running_s": 420.0}, studio.duration)
    assert line == "DFT check of candidate #1: 0 of 1 done, one is taking longer than the usual ~2 min (running for 7 min)"
    # a running time that reads as the usual one adds nothing ('~2 min (running for 2 min)')
    line = certify.status_line({"ranks": [1], "done": [], "failed": [], "running": [1], "left_s": 42,
                                "active": True, "cancelled": False, "per_s": 120.0, "overdue": True,
                                "running_s": 130.0}, studio.duration)
    assert line == "DFT check of candidate #1: 0 of 1 done, one is taking longer than the usual ~2 min"


def test_a_zip_built_again_redraws_only_the_plots_that_changed(tmp_path, monkeypatch):
    """The run zip is built again whenever a check lands; each plot costs ~0.14 s, so a plot is
    kept by its curves' digest and only a candidate whose curves changed is drawn again."""
    from studio import export
    from studio.results import candidate_curves
    run = _small_run(tmp_path)
    drawn = []
    real = export.dos_image
    monkeypatch.setattr(export, "dos_image", lambda curves, title, fmt="svg": drawn.append(title) or real(curves, title))
    monkeypatch.setattr(export, "_svgs", type(export._svgs)())
    curves = {x["rank"]: candidate_curves(run, x, None, None) for x in run["candidates"]}
    first = zipfile.ZipFile(io.BytesIO(export.run_zip(run, {}, curves)))
    assert len(drawn) == 2
    c = run["candidates"][0]
    check = {c["rank"]: {"status": "done", "result": {"site_dos": np.full((c["n_atoms"], 400), 0.3), "seconds": 1,
                                                       "dos_match": {"0": {"mae": 0.5}}}}}
    curves = {x["rank"]: candidate_curves(run, x, check.get(x["rank"]), None) for x in run["candidates"]}
    again = zipfile.ZipFile(io.BytesIO(export.run_zip(run, check, curves)))
    assert drawn[2:] == [f"candidate #{c['rank']} · {studio.formula(c['formula'])}"]      # the checked one alone
    svg = next(n for n in again.namelist() if n.startswith(f"candidates/{c['rank']:03d}_") and n.endswith(".svg"))
    assert f"DFT of candidate #{c['rank']}".encode() in again.read(svg) != first.read(svg)
    other = next(n for n in first.namelist() if n.endswith(".svg") and n != svg)
    assert again.read(other) == first.read(other)
    assert export.curves_digest(curves[c["rank"]], "t") != export.curves_digest(curves[c["rank"]], "u")

def app_page(page: str, timeout=60) -> AppTest:
    """A page as the app shows it: app.py's navigation, switched to pages/<page> (a page file run
    on its own hands over to the app's navigation, studio/nav.py)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.switch_page(f"pages/{page}")
    return at


@pytest.mark.parametrize("page", ["1_Runs.py", "2_Verify.py", "3_Model.py"])
def test_other_pages_load(page, tmp_path, monkeypatch):
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = app_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title and at.title[0].value != "Generate structures for a target DOS"


def test_settings_survive_a_detour_to_a_dos_file_and_back():
    """A DOS file not yet uploaded stops the page above the settings: the candidates asked for and
    the mode chosen are still there on coming back (Streamlit drops undrawn widgets' state)."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    next(n for n in at.number_input if n.key == "n_cand").set_value(5).run()
    next(r for r in at.radio if r.key == "mode").set_value("masked").run()
    next(r for r in at.radio if r.key == "target_src").set_value("A DOS file (CSV)").run()
    assert not [n for n in at.number_input if n.key == "n_cand"]            # the detour: settings not drawn
    next(r for r in at.radio if r.key == "target_src").set_value("A site of a material").run()
    assert not at.exception, [e.value for e in at.exception]
    assert next(n for n in at.number_input if n.key == "n_cand").value == 5
    assert next(r for r in at.radio if r.key == "mode").value == "masked"


def test_the_target_source_and_settings_survive_a_visit_to_another_page(tmp_path, monkeypatch):
    """The walk: after the Runs page, Generate came back on "A site of a material" with the example's
    target, the DOS file's run gone. The form's widgets are kept by every page's run (nav.run_app)."""
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(APP, default_timeout=120).run()
    next(n for n in at.number_input if n.key == "n_cand").set_value(5).run()
    next(r for r in at.radio if r.key == "target_src").set_value("A DOS file (CSV)").run()
    at.switch_page("pages/1_Runs.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.switch_page("pages/generate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert next(r for r in at.radio if r.key == "target_src").value == "A DOS file (CSV)"
    assert at.session_state["n_cand"] == 5


def test_the_form_survives_a_visit_to_the_verify_page(tmp_path, monkeypatch):
    """The walk: a visit to Verify (its panel refreshes itself every 2 s) reset the form, and the
    next Generate would have started DFT checks of the example's Au3Ni. The form's widgets keep
    their values for the session (persist_state="session"), whatever page runs in between."""
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.radio(key="mode").set_value("masked").run()
    next(n for n in at.number_input if n.key == "n_cand").set_value(5).run()
    at.switch_page("pages/2_Verify.py").run()
    assert not at.exception, [e.value for e in at.exception]
    at.run()                                     # a second run there, as its refresh does
    at.switch_page("pages/3_Model.py").run()
    at.switch_page("pages/generate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="mode").value == "masked" and at.session_state["n_cand"] == 5


def test_the_address_keeps_the_target_across_a_reload():
    """Walk 17: a reload reset the form to Au3Ni. The material and site are written to the address
    (?ref=ID&site=I) and a fresh session opened on it starts there; a DOS file takes them out."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["ref"] == studio.PRESET_ID and at.query_params["site"] == \
        str(at.session_state[f"site_{studio.PRESET_ID}"])
    at.text_input(key="ref_query").set_value("NaCl").run()
    ref = at.selectbox(key="ref_select").value
    at.selectbox(key=f"site_{ref}").set_value(1).run()
    assert (at.query_params["ref"], at.query_params["site"]) == (ref, "1")
    fresh = AppTest.from_file(APP, default_timeout=120)         # a reload: a new session, the same address
    fresh.query_params.update(ref=ref, site="1")
    fresh.run()
    assert not fresh.exception, [e.value for e in fresh.exception]
    assert fresh.selectbox(key="ref_select").value == ref and fresh.selectbox(key=f"site_{ref}").value == 1
    assert fresh.text_input(key="ref_query").value == "NaCl"
    # the mode too (walk 18: a reload brought back the default mode)
    at.radio(key="mode").set_value("fixed_type").run()
    assert at.query_params["mode"] == "fixed_type"
    again = AppTest.from_file(APP, default_timeout=120)
    again.query_params.update(ref=ref, site="1", mode="fixed_type")
    again.run()
    assert again.radio(key="mode").value == "fixed_type" and not again.exception
    # an address naming no labelled material, or no site, opens the example as before
    odd = AppTest.from_file(APP, default_timeout=120)
    odd.query_params.update(ref="mp-0", site="x", mode="everything")
    odd.run()
    assert odd.selectbox(key="ref_select").value == studio.PRESET_ID and odd.radio(key="mode").value == studio.SHIPPED.mode
    at.radio(key="target_src").set_value("A DOS file (CSV)").run()
    assert "ref" not in at.query_params and "site" not in at.query_params


def test_the_target_s_adjustments_start_afresh_for_another_target():
    """Walk 17: a shift set for one file applied to the next without a word. The knobs belong to one
    target: another site starts from its curve as given; the same site keeps them."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.slider(key="shift").set_value(1.0).run()
    at.slider(key="scale").set_value(1.5).run()
    window = next(s for s in at.slider if s.key.startswith("window_"))
    window.set_value((-8.0, 0.0)).run()
    assert not at.exception, [e.value for e in at.exception]
    site_key = f"site_{studio.PRESET_ID}"
    at.selectbox(key=site_key).set_value((at.session_state[site_key] + 1) % 4).run()
    assert not at.exception, [e.value for e in at.exception]
    assert (at.slider(key="shift").value, at.slider(key="scale").value) == (0.0, 1.0)
    assert next(s for s in at.slider if s.key.startswith("window_")).value == (-10.0, 10.0)
    at.slider(key="shift").set_value(-0.5).run()
    at.run()
    assert at.slider(key="shift").value == -0.5


def test_the_energies_compared_can_be_narrowed_as_the_cli_window_does():
    """"Compare on E − E_F": the example's Ni site compared on its occupied states alone; the known
    sites say so; a range under 2 eV is refused with the whole grid kept."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    picker = next(s for s in at.slider if s.key.startswith("window_"))
    assert picker.value == (-10.0, 10.0)
    picker.set_value((-8.0, 0.0)).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith("MAE and cosine on −8…0 eV") for c in at.caption)
    next(s for s in at.slider if s.key.startswith("window_")).set_value((-1.0, 0.0)).run()
    assert any("Compare on at least 2 eV" in w.value for w in at.warning)
    assert not any(c.value.startswith("MAE and cosine on") for c in at.caption)
    # shifted off the grid: one clear error, not a crash
    next(s for s in at.slider if s.key.startswith("window_")).set_value((-10.0, -8.0)).run()
    next(s for s in at.slider if s.key == "shift").set_value(-1.0).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("leave less than 2 eV on the grid" in e.value for e in at.error)


def test_an_input_that_stops_the_form_keeps_the_run_on_screen_under_one_error(tmp_path, monkeypatch):
    """The walk: a refused file (or switching to a DOS file not yet uploaded) hid everything below,
    the run being viewed included, under two boxes. The form stops; the run stays below one error."""
    run, at = _opened_run(tmp_path, monkeypatch)
    grow = [b.key for b in at.button if b.key and b.key.startswith(f"grow{run['id']}_")]
    assert grow
    at.text_input(key="ref_query").set_value("!!").run()          # no formula, id or elements
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and not at.info
    assert any(c.value.startswith(f"Showing the stored run `{run['id']}`") for c in at.caption)
    assert not [b for b in at.button if b.key == "generate"]       # the form stopped
    at.text_input(key="ref_query").set_value("Au3Ni").run()
    next(r for r in at.radio if r.key == "target_src").set_value("A DOS file (CSV)").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value.startswith(f"Showing the stored run `{run['id']}`") for c in at.caption)


def test_an_upload_is_kept_past_another_page_and_forgotten_when_emptied(monkeypatch):
    """A file uploader comes back empty after a visit to another page: its last file is used (and
    said to be), until another is uploaded, its × is clicked, or it is forgotten."""
    import types

    class Up:
        def __init__(self, name, data):
            self.name, self._data = name, data

        def getvalue(self):
            return self._data
    fake = types.SimpleNamespace(session_state={})
    monkeypatch.setattr(state_mod, "st", fake)

    def run(value, drawn=True):     # one script run: the widget leaves its key when drawn
        out = state_mod.kept_upload("dos_csv", lambda wkey: value)
        if drawn:
            fake.session_state["dos_csv"] = value
        return out
    assert run(None) is None
    assert run(Up("a.csv", b"1")) == ("a.csv", b"1", False)
    fake.session_state.pop("dos_csv")                                   # another page: the widget's state dropped
    assert run(None) == ("a.csv", b"1", True)                           # back: the file, said to be earlier
    assert run(None) == ("a.csv", b"1", True)                           # ... and on the next rerun too
    assert run(Up("b.csv", b"2")) == ("b.csv", b"2", False)             # another upload replaces it
    assert run(None) is None                                            # its × clicked: forgotten
    run(Up("c.csv", b"3"))
    fake.session_state.pop("dos_csv")
    state_mod.forget_upload("dos_csv")
    assert run(None) is None
    # the other target source drawn in between (walk 14): Streamlit kept the widget's file on the
    # server while the browser showed the box empty; a fresh widget key, and the file said earlier
    run(Up("d.csv", b"4"))
    state_mod.hide_upload("dos_csv")
    key = []
    assert state_mod.kept_upload("dos_csv", lambda wkey: key.append(wkey)) == ("d.csv", b"4", True)
    assert key == ["dos_csv_1"]
    state_mod.forget_upload("dos_csv", widget=True)                      # "Forget it": the widget's file too
    assert state_mod.upload_widget_key("dos_csv") == "dos_csv_2" and state_mod.kept_upload("dos_csv", lambda k: None) is None
    # a refused file (forgotten at once, still in its widget), then the other source and back: the
    # widget is renewed too, or its file would come back with no × to remove it
    state_mod.kept_upload("dos_csv", lambda k: Up("bad.csv", b"x"))
    state_mod.forget_upload("dos_csv")
    state_mod.hide_upload("dos_csv")
    key.clear()
    assert state_mod.kept_upload("dos_csv", lambda wkey: key.append(wkey)) is None and key == ["dos_csv_3"]


def test_per_source_dft_checks_are_offered_for_seeded_runs_with_swaps_and_counted_in_the_estimate():
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    box = next(c for c in at.checkbox if c.key == "dft_per_source")
    assert not box.disabled and box.value == certify.PER_SOURCE
    estimate = lambda: next(i.value for i in at.info if i.value.startswith("Estimated time"))
    box.uncheck().run()
    assert "(up to 6)" not in estimate()
    next(c for c in at.checkbox if c.key == "dft_per_source").check().run()
    assert "Then a DFT check of the top 3 and of the best 3 of each kind, the model's draws and the swaps (up to 6)" in estimate()
    next(c for c in at.checkbox if c.key == "seed_subs").uncheck().run()      # one source: nothing to add
    off = next(c for c in at.checkbox if c.key == "dft_per_source_off")       # shown off, not ticked and greyed
    assert off.disabled and off.value is False and "(up to 6)" not in estimate()
    next(c for c in at.checkbox if c.key == "seed_subs").check().run()        # the user's choice is back
    assert next(c for c in at.checkbox if c.key == "dft_per_source").value is True


def test_the_verify_page_shows_a_finished_checks_match_as_a_table_with_units(tmp_path, monkeypatch):
    from dosmatgen_core import dos as dosmod
    from dosmatgen_core.candidates.runs import RunStore, dumps, structure_of
    from dosmatgen_core.scoring.verify import Verifier
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    run = _small_run(tmp_path)
    c = run["candidates"][0]
    dft = np.tile(np.asarray(run["settings"]["targets"][0]) * 0.9, (c["n_atoms"], 1))
    metrics = {0: dosmod.match_metrics(np.asarray(run["settings"]["targets"][0]), dft[0])}
    Verifier(RunStore(tmp_path / "runs.db"))._set(run["id"], c["rank"], status="done", result=dumps(
        {"site_dos": dft, "e_fermi_eV": 5.1, "energy_eV": -1.0, "seconds": 12.0, "dos_match": metrics}))
    at = app_page("2_Verify.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "metric" in d.value.columns).set_index("metric")
    el = structure_of(c)[0].specie.symbol          # the column names the atom that carries the target
    assert table.loc["MAE (states/eV)", f"site 0 ({el})"] == f"{metrics[0]['mae']:.3f}"
    assert not at.json and "DFT DOS against the target" in [x.value for x in at.caption]
    # a structure of one's own: the page says where, in the words of the real uploader and button (walk 18)
    (own,) = [x.value for x in at.caption if x.value.startswith("A structure of your own")]
    import re
    page_text = (Path(APP).parent / "pages" / "generate.py").read_text() + (Path(APP).parent / "studio" / "cell_dft.py").read_text()
    assert all(q in page_text for q in re.findall(r"“(.+?)”", own)) and len(re.findall(r"“(.+?)”", own)) == 2
    # the same check again (drawn cell, as ticked) is not queued: its result is on the page
    at.checkbox(key="relaxed").uncheck().run()
    assert at.button(key="queue").disabled
    assert not any(x.value.startswith("The check below is of the cell") for x in at.caption)
    at.checkbox(key="relaxed").check().run()           # the relaxed cell is another check
    assert not at.button(key="queue").disabled
    # ... and the page says that the check shown is the drawn cell's, not the one the box asks for
    assert ("The check below is of the cell as drawn. Queueing now checks the cell relaxed and shows that one "
            "instead; the check of the cell as drawn stays in the DFT cache and in the labels.") in [x.value for x in at.caption]
    # a target structure's GPAW calculation (the Generate page's button) is listed below the checks
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.scoring.reference_dft import ReferenceChecks
    pu = Structure(Lattice.cubic(3.5), ["Pu"], [[0, 0, 0]])
    ReferenceChecks(Verifier(RunStore(tmp_path / "runs.db"), label_dir=None)).run(pu, "upload:pu.cif#0", "Pu · pu.cif")
    at.run()
    listed = next(d.value for d in at.dataframe if "label id" in d.value.columns)
    assert list(listed["structure"]) == ["Pu · pu.cif"] and list(listed["status"]) == ["failed"]
    assert "no basis set for Pu" in listed["error"][0]


def test_the_verify_page_names_known_candidates_and_offers_the_first_new_one(tmp_path, monkeypatch):
    """A candidate that is the reference (or another known structure) has its DFT label already:
    the choice list says so, and the page starts on the first new candidate."""
    from dosmatgen_core.candidates.runs import RunStore
    from studio.results import candidate_name
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    run = _small_run(tmp_path)
    first, second = run["candidates"][:2]
    first.update(novel=False, matches=studio.PRESET_ID, is_reference=True)
    second.update(novel=True)
    store = RunStore(tmp_path / "runs.db")
    rid = store.start({**run, "id": None, "candidates": [], "baseline": [], "title": "with the reference"})
    store.append(rid, "candidates", [first, second])
    store.finish({**run, "id": rid, "candidates": [first, second]}, "done")
    assert candidate_name(first).endswith("atoms · the reference itself")
    # named as the known-sites table names it, not by its database id
    assert candidate_name({**first, "formula": "Au3Ni", "is_reference": False}).endswith("known (Au3Ni · L1₂ · relaxed)")
    assert candidate_name(second).endswith("atoms")
    into = {"status": "done", "result": {"relaxed": True, "relaxed_into": "mp-1550"}}
    assert candidate_name({**second, "formula": "AlP"}, into).endswith("atoms · relaxed into the known AlP · mp-1550")
    from studio.results import became_text
    assert became_text("mp-1550", {**second, "formula": "AlP"}, {}, 1.02).endswith("cells relaxed from different starts.")
    assert became_text("mp-1550", {**second, "formula": "AlP"}, {}, 0.77).endswith(
        "Its relaxed cell is 23 % smaller in volume than the stored one, so the two curves may differ by more.")
    at = app_page("2_Verify.py")
    at.run()
    next(b for b in at.selectbox if b.key == "verify_run").select(rid).run()
    assert not at.exception, [e.value for e in at.exception]
    pick = next(b for b in at.selectbox if b.key == f"verify_rank_{rid}")       # its own choice per run
    assert pick.value == second["rank"] and any("the reference itself" in o for o in pick.options)


def test_the_runs_page_lists_the_batchs_checks_not_started_yet_as_queued(tmp_path, monkeypatch):
    """The certified flow starts its checks a worker at a time: those still waiting are in the
    Runs page's table too, as queued, beside the ones running or done."""
    from dosmatgen_core.candidates.runs import RunStore, dumps
    from dosmatgen_core.scoring.verify import Verifier
    from studio import state
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    run = _small_run(tmp_path)
    Verifier(RunStore(tmp_path / "runs.db"))._set(run["id"], 1, status="running", result=dumps({}))

    class Batch:
        batches = {}            # state.activity reads which batches are at work

        def progress(self, run_id):
            return {"ranks": [1, 2], "active": True, "cancelled": False} if run_id == run["id"] else None
    monkeypatch.setattr(state, "certifier", lambda path: Batch())
    at = app_page("1_Runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "candidate" in d.value.columns)
    assert table["candidate"].tolist() == ["#1", "#2"] and table["status"].tolist() == ["running", "queued"]


def test_the_generate_page_shows_the_sessions_run_again_after_another_page(tmp_path, monkeypatch):
    """The sidebar's links drop the URL's run: a walk's results and running checks vanished from
    Generate after a look at Verify. The session's run comes back; a run deleted meanwhile does not,
    and nothing is said of it."""
    run, at = _opened_run(tmp_path, monkeypatch)
    at.switch_page("pages/2_Verify.py").run()
    at.query_params.pop("run", None)
    at.switch_page("pages/generate.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["run"] == run["id"] and "5 · Results" in [h.value for h in at.header]
    from dosmatgen_core.candidates.runs import RunStore
    RunStore(tmp_path / "runs.db").delete(run["id"])
    at.switch_page("pages/2_Verify.py").run()
    at.query_params.pop("run", None)
    at.switch_page("pages/generate.py").run()
    assert not at.exception and "run" not in at.query_params
    assert not [i for i in at.info if "No stored run has the id" in i.value]

def test_a_finished_run_survives_a_reload_and_shows_on_the_runs_page(tmp_path, monkeypatch):
    """The run id lives in the URL: a fresh session with ?run=ID shows the stored results."""
    run, at = _opened_run(tmp_path, monkeypatch)
    assert "5 · Results" in [h.value for h in at.header]
    assert any(run["id"] in c.value for c in at.caption)
    runs = app_page("1_Runs.py")
    runs.run()
    assert not runs.exception and "DFT checks of this run" in [h.value for h in runs.subheader]
    listed = next(d.value for d in runs.dataframe if "DOS MAE (predicted)" in d.value.columns)
    mae = listed["DOS MAE (predicted)"].iloc[0]
    assert mae == f"{run['summary']['mean_dos_mae']:.3f}"          # three decimals, as every table


def test_every_kind_of_benchmark_record_is_named_in_words_on_the_model_page():
    kinds = {studio.result_kind(f) for f in studio.RESULTS_DIR.glob("*.json")}
    assert kinds and kinds <= set(studio.RESULT_KINDS), kinds - set(studio.RESULT_KINDS)
    item = {"kind": "truth", "file": "truth-b.json", "date": dt.datetime(2026, 12, 4)}
    assert studio.result_title(item) == "DFT truth: every method checked with GPAW (truth-b.json, 2026-12-04)"
    # the walk: relaxed-prediction.json was shown as the novelty record, relaxed-novelty.json not at all
    latest = {i["file"]: i["kind"] for i in studio.latest_results()}
    assert latest["relaxed-novelty.json"] == "relaxed-novelty" and latest["relaxed-prediction.json"] == "relaxed-prediction"
    assert studio.result_kind(Path("truth-window-c.json")) == "truth-window"
    assert studio.result_kind(Path("truth-a-far.json")) == "truth" and studio.result_kind(Path("seed-moves-b.json")) == "seed-moves"


def test_model_summary_counts_the_source_models_steps_for_a_fine_tune():
    card = {"epoch": 33, "steps": 9009, "n_labelled_structures": 962, "n_train": 17409, "date": "2026-11-26",
            "type_diffusion": "d3pm", "warm_start": {"file": "denoiser.pt", "steps": 14742}}
    line = studio.model_summary(card)
    assert "23.8k steps (9.0k of them fine-tuning)" in line and "962 labelled + 16447 unlabelled" in line


def test_the_results_header_says_when_a_run_was_dos_steered():
    from studio.results import steering_text
    assert steering_text({"particles": 4}) == "DOS steering K = 4 · "
    assert steering_text({"particles": 1}) == "" and steering_text({}) == ""


def test_dos_plot_as_svg_and_png_keeps_legend_and_axes():
    import xml.etree.ElementTree as ET
    y = np.exp(-np.linspace(-10, 10, 400) ** 2)
    curves = [{"y": y, "name": "target: uploaded DOS (a<b>&$x$.csv)", "style": "target"},
              {"y": 0.5 * y, "name": "predicted for candidate #1", "style": "predicted", "band": 0.1 * y},
              {"y": 0.2 * y, "name": "predicted for unconditional sample #1", "style": "baseline"}]
    svg = viz.dos_image(curves, title="Target DOS")
    root = ET.fromstring(svg)                                            # well-formed XML
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(t for t in root.itertext())
    for label in [c["name"] for c in curves] + [viz.ENERGY_AXIS, viz.DOS_AXIS, "Target DOS",
                                                viz.band_name(curves[1])]:
        assert label in text, label                                      # text, not outlines
    png = viz.dos_image(curves, fmt="png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_stability_text_names_the_potential_used():
    from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL, POTENTIALS
    from studio.results import _stability_badge, run_potential
    assert studio.potential_label() == POTENTIALS[DEFAULT_POTENTIAL]
    assert "SevenNet-l3i5" in _stability_badge({"e_above_hull": 0.02, "potential": "sevennet"})
    assert "CHGNet" in _stability_badge({"e_above_hull": 0.02})          # stored before candidates named it
    assert run_potential({"candidates": [{"e_above_hull": None}]}) == POTENTIALS[DEFAULT_POTENTIAL]
    assert run_potential({"candidates": [{"e_above_hull": 0.1, "potential": "sevennet"}]}) == "SevenNet-l3i5"



def test_a_run_that_did_not_ask_for_stability_says_where_to_turn_it_on():
    """The walk: with the default settings every card read "stability: not computed", as if it had failed."""
    from studio.results import _stability_badge
    assert _stability_badge({"e_above_hull": None}, asked=False) == ":gray-background[stability: off (Advanced settings)]"
    assert "not computed" in _stability_badge({"e_above_hull": None})                # a run stored before the setting
    assert "geometry invalid" in _stability_badge({"e_above_hull": None, "hull_note": "not relaxed: geometry invalid"},
                                                  asked=True)


def test_the_dft_time_shown_up_front_comes_from_the_timed_app_flow(tmp_path):
    assert studio.dft_seconds_prior(tmp_path) == studio.DFT_SECONDS_PRIOR       # nothing measured yet
    (tmp_path / "certify-time.json").write_text(json.dumps({"per_site": [
        {"candidates": [{"gpaw_seconds": 20.0}, {"gpaw_seconds": 40.0}]}, {"candidates": [{"gpaw_seconds": None}]}]}))
    assert studio.dft_seconds_prior(tmp_path) == 30.0
    # relaxed checks: the relaxed flow's record, relaxation included; the drawn one until it exists
    assert studio.dft_seconds_prior(tmp_path, relaxed=True) == 30.0
    (tmp_path / "certify-time-relaxed.json").write_text(json.dumps({"per_site": [
        {"candidates": [{"gpaw_seconds": 20.0, "relax_seconds": 10.0}, {"gpaw_seconds": 40.0, "relax_seconds": 30.0}]}]}))
    assert studio.dft_seconds_prior(tmp_path, relaxed=True) == 50.0
    assert studio.dft_seconds_prior(tmp_path, relaxed=False) == 30.0
    (tmp_path / "certify-time.json").write_text("{not json")
    assert studio.dft_seconds_prior(tmp_path, relaxed=False) == studio.DFT_SECONDS_PRIOR


def test_the_estimate_is_scaled_for_other_work_on_the_cpu():
    # fair sharing: two busy threads on two free cores run at the measured rate; beside one more
    # busy process, 3 threads share 2 cores (x1.5); a single-threaded stage needs a core left idle
    assert studio.slowdown(2, 0.0, 2) == 1.0 and studio.slowdown(2, 1.0, 2) == 1.5 and studio.slowdown(2, 6.6, 2) == 4.3
    assert studio.slowdown(1, 1.0, 2) == 1.0 and studio.slowdown(1, 2.0, 2) == 1.5
    assert studio.busy_note(0.5, 2, studio.slowdown(1, 0.5, 2), studio.slowdown(1, 0.5, 2)) == ""
    note = studio.busy_note(6.6, 2, studio.slowdown(2, 6.6, 2), studio.slowdown(2, 6.6, 2))
    assert "other work worth 6.6 busy cores of 2 at this app's priority" in note
    assert "×4.3 for generation, ×4.3 for the DFT checks" in note


def test_a_runs_estimate_counts_its_checks_and_scales_for_the_cpus_other_work():
    """studio.estimate: what the Generate page says and the certify bench records beside the time taken."""
    from studio.estimate import estimate
    quiet = estimate("seeded", 20, 100, 4, substitutions=True, dft_top=3, per_source=True, load=0.0, cpus=2)
    busy = estimate("seeded", 20, 100, 4, substitutions=True, dft_top=3, per_source=True, load=2.0, cpus=2)
    assert quiet.n_checks == 6 and quiet.n_scored == 60 and quiet.gen_x == 1.0 and quiet.dft_x == 1.0
    assert busy.seconds == pytest.approx(quiet.seconds * studio.sampling_slowdown(2.0, 2))
    assert busy.dft_seconds == pytest.approx(quiet.dft_seconds * 2.0)      # two checks share two cores with two busy
    plain = estimate("unconditional", 20, 100, 1, dft_top=3, load=0.0, cpus=2)
    assert plain.n_checks == 0 and plain.dft_seconds == 0.0 and plain.n_scored == 20 and plain.seconds < quiet.seconds


def test_the_estimate_counts_only_what_is_left_of_a_parse_under_way_in_the_background(monkeypatch):
    """Walk 13: a fresh install's page said 16 min while the MP tables were parsed in the background,
    and still 16 min after the parse had ended."""
    from dosmatgen_core.candidates import pipeline
    from studio.estimate import estimate
    monkeypatch.setattr(pipeline, "cold_parts", lambda relaxed, check_novelty=True:
                        ["MP structures parsed", "novelty tables"] if check_novelty else [])
    parse = studio.startup_seconds(["MP structures parsed"])
    assert parse > 60                                   # the record's quiet parse (startup.json)
    for load in (0.0, 2.0):
        fresh = estimate("seeded", 8, 100, 4, substitutions=True, load=load, cpus=2)
        half = estimate("seeded", 8, 100, 4, substitutions=True, load=load, cpus=2,
                        under_way={"MP structures parsed": 60.0})
        done = estimate("seeded", 8, 100, 4, substitutions=True, load=load, cpus=2,
                        under_way={"MP structures parsed": 1e4})
        assert fresh.seconds - half.seconds == pytest.approx(60.0)        # its wall seconds, whatever the load
        assert fresh.seconds - done.seconds == pytest.approx(parse * fresh.gen_x)   # never below nothing


def test_the_sampling_estimate_follows_the_measured_slowdown(tmp_path):
    """Sampling beside busy processes slows more than fair sharing says (torch's threads wait on a
    busy core): the page reads the measured factors, relative to their own quiet run, and goes on
    in a straight line past the last; without the record, fair sharing."""
    rec = {"stages": {"sampling": {"runs": [{"extra_busy": k, "measured_slowdown": x}
                                            for k, x in ((0, 1.1), (1, 2.2), (2, 3.3), (3, 4.4))]}}}
    (tmp_path / "load.json").write_text(json.dumps(rec))
    f = lambda load: studio.sampling_slowdown(load, 2, tmp_path / "load.json")      # noqa: E731
    assert f(0) == 1.0 and f(1) == pytest.approx(2.0) and f(1.5) == pytest.approx(2.5) and f(5) == pytest.approx(6.0)
    assert studio.sampling_slowdown(1.0, 2, tmp_path / "none.json") == studio.slowdown(2, 1.0, 2) == 1.5
    shipped = studio.sampling_slowdown(2.0, 2)                   # the record the bench wrote
    assert shipped > studio.slowdown(2, 2.0, 2) * 0.9


def test_the_verifications_table_reads_as_clock_times_and_formulas():
    from studio.results import verification_rows
    rows = [{"run_id": "r1", "rank": 2, "status": "done", "started": 1796355617.13, "finished": 1796355700.0,
             "error": None, "result": {"relaxed": True, "dos_match": {"0": {"mae": 0.2104, "cosine": 0.9312}}}},
            {"run_id": "r9", "rank": 1, "status": "queued", "started": None, "finished": None, "error": None,
             "result": None}]
    out = verification_rows(rows, {("r1", 2): "LiNiAu2"})
    # the third walk: the table had no match; each check had to be opened to see it
    assert out[0] == {"run": "r1", "candidate": "#2 · Au2LiNi", "status": "done", "DFT MAE (states/eV)": "0.210",
                      "DFT cosine": "0.931", "cell": "relaxed", "started": "2026-12-04 03:40:17 UTC",
                      "finished": "2026-12-04 03:41:40 UTC", "took": "83 s", "error": ""}
    assert out[1]["DFT MAE (states/eV)"] == out[1]["cell"] == ""
    assert out[1]["candidate"] == "#1" and out[1]["started"] == out[1]["took"] == out[1]["error"] == ""
    # a check that relaxed into a known compound says so in the table, not only in the picker (walk 15)
    rows[0]["result"]["relaxed_into"] = "mp-1079181"
    assert verification_rows(rows[:1])[0]["cell"] == "relaxed into the known mp-1079181"


def test_a_cards_match_table_names_each_metric_with_its_unit():
    from dosmatgen_core import dos as dosmod
    from studio.results import METRIC_NAMES, match_rows
    g = np.exp(-((dosmod.GRID + 1.0) ** 2))
    m = {"0": dosmod.match_metrics(g, g * 0.8)}
    rows = {r["metric"]: r for r in match_rows(m)}
    assert set(METRIC_NAMES) == set(m["0"])            # every metric the scorer writes has a name
    assert set(rows) == set(METRIC_NAMES.values())     # one row per metric, named with its unit
    assert rows["MAE (states/eV)"]["site 0"] == f"{m['0']['mae']:.3f}" and rows["cosine"]["site 0"] == "1.000"
    # three decimals always, as text: the walk saw 0.42 beside 0.103 in one column
    assert all(len(v.split(".")[1]) == 3 for r in rows.values() for k, v in r.items() if k != "metric")
    two = match_rows({"2": m["0"], "0": m["0"]})
    assert list(two[0]) == ["metric", "site 0", "site 2"]          # a column per site, in site order
    # the walk: "site 0" alone did not say which atom carries the target
    assert list(match_rows(m, ["Ni", "Al"])[0]) == ["metric", "site 0 (Ni)"]


def test_the_dft_table_ranks_stored_labels_of_known_candidates_beside_fresh_checks():
    from studio.results import dft_table
    t = np.ones(400)
    run = {"settings": {"targets": [t.tolist()]},
           "candidates": [{"rank": 1, "formula": "NiAu3", "dos_mae": 0.2, "site_to_target": {"0": 0}, "matches": "mp-1"},
                          {"rank": 2, "formula": "ClNa", "dos_mae": 0.1, "site_to_target": {"3": 0}}]}
    dft = {2: {"status": "done", "result": {"dos_match": {"3": {"mae": 0.3}}, "relaxed": True, "seconds": 60.0,
                                             "relax_seconds": 5.0}}}
    stored = {1: {0: {"y": t * 1.25, "name": "DFT (stored label …)"}}}
    rows = dft_table(run, dft, stored)
    assert [r["candidate"] for r in rows] == ["#1 (known)", "#2"]        # 0.25 before 0.3
    assert rows[0]["DFT MAE"] == 0.25 and rows[0]["formula"] == "Au3Ni" and rows[0]["cell"].startswith("known")
    assert rows[0]["DFT cosine"] == 1.0                                   # a stored curve 1.25 × the target: its shape
    assert rows[1] == {"candidate": "#2", "formula": "NaCl", "DFT MAE": 0.3, "DFT cosine": None, "predicted MAE": 0.1,
                       "cell": "relaxed", "relax (s)": 5.0, "DFT (s)": 60.0}
    assert dft_table(run, dft) == rows[1:]                               # without stored labels, checks alone
    # a check whose relaxed cell is a known compound says so: it is no new structure's result
    into = {2: {**dft[2], "result": {**dft[2]["result"], "relaxed_into": "mp-22862"}}}
    assert dft_table(run, into)[0]["cell"] == "relaxed into the known NaCl · mp-22862"
    # a seeded run's seeds stand in the table as the lookup, ranked with the candidates, each once
    seed = {"material_id": "mp-7", "formula": "KCl", "site": 1, "element": "Cl", "mae": 0.28, "cosine": 0.91}
    run["candidates"][1]["seed"] = seed
    run["candidates"].append({"rank": 3, "formula": "KBr", "dos_mae": 0.3, "site_to_target": {"1": 0}, "seed": seed})
    rows = dft_table(run, dft, stored)
    assert [r["candidate"] for r in rows] == ["#1 (known)", "known site", "#2"]
    assert rows[1]["DFT MAE"] == 0.28 and rows[1]["DFT cosine"] == 0.91 and "the lookup" in rows[1]["cell"]
    assert rows[1]["predicted MAE"] is None and "mp-7 site 1 (Cl)" in rows[1]["cell"]
    assert dft_table(run, {}) == []                                      # nothing checked yet: no table
    # copies of one known compound show its stored label once (a walk's table held CoPt's three times)
    run["candidates"].append({"rank": 4, "formula": "NiAu3", "dos_mae": 0.4, "site_to_target": {"0": 0}, "matches": "mp-1"})
    stored[4] = stored[1]
    rows = dft_table(run, dft, stored)
    assert [r["candidate"] for r in rows] == ["#1, #4 (known)", "known site", "#2"]
    # predicted apart, the copies' range (a walk read the dash beside cards of 0.437 and 0.458 as none)
    assert rows[0]["predicted MAE"] == "0.200–0.400" and rows[0]["DFT MAE"] == 0.25


def test_the_3d_key_names_only_the_halos_a_candidate_has():
    from studio.results import COND_COLOUR, FIXED_COLOUR, halo_caption, halo_colours
    assert halo_caption({"site_to_target": {"0": 0}}).startswith("Halos: red = conditioned · atoms in Jmol")
    both = halo_caption({"site_to_target": {"0": 0}, "pinned_sites": [1, 2]})
    assert "red = conditioned, green = pinned" in both and "blue" not in both
    assert halo_caption({"site_to_target": {}}).startswith("atoms in Jmol element colours")
    # fixed-type mode: the conditioned atoms are the fixed ones, and keep the red halo
    fixed = {"site_to_target": {"0": 0}, "fixed_sites": {"0": "Ni"}}
    assert halo_colours(fixed) == {0: COND_COLOUR}
    assert halo_caption(fixed).startswith("Halos: red = conditioned, element fixed · ")
    more = {"site_to_target": {"0": 0}, "fixed_sites": {"0": "Ni", "2": "Au"}}
    assert halo_colours(more) == {0: COND_COLOUR, 2: FIXED_COLOUR}
    assert halo_caption(more).startswith("Halos: red = conditioned, blue = fixed type · ")


def test_a_seeded_runs_count_says_how_many_were_drawn_and_how_many_swapped():
    from studio.results import count_text
    cands = [{"origin": "generator"}] * 8 + [{"origin": "substitution"}] * 5
    assert count_text(cands) == "8 drawn by the generator and 5 substitutions of known structures"
    assert count_text([{"origin": "generator"}]) == "" and count_text([{}]) == ""


def test_the_dos_legend_hangs_below_the_axis_and_the_plot_keeps_its_height():
    from dosmatgen_core import dos as dosmod
    g = np.exp(-((dosmod.GRID + 1) ** 2))
    two = viz.dos_figure([{"y": g, "name": "target", "style": "target"}, {"y": g, "name": "DFT", "style": "dft"}])
    four = viz.dos_figure([{"y": g, "name": "target", "style": "target"},
                           {"y": g, "name": "predicted", "style": "predicted", "band": g * 0.1},
                           {"y": g, "name": "DFT", "style": "dft"}])
    assert two.layout.legend.yanchor == "top" and two.layout.legend.y < 0
    assert four.layout.height - two.layout.height == 2 * 24      # one row per legend entry beyond two


def test_a_cards_legend_wraps_so_that_no_entry_is_cut_at_800_px():
    """A card's plot is about 230 px wide at 800 px: an entry of 50 characters was cut at its edge.
    Wrapped, no line is longer than the card's width, and the plot grows by the extra lines."""
    from dosmatgen_core import dos as dosmod
    from studio.results import CARD_LEGEND_WRAP
    g = np.exp(-((dosmod.GRID + 1) ** 2))
    curves = [{"y": g, "name": "target: DFT label of Au3Ni site 0 (Ni)", "style": "target"},
              {"y": g, "name": "predicted for candidate #12", "style": "predicted", "band": g * 0.1},
              {"y": g, "name": "predicted for unconditional sample #4 (no target, 4 atoms like this one)",
               "style": "baseline"}]
    plain, card = viz.dos_figure(curves), viz.dos_figure(curves, wrap=CARD_LEGEND_WRAP)
    lines = [line for t in card.data if t.showlegend is not False for line in t.name.split("<br>")]
    assert max(map(len, lines)) <= CARD_LEGEND_WRAP
    assert " ".join(lines).replace("  ", " ") == " ".join(t.name for t in plain.data if t.showlegend is not False)
    assert card.layout.height - plain.layout.height == 14 * (len(lines) - sum(t.showlegend is not False for t in card.data))


def test_a_target_known_on_a_window_is_drawn_there_and_the_rest_is_shaded():
    """Outside its window a file's target is not drawn as zeros: the plot shades what the file left
    out, on screen and in the SVG, and the other curves are drawn whole."""
    from dosmatgen_core import dos as dosmod
    g = np.exp(-((dosmod.GRID + 1) ** 2))
    curves = [{"y": g, "name": "target", "style": "target", "window": (-8.0, 0.0)}, {"y": g, "name": "DFT", "style": "dft"}]
    fig = viz.dos_figure(curves)
    y = np.asarray(fig.data[0].y, float)
    known = (dosmod.GRID >= -8.0) & (dosmod.GRID <= 0.0)
    assert np.isnan(y[~known]).all() and np.allclose(y[known], g[known]) and not np.isnan(fig.data[1].y).any()
    spans = sorted((s.x0, s.x1) for s in fig.layout.shapes if s.type == "rect")
    assert spans == [(-10.0, -8.0), (0.0, 10.0)]
    assert viz.UNKNOWN_NOTE in viz.dos_image(curves).decode()
    assert not [s for s in viz.dos_figure(curves[1:]).layout.shapes if s.type == "rect"]


def test_an_unconditional_run_names_no_guidance_weight():
    from studio.results import guidance_text
    assert guidance_text({"mode": "unconditional", "guidance": 1.0}) == ""
    assert guidance_text({"mode": "seeded", "guidance": 2.0}) == "w = 2.0 · "


def test_seeds_follow_the_known_sites_tables_order(app, monkeypatch):
    from dosmatgen_core.candidates.jobs import JobManager
    sent = []

    def capture(self, req, *a, **kw):        # the request as the page builds it; nothing is run
        sent.append(req)
        raise ValueError("captured")
    monkeypatch.setattr(JobManager, "submit", capture)
    assert app.radio(key="known_by").value == studio.SHIPPED.seed_by
    app.radio(key="known_by").set_value("cosine").run()
    app.button(key="generate").click().run()
    assert sent and sent[-1].mode == "seeded" and sent[-1].seed_by == "cosine"
    assert sent[-1].reference_id == studio.PRESET_ID == sent[-1].seed_exclude[0]     # the preset's reference
    app.radio(key="known_by").set_value("mae").run()
    app.button(key="generate").click().run()
    assert sent[-1].seed_by == "mae"


def test_grow_from_a_candidate_seeds_the_next_round_with_its_checked_cell(tmp_path, monkeypatch):
    """A card's "Grow from this candidate": the seeded mode grown from that candidate alone (its
    DFT-checked cell once it has one, read in its own site order, its conditioned atom carrying the
    target); "Grow from the known sites instead" goes back to the search's seeds."""
    from dosmatgen_core.candidates.runs import RunStore, dumps
    from dosmatgen_core.scoring.verify import Verifier
    from dosmatgen_core.structures import atoms_from_cif
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    run = _small_run(tmp_path)
    c = run["candidates"][0]
    drawn = atoms_from_cif(c["cif"])
    checked = drawn.copy()
    checked.set_cell(drawn.cell.array * 1.03, scale_atoms=True)          # the relaxed cell DFT checked
    buf = io.BytesIO()
    checked.write(buf, format="cif")
    cif = buf.getvalue().decode()
    result = {"site_dos": np.zeros((c["n_atoms"], 400)), "seconds": 1.0, "relaxed": True, "cif": cif,
              "dos_match": {"0": {"mae": 0.234, "cosine": 0.5}}}
    Verifier(RunStore(tmp_path / "runs.db"))._set(run["id"], c["rank"], status="done", result=dumps(result))

    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = run["id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert [m.value for m in at.metric if m.label == "DFT MAE, best new (states/eV)"] == ["0.234"]   # DFT beside the predicted
    grow = [b for b in at.button if b.key and b.key.startswith(f"grow{run['id']}_{c['rank']}_")]
    assert len(grow) == 1
    grow[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.radio(key="mode").value == "seeded"
    banner = [i.value.replace("\\", "") for i in at.info if "Growing from" in i.value]      # markdown escapes off
    assert len(banner) == 1 and "relaxed, DFT-checked" in banner[0] and "DFT MAE 0.234" in banner[0]
    # the request grows from the checked cell alone, in its own site order, at its volume
    from dosmatgen_core.candidates.jobs import JobManager
    sent = []

    def capture(self, req, *a, **kw):        # the request as the page builds it; nothing is run
        sent.append(req)
        raise ValueError("captured")
    monkeypatch.setattr(JobManager, "submit", capture)
    at.button(key="generate").click().run()
    assert sent and sent[-1].mode == "seeded" and len(sent[-1].grow_from) == 1
    (seed,) = sent[-1].seeds()
    assert seed.hit.site == 0 and seed.source == "DFT" and seed.hit.mae == 0.234
    assert seed.crystal.numbers.tolist() == checked.numbers.tolist()
    assert np.allclose(seed.crystal.lattice, checked.cell.array, atol=1e-4)
    assert np.allclose(seed.crystal.frac % 1.0, checked.get_scaled_positions() % 1.0, atol=1e-4)
    at.button(key="seed_known").click().run()
    assert not [i for i in at.info if "Growing from" in i.value]
    at.button(key="generate").click().run()
    assert sent[-1].mode == "seeded" and sent[-1].grow_from == []


def test_growing_a_candidate_of_another_targets_run_aims_at_that_runs_target(tmp_path, monkeypatch):
    """A run opened by its link while the form holds another target (the walk: a GaP P run under
    the example's Au3Ni Ni): its card's grow button grows towards the run's own target, as the Runs
    page does, not the form's, and leaves the form as it was."""
    from dosmatgen_core.candidates.jobs import JobManager
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    au = open_db(studio.DB_URL).get(studio.PRESET_ID).site_dos[1]          # the form holds Ni (site 0)
    req = Request(mode="masked", n_atoms=4, targets=[au.tolist()], cond_sites=[0], n_candidates=2, steps=5,
                  title="target: DFT label of Au3Ni site 1 (Au)")
    run = run_generation(req, load_model(studio.MODEL_PATH), load_predictor(studio.PREDICTOR_PATH),
                         store=RunStore(tmp_path / "runs.db"), check_novelty=False)
    sent = []

    def capture(self, req, *a, **kw):        # the request as the page builds it; nothing is run
        sent.append(req)
        raise ValueError("captured")
    monkeypatch.setattr(JobManager, "submit", capture)
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = run["id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    mode = at.radio(key="mode").value
    c = run["candidates"][0]
    next(b for b in at.button if b.key and b.key.startswith(f"grow{run['id']}_{c['rank']}_")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(sent) == 1 and sent[0].mode == "seeded" and len(sent[0].grow_from) == 1
    assert np.allclose(sent[0].targets[0], au) and "site 1 (Au)" in sent[0].title
    assert at.radio(key="mode").value == mode and not [i for i in at.info if "Growing from" in i.value]


def test_a_cancelled_run_opens_with_its_scored_candidates_and_says_it_was_cancelled(tmp_path, monkeypatch):
    """A run cancelled while it was being scored is kept (the Generate page says so) with the
    candidates scored before the cancel and no summary: the Runs page and its link open it, show
    those candidates and say that they are not ranked."""
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.sampling.sampler import Cancelled
    from dosmatgen_core.scoring.predictor import load_predictor
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    store = RunStore(tmp_path / "runs.db")
    ni = open_db(studio.DB_URL).get(studio.PRESET_ID)
    req = Request(mode="masked", n_atoms=4, targets=[ni.site_dos[0].tolist()], cond_sites=[0], n_candidates=6,
                  steps=5, baseline=False, title="target: Ni, cancelled")
    with pytest.raises(Cancelled):         # stopped once the first chunk is scored and kept
        run_generation(req, load_model(studio.MODEL_PATH), load_predictor(studio.PREDICTOR_PATH), store=store,
                       check_novelty=False, cancel=lambda: any(r["candidates"] for r in store.list()))
    (row,) = store.list()
    run = store.get(row["id"])
    assert run["status"] == "cancelled" and run["summary"] == {} and 0 < len(run["candidates"]) < 6
    n = len(run["candidates"])
    for at in (app_page("1_Runs.py"), AppTest.from_file(APP, default_timeout=180)):
        at.query_params["run"] = run["id"]
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(w.value == f"Run {run['id']} was cancelled: the {n} candidate{'s' * (n != 1)} scored before that "
                   "are shown in the order they were drawn, not ranked." for w in at.warning)
        assert any(m.label == "Valid, no atoms pressed" and m.value.endswith(f"/{n}") for m in at.metric)
    runs = app_page("1_Runs.py")
    runs.run()
    listed = next(d.value for d in runs.dataframe if "title" in d.value.columns)
    assert listed["status"].tolist() == ["cancelled"] and listed["candidates"].tolist() == [n]
    assert listed["mode"].tolist() == ["new structure"]


def test_the_verify_page_on_a_run_without_candidates_and_on_a_running_check(tmp_path, monkeypatch):
    """A run cancelled before any candidate was scored has nothing to check, and says so; a check
    that is running says for how long, beside the usual time."""
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.scoring.verify import Verifier
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    store = RunStore(tmp_path / "runs.db")
    empty = {"title": "cancelled early", "settings": {"seed": 1, "targets": []}, "summary": {}, "candidates": [],
             "baseline": []}
    rid = store.start(empty)
    store.finish({**empty, "id": rid}, "cancelled")
    at = app_page("2_Verify.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(f"Run {rid} has no candidates to check: it was cancelled before any was scored." in i.value
               for i in at.info), [i.value for i in at.info]
    run = _small_run(tmp_path)
    # the page opens on the newest run that has candidates, not on one with nothing to check
    later = store.start({**empty, "id": None, "title": "still generating"})
    at = app_page("2_Verify.py")
    at.run()
    assert at.selectbox(key="verify_run").value == run["id"] and later != run["id"]
    Verifier(store)._set(run["id"], 1, status="running", started=time.time() - 200)
    at = app_page("2_Verify.py")
    at.session_state["verify_run"] = run["id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(i.value.startswith("Running for 3 min") and "small cells usually take about" in i.value for i in at.info), \
        [i.value for i in at.info]


def test_deleting_a_run_unticks_the_confirmation_and_a_running_run_cannot_be_deleted(tmp_path, monkeypatch):
    """The walk: after a delete the box stayed ticked for the next run opened (one more click deleted
    it), and a run still generating came back when its job ended."""
    from dosmatgen_core.candidates.runs import RunStore
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    first, second = _small_run(tmp_path), _small_run(tmp_path)
    at = app_page("1_Runs.py")
    at.run()
    at.selectbox(key="open_run").set_value(first["id"]).run()
    at.checkbox(key="confirm_delete").check().run()
    at.button(key="delete").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Run {first['id']} deleted." in [m.value for m in at.success]
    assert at.checkbox(key="confirm_delete").value is False and at.button(key="delete").disabled
    assert RunStore(tmp_path / "runs.db").ids() == [second["id"]]
    # a run still generating (stored as running by this live process) is refused, and says why
    store = RunStore(tmp_path / "runs.db")
    live = store.start({**second, "id": None, "status": "running", "candidates": [], "baseline": [], "title": "live"})
    at = app_page("1_Runs.py")
    at.run()
    at.selectbox(key="open_run").set_value(live).run()
    assert at.checkbox(key="confirm_delete").disabled and at.button(key="delete").disabled
    assert any("cannot be deleted now: it is still generating" in c.value for c in at.caption)
    # no zip of a run with no candidate yet, and its checks are said to start when it ends (walk 8)
    assert not [b for b in at.get("download_button") if "whole run" in b.proto.label]
    assert any("the DFT checks of its top candidates start when it ends" in c.value for c in at.caption)


def test_the_runs_page_names_stopped_checks_and_follows_what_runs(tmp_path, monkeypatch):
    """Walk 9: after "Stop the DFT checks" the check that had not started vanished from the Runs
    page's table; and the page showed four checks running minutes after they had landed. A stopped
    check is named; the page ticks (and redraws on a change) only while a run generates or a check
    is queued or running."""
    from dosmatgen_core.candidates.runs import dumps
    from dosmatgen_core.scoring.certify import Batch
    from studio import state
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    run = _small_run(tmp_path)
    v = state.verifier(str(tmp_path / "runs.db"))
    assert not state.busy(state.activity())
    v._set(run["id"], 1, status="running")
    before = state.activity()
    assert state.busy(before)
    c = run["candidates"][0]
    v._set(run["id"], 1, status="done", result=dumps({"site_dos": np.zeros((c["n_atoms"], 400)), "seconds": 1.0,
                                                     "dos_match": {"0": {"mae": 0.5, "cosine": 0.5}}}))
    assert state.activity() != before and not state.busy(state.activity())
    b = Batch(run["id"], [1, 2], 60.0)          # between a batch's last check and its next round: still busy
    state.certifier(str(tmp_path / "runs.db")).batches[run["id"]] = b
    assert state.busy(state.activity())
    b.finished = True
    b.cancel_flag.set()
    at = app_page("1_Runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "candidate" in d.value.columns)
    assert list(table["status"]) == ["done", "stopped before it started"] and list(table["candidate"]) == ["#1", "#2"]
    # the Generate page's cards say it too, at once (walk 18: "DFT queued" until a later redraw)
    gen = AppTest.from_file(APP, default_timeout=120)
    gen.query_params["run"] = run["id"]
    gen.run()
    assert not gen.exception, [e.value for e in gen.exception]
    assert sum("DFT check stopped before it started" in m.value for m in gen.markdown) == 1


def test_the_dft_table_shows_three_decimals_and_a_dash_for_nothing():
    from studio.results import table_text
    assert table_text("DFT MAE", 0.1) == "0.100" and table_text("DFT cosine", 0.26) == "0.260"
    assert table_text("predicted MAE", None) == "—" and table_text("DFT (s)", "") == "—"
    assert table_text("DFT (s)", 12.5) == "12.5" and table_text("cell", "relaxed") == "relaxed"


def test_a_strained_or_polymorphic_new_cell_says_it_may_relax_into_a_known_one():
    """The walk: a distorted rock salt (Na–Cl 1.99 Å) read 'geometry valid · novel' with no word that
    an unrelaxed cell of a known composition may relax back into it."""
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.scoring.evaluate import evaluate_candidates
    from studio.results import as_drawn_text
    rock = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4,
                     [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, 0, 0], [0, .5, 0], [0, 0, .5], [.5, .5, .5]])
    bent = rock.copy()
    bent.translate_sites([0], [0.19, 0.0, 0.0])           # one Na pushed towards a Cl: 1.75 Å
    (ev,) = evaluate_candidates([bent], [{}], None, db_url=studio.DB_URL)
    assert ev["structurally_valid"] and ev["novel"]
    assert ev["shortest_contact"]["pair"] == "Cl–Na" and ev["shortest_contact"]["ratio"] < 0.8
    assert ev["same_formula_n"] >= 1 and ev["same_formula"]
    text = as_drawn_text({**ev, "formula": "NaCl"})
    assert text.startswith("New as drawn, but unrelaxed: its closest contact, Cl–Na at ")
    assert "known structure" in text and "NaCl" in text and "may relax into a known structure" in text
    # an unstrained cell of a new composition has nothing to say; a known one is not 'new as drawn'
    assert as_drawn_text({"novel": True, "formula": "X", "shortest_contact": {"pair": "A–B", "distance": 2.8,
                                                                             "ratio": 1.05}, "same_formula_n": 0}) == ""
    assert as_drawn_text({"novel": False, "formula": "NaCl"}) == ""
    # the badge beside it says "strained" too (the walk: a green "geometry valid" beside the note)
    from studio.results import _geometry_badge
    ratio = ev["shortest_contact"]["ratio"]
    words = "pressed, passes only the 0.5 Å check" if ratio < 0.7 else "strained"
    assert _geometry_badge(ev) == f":orange-background[Cl–Na at {ratio:.0%} of the covalent radii: {words}]"
    # pressed (below 70 %: ranked last) and strained (below 80 %) read apart (walk 18: one wording for both)
    def at(r):
        return _geometry_badge({"structurally_valid": True, "shortest_contact": {"pair": "O–Ti", "ratio": r}})
    assert at(0.62) == ":orange-background[O–Ti at 62% of the covalent radii: pressed, passes only the 0.5 Å check]"
    assert at(0.71) == ":orange-background[O–Ti at 71% of the covalent radii: strained]"
    assert at(0.85) == ":green-background[geometry valid]"
    rock_ev = evaluate_candidates([rock], [{}], None, check_novelty=False)[0]
    assert _geometry_badge(rock_ev) == ":green-background[geometry valid]"
    assert _geometry_badge({"structurally_valid": False}) == ":red-background[geometry invalid]"


def test_a_run_says_how_it_was_built():
    """The walk: neither the results header nor the Runs table said which template, pins or fixed
    element a run used, and the mode column showed code names."""
    assert studio.build_text({"mode": "template", "template_id": "mp-22862", "strength": 0.3, "pinned": [1, 3],
                              "cond_sites": [0], "fixed": {}}) == \
        "template mp-22862 at strength 0.3, atoms 1, 3 pinned, atom 0 carrying the target"
    # with its atoms stored (every run's template is), named by formula as elsewhere
    assert studio.build_text({"mode": "template", "template_id": "mp-22862", "template": {"numbers": [11, 17]},
                              "strength": 0.3}) == "template NaCl · mp-22862 at strength 0.3"
    assert studio.build_text({"mode": "fixed_type", "n_atoms": 4, "cond_sites": [0, 2], "fixed": {"0": "Ni", "2": "Ni"}}) \
        == "new structures of 4 atoms, atoms 0, 2 carrying the target, atom 0 fixed to Ni, atom 2 fixed to Ni"
    assert studio.build_text({"mode": "seeded", "n_seeds": 3, "strength": 0.5, "fix_element": True}) == \
        "grown from the 3 known sites closest to the target, strength 0.5, the matching atom's element kept"
    assert studio.build_text({"mode": "seeded", "grow_from": [{}], "strength": 0.5}).startswith("grown from a candidate")
    assert set(studio.MODE_WORDS) == {"seeded", "masked", "fixed_type", "template", "unconditional"}


def test_a_cancelled_run_in_the_runs_table_has_a_dash_not_none():
    """The walk: a run cancelled before scoring showed 'None' in the valid column; times had no zone."""
    from studio.results import RUNS_TABLE_NOTE, runs_table, shown
    row = {"id": "c", "title": "t", "created": 0.0, "mode": "seeded", "status": "cancelled", "candidates": 0,
           "summary": {}}
    (r,) = shown(runs_table([row], {"c": {"checks": 0, "best_new_mae": None, "best_new_cosine": None}}))
    assert r["valid"] == "—" and r["DOS MAE (predicted)"] == "—" and r["when"] == "1970-01-01 00:00"
    assert "None" not in str(r.values()) and "UTC" in RUNS_TABLE_NOTE and "states/eV" in RUNS_TABLE_NOTE
    assert r["compared on"] == "−10…10 eV"
    # the mode next to the id, the numbers after it (walk 17: at 1024 px runs were told apart by ids alone)
    assert list(r)[:3] == ["id", "mode", "GPAW checks"] and r["mode"] == "grown from known sites"


def test_the_runs_table_says_which_energies_each_run_compared_on(tmp_path):
    """A run of a DOS file's occupied states is not comparable number for number with a whole-grid
    one: the store lists its window and the table says it."""
    from dosmatgen_core.candidates.runs import RunStore
    from studio.results import runs_table
    store = RunStore(tmp_path / "runs.db")
    for w in (None, [-10.0, 0.4762]):
        store.save({"title": "t", "settings": {"seed": 1, "mode": "seeded", "targets": [[0.0] * 400], "window": w},
                    "summary": {}, "candidates": [], "baseline": []})
    listed = store.list()
    assert sorted(str(r["window"]) for r in listed) == ["None", "[-10.0, 0.4762]"]
    none = {"checks": 0, "best_new_mae": None, "best_new_cosine": None}
    rows = runs_table(listed, {r["id"]: none for r in listed})
    assert sorted(r["compared on"] for r in rows) == ["−10…0.48 eV", "−10…10 eV"]


def test_too_few_steps_for_new_cells_is_said_before_and_after_the_run():
    """A walk: 10 denoising steps in "New structure" gave 0 of 4 valid cells and a predicted mean
    over them, with no word. The form says so under the steps; a run with most cells invalid too."""
    from studio.results import invalid_text
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.radio(key="mode").set_value("masked").run()
    assert not any("denoising steps most new cells" in w.value for w in at.warning)
    at.select_slider(key="steps").set_value(10).run()
    assert any(w.value.startswith("At 10 denoising steps most new cells come out invalid") for w in at.warning)
    at.radio(key="mode").set_value("seeded").run()             # a seed keeps a sound cell
    assert not any("denoising steps most new cells" in w.value for w in at.warning)
    run = {"summary": {"n": 4, "structurally_valid": 0}, "settings": {"mode": "masked", "steps": 10}}
    assert invalid_text(run).startswith("Only 0 of 4 candidates have a valid geometry") and "use 50 or more" in invalid_text(run)
    assert "Check each card" in invalid_text({**run, "settings": {"mode": "seeded", "steps": 10}})
    assert invalid_text({**run, "summary": {"n": 4, "structurally_valid": 2}}) == ""


def test_runs_of_one_target_read_apart_by_their_settings(tmp_path):
    """The walk: runs towards one target shared a title and read alike in the Runs table. Each row
    says how its run was made; the stored target curves are not read for it."""
    from dosmatgen_core.candidates.runs import RunStore
    from studio.results import runs_table
    store = RunStore(tmp_path / "runs.db")
    base = {"mode": "seeded", "targets": [[0.1] * 400], "n_seeds": 3, "strength": 0.3, "n_candidates": 20,
            "steps": 100, "guidance": 2.0}
    for seed, strength in ((0, 0.3), (7, 0.5)):
        store.save({"title": "target: DFT label of Au3Ni site 0 (Ni)", "settings": {**base, "seed": seed, "strength": strength},
                    "summary": {}, "candidates": [], "baseline": []})
    store.save({"title": "t", "settings": {"mode": "unconditional", "targets": [], "n_atoms": 4, "n_candidates": 5,
                                           "steps": 50, "guidance": 2.0, "seed": 1}, "summary": {}, "candidates": [], "baseline": []})
    listed = store.list()
    assert all("targets" not in r["settings"] for r in listed)
    none = {"checks": 0, "best_new_mae": None, "best_new_cosine": None}
    words = [r["settings"] for r in runs_table(listed, {r["id"]: none for r in listed})]
    assert len(set(words)) == 3
    assert ("grown from the 3 known sites closest to the target, strength 0.5 · 20 candidates · 100 steps · "
            "w = 2.0 · seed 7") in words
    assert "unconditional samples of 4 atoms · 5 candidates · 50 steps · seed 1" in words     # nothing guides it


def test_comparing_runs_puts_their_gpaw_checks_beside_the_predicted_numbers(tmp_path, monkeypatch):
    """The walk: Compare repeated the runs' predicted rows only."""
    from dosmatgen_core.candidates.runs import RunStore, dumps
    from dosmatgen_core.scoring.verify import Verifier
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    checked, plain = _small_run(tmp_path), _small_run(tmp_path)
    Verifier(RunStore(tmp_path / "runs.db"))._set(checked["id"], 1, status="done", result=dumps(
        {"cif": checked["candidates"][0]["cif"], "relaxed": True, "site_dos": np.zeros((4, 400)),
         "dos_match": {"0": {"mae": 0.2345, "cosine": 0.8765}}}))
    at = app_page("1_Runs.py")
    at.run()
    at.selectbox(key="open_run").set_value(checked["id"]).run()
    at.multiselect(key="compare").set_value([plain["id"]]).run()
    assert not at.exception, [e.value for e in at.exception]
    # the Runs table, then the Comparison's: the run's id and mode (walk 17: at 1024 px runs were told
    # apart by ids alone), then the DFT numbers (not scrolled out of sight past 'when'), a dash where a
    # run has none, and the predicted ones after; the long title last (the third walk: before them, it
    # pushed mode and time out of sight)
    listed, compared = [d.value for d in at.dataframe if "best new: DFT MAE" in d.value.columns][:2]
    from dosmatgen_core.candidates.words import pressed_count
    for table in (listed, compared):
        assert list(table.columns[:7]) == ["id", "mode", "GPAW checks", "best new: DFT MAE", "best new: DFT cosine",
                                           "DOS MAE (predicted)", "baseline MAE (predicted)"]
        assert table.columns[-1] == "title"
        table = table.set_index("id")
        assert table.loc[checked["id"], "GPAW checks"] == 1 and table.loc[plain["id"], "GPAW checks"] == 0
        assert table.loc[checked["id"], "best new: DFT MAE"] == "0.234"
        assert table.loc[checked["id"], "best new: DFT cosine"] == "0.876"
        assert table.loc[plain["id"], "best new: DFT MAE"] == "—"
        assert table.loc[checked["id"], "valid"] == (f"{checked['summary']['structurally_valid'] - pressed_count(checked)}/"
                                                     f"{len(checked['candidates'])}")
    # and their curves overlaid on the shared target: the checked run's DFT curve, the other's predicted one
    figs = [json.loads(e.proto.spec) for e in at.get("plotly_chart")]
    (fig,) = [f for f in figs if any(str(tr.get("name", "")).startswith("run ") for tr in f["data"])]
    names = [tr["name"] for tr in fig["data"]]
    assert names[0] == "target: DFT label of Au3Ni site 0 (Ni)"
    assert names[1].startswith(f"run {checked['id']}: DFT (relaxed cell) of #1 ") and ", MAE " in names[1]
    assert names[2].startswith(f"run {plain['id']}: predicted of #1 ")
    assert fig["data"][1]["line"]["color"] != fig["data"][2]["line"]["color"]
    assert fig["data"][1]["line"]["dash"] == "solid" and fig["data"][2]["line"]["dash"] == "dot"


def test_compared_runs_share_a_figure_only_when_they_share_a_target():
    """Runs towards different targets are drawn on figures of their own; a run with no target or no
    candidate is named as having nothing to draw; a finished DFT check beats the predictor's top."""
    from studio.results import compare_figures
    rng = np.random.default_rng(0)
    g1, g2 = rng.random(400), rng.random(400)
    cif = ("data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\n_cell_angle_alpha 90\n"
           "_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_label\n"
           "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
           "Ni Ni0 0 0 0 1\nAl Al1 0.5 0.5 0.5 1\n")

    def run(rid, target, ranks=(1, 2)):
        cands = [{"rank": r, "index": r - 1, "formula": "NiAl", "n_atoms": 2, "cif": cif, "site_to_target": {"0": 0},
                  "predicted_dos": np.stack([g1 * 0 + r, g1 * 0]), "novel": True} for r in ranks]
        return {"id": rid, "title": f"target: {rid}", "settings": {"targets": [target.tolist()] if target is not None
                                                                   else []}, "candidates": cands}
    done = {2: {"status": "done", "result": {"site_dos": np.stack([g1, g1]), "dos_match": {"0": {"mae": 0.0}}}}}
    figs, nothing = compare_figures([(run("a", g1), done), (run("b", g2), {}), (run("c", g1), {}),
                                     (run("u", None), {}), (run("e", g1, ranks=()), {})])
    assert nothing == ["u", "e"]
    assert [title for title, _ in figs] == ["target: a", "target: b"]
    (_, first), (_, second) = figs
    assert first[0]["name"] == "target: a" and [c["name"].split(":")[0] for c in first[1:]] == ["run a", "run c"]
    assert first[1]["name"].startswith("run a: DFT of #2 AlNi site 0 (Ni), MAE 0.000, cosine 1.000")
    assert first[2]["name"].startswith("run c: predicted of #1 AlNi site 0 (Ni)")
    assert np.allclose(first[1]["y"], g1) and np.allclose(first[2]["y"], 1.0)
    assert second[0]["name"] == "target: b" and second[1]["name"].startswith("run b: predicted of #1")
    # the drawn runs take the first colours in turn; a run with nothing to draw takes none
    from studio.results import COMPARE_COLOURS
    assert [first[1]["line"]["color"], second[1]["line"]["color"], first[2]["line"]["color"]] == COMPARE_COLOURS[:3]
    again, _ = compare_figures([(run("u", None), {}), (run("c", g1), {})])
    assert again[0][1][1]["line"]["color"] == COMPARE_COLOURS[0]
    # the second walk: a run whose #1 relaxed into a known compound was drawn by #1's predicted curve;
    # its top candidate still new stands in, and a run with none is named as having nothing new
    into = {"status": "done", "result": {"site_dos": np.stack([g1, g1]), "relaxed": True, "relaxed_into": "mp-1",
                                         "dos_match": {"0": {"mae": 0.1}}}}
    (_, curves), = compare_figures([(run("r", g1), {1: into})])[0]
    assert curves[1]["name"].startswith("run r: predicted of #2 ")
    none_new, nothing = compare_figures([(run("k", g1, ranks=(1,)), {1: into})])
    assert none_new == [] and nothing == ["k"]



def test_a_compared_runs_curve_is_never_drawn_in_a_colour_the_app_gives_a_kind_of_curve():
    """The walk: the first compared run's DFT curve came in the predictor's blue (and others in the
    DFT red and the stored label's green), on an app whose colours say what a curve is."""
    from studio.results import COMPARE_COLOURS
    kinds = {p["color"].lower() for p in viz.PALETTE.values()} | {c.lower() for c in viz.SITE_COLOURS.values()}
    assert len(set(COMPARE_COLOURS)) >= 4 and not {c.lower() for c in COMPARE_COLOURS} & kinds


def test_compare_takes_a_runs_best_new_structure_as_its_card_does():
    """The walk: for one seeded Au3Ni run the Comparison table read best DFT MAE 0.244 (a check
    relaxed into a known compound), the overlay 0.128 (the stored label of a copy of a seed: the
    lookup, the same in every run towards that target), and the run's own card 0.316 (new)."""
    from studio.results import compare_caption, compare_figures, dft_summary
    rng = np.random.default_rng(1)
    target, good, fair = rng.random(400), rng.random(400), rng.random(400)
    good = target + 0.01        # the check that relaxed into a known compound, closest to the target
    cif = ("data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\n_cell_angle_alpha 90\n"
           "_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_label\n"
           "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
           "Ni Ni0 0 0 0 1\nAl Al1 0.5 0.5 0.5 1\n")
    cands = [{"rank": r, "index": r - 1, "formula": "NiAl", "n_atoms": 2, "cif": cif, "site_to_target": {"0": 0},
              "predicted_dos": np.stack([target, target]), "novel": r != 1, "matches": "mp-1" if r == 1 else None}
             for r in (1, 2, 3)]
    run = {"id": "s", "title": "target: t", "settings": {"targets": [target.tolist()]}, "candidates": cands}

    def done(y, mae, **extra):
        return {"status": "done", "result": {"site_dos": np.stack([y, y]), "relaxed": True,
                                             "dos_match": {"0": {"mae": mae, "cosine": 0.5}}, **extra}}
    dft = {2: done(good, 0.01, relaxed_into="mp-2"), 3: done(fair, 0.3)}
    assert dft_summary(run, dft) == {"GPAW checks": 2, "best new: DFT MAE": 0.3, "best new: DFT cosine": 0.5}
    (_, curves), = compare_figures([(run, dft)])[0]
    assert curves[1]["name"].startswith("run s: DFT (relaxed cell) of #3 ") and np.allclose(curves[1]["y"], fair)
    # with no check yet, the predictor's top new candidate, not the known #1
    (_, curves), = compare_figures([(run, {})])[0]
    assert curves[1]["name"].startswith("run s: predicted of #2 ")
    assert "left out" in compare_caption(True, []) and "No curve" not in compare_caption(True, [])


def test_a_runs_best_new_mae_and_cosine_are_one_structures():
    """The walk: the Runs table read MAE 0.409 (#2) beside cosine 0.797 (#1's), while the overlay's
    legend gave #2 with cosine 0.757. Both numbers are now the best new structure's."""
    from studio.results import compare_figures, dft_summary
    target = np.random.default_rng(2).random(400)
    cif = ("data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\n_cell_angle_alpha 90\n"
           "_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_label\n"
           "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
           "Ni Ni0 0 0 0 1\nAl Al1 0.5 0.5 0.5 1\n")
    run = {"id": "r", "title": "target: t", "settings": {"targets": [target.tolist()]},
           "candidates": [{"rank": r, "index": r - 1, "formula": "NiAl", "n_atoms": 2, "cif": cif, "novel": True,
                           "site_to_target": {"0": 0}} for r in (1, 2)]}
    dft = {r: {"status": "done", "result": {"site_dos": np.stack([target + d, target]),
                                            "dos_match": {"0": {"mae": m, "cosine": c}}}}
           for r, d, m, c in ((1, 0.45, 0.448, 0.797), (2, 0.41, 0.409, 0.757))}
    assert dft_summary(run, dft) == {"GPAW checks": 2, "best new: DFT MAE": 0.409, "best new: DFT cosine": 0.757}
    (_, curves), = compare_figures([(run, dft)])[0]
    assert curves[1]["name"].startswith("run r: DFT of #2 ")


def test_a_comparison_with_nothing_to_draw_describes_no_curves():
    """Only unconditional runs compared: the caption said what the (absent) curves were."""
    from studio.results import compare_caption
    text = compare_caption(False, ["u1", "u2"])
    assert text.startswith("No curve for runs u1, u2: no target (an unconditional run)") and "solid" not in text


def test_a_copy_of_the_reference_is_named_as_people_read_it():
    """The walk: the card of a draw that came back as the preset said "the reference the target
    came from (L12-Au3Ni-chgnet)", a database id found nowhere else on the page."""
    from studio.results import reference_text
    c = {"is_reference": True, "matches": studio.PRESET_ID, "formula": "NiAu3", "novel": False}
    text = reference_text(c)
    assert f"({studio.material_name(studio.PRESET_ID, 'NiAu3')})" in text and "Au3Ni" in text
    if studio.material_name(studio.PRESET_ID, "NiAu3") != studio.PRESET_ID:
        assert studio.PRESET_ID not in text

def test_the_model_page_explains_its_training_curve():
    """The walk: the curves looked flat from epoch 1, training above validation, with no word why."""
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    card = json.loads(studio.MODEL_PATH.with_suffix(".card.json").read_text())
    log = studio.ROOT / card.get("run_dir", "runs/train/main") / "log.csv"
    if not log.exists():
        pytest.skip("no training log in this checkout")
    df = pd.read_csv(log)
    (cap,) = [c.value for c in at.caption if "lattice, coordinate and atom-type terms" in c.value]
    drawn = [c for c in studio.LOSS_CURVES if c in df]
    assert cap == viz.training_view(df, drawn, card.get("warm_start"))[1] and "can sit below training" in cap



def test_the_predictors_held_out_table_reads_to_three_decimals_with_its_site_count_first():
    """The walk: the table under "Held-out MAE 0.198" read 0.1977, and its site counts sat past the
    cut edge of a half-width table."""
    df = studio.heldout_table({"all": {"cosine": 0.89790, "mae": 0.19769, "mae_ef2": 0.21502, "sites": 2181},
                               "d-block": {"cosine": 0.92712, "mae": 0.24055, "mae_ef2": 0.29710, "sites": 907}})
    assert list(df.columns) == ["sites", "cosine", "MAE (states/eV)", "MAE within ±2 eV of E_F (states/eV)"]
    assert df.loc["all", "MAE (states/eV)"] == 0.198 and df.loc["all", "cosine"] == 0.898
    assert df.loc["all", "sites"] == 2181


def test_the_training_charts_legend_and_axis_are_short_enough_to_read_whole():
    """The walk at 1280 px: the legend showed "validation (crystals with …" and the axis title
    "diffusion loss (lattice + coordinates + types" cut at the top; the chart's legend holds about
    25 characters a name, its axis title about 30."""
    assert all(len(n) <= 25 for n in studio.LOSS_CURVES.values()) and len(studio.LOSS_AXIS) <= 30
    at, spec = _training_chart()
    assert {layer["encoding"]["y"]["title"] for layer in spec["layer"]} == {studio.LOSS_AXIS}
    assert len([c.value for c in at.caption if "lattice, coordinate and atom-type terms" in c.value]) == 1


def _undated_predictors(folder: Path, names=("predictors-0037.json", "predictors-0054.json", "predictors.json")):
    """Records without a date of their own, one modification time for all (a checkout's)."""
    import os
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(json.dumps({"runs": {}, "note": name}))
    for name in names:
        os.utime(folder / name, (1_800_000_000, 1_800_000_000))
    return dt.datetime.fromtimestamp(1_800_000_000, dt.timezone.utc)


def test_undated_records_of_one_checkout_time_are_not_dated_by_it_and_the_highest_numbered_is_latest(tmp_path):
    """The walk: a record without a date was dated by its file's modification time, which a checkout
    sets; the four predictors records tied and the oldest, predictors-0037.json, showed as latest."""
    mtime = _undated_predictors(tmp_path)                # no git here: the date is unknown, not invented
    (item,) = studio.latest_results(tmp_path)
    assert item["file"] == "predictors-0054.json"
    assert item["date"] is None and item["dated_by"] == "unknown" and item["date"] != mtime
    assert studio.date_text(item) == "date unknown" and studio.result_title(item).endswith("(predictors-0054.json, date unknown)")
    # a record's own date wins over any guess, and a dated record is newer than an undated one
    (tmp_path / "predictors-0001.json").write_text(json.dumps({"machine": {"date": "2026-01-01T00:00:00+00:00"}}))
    (item,) = studio.latest_results(tmp_path)
    assert item["file"] == "predictors-0001.json" and item["dated_by"] == "record"


def test_an_undated_record_is_dated_by_the_git_commit_that_wrote_it_not_by_a_later_move(tmp_path):
    import os
    import shutil
    import subprocess
    if not shutil.which("git"):
        pytest.skip("no git")
    repo = tmp_path / "repo"
    _undated_predictors(repo / "bench", ("predictors-0054.json", "predictors-0037.json"))

    def git(*args, when="2026-01-01T00:00:00+00:00"):
        env = dict(os.environ, GIT_AUTHOR_DATE=when, GIT_COMMITTER_DATE=when)
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false", *args],
                       cwd=repo, env=env, check=True, capture_output=True)
    git("init", "-q")
    # written in the other order than their numbers: git knows which is newer
    git("add", "bench/predictors-0054.json")
    git("commit", "-qm", "54", when="2026-01-01T00:00:00+00:00")
    git("add", "bench/predictors-0037.json")
    git("commit", "-qm", "37", when="2026-02-01T00:00:00+00:00")
    git("mv", "bench", "results")                         # a later move (the layout step) writes nothing
    git("commit", "-qm", "move", when="2026-03-01T00:00:00+00:00")
    mtime = _undated_predictors(repo / "results", ())
    for f in (repo / "results").glob("*.json"):
        os.utime(f, (1_800_000_000, 1_800_000_000))
    (item,) = studio.latest_results(repo / "results")
    assert item["file"] == "predictors-0037.json" and item["dated_by"] == "git commit"
    assert item["date"] == dt.datetime(2026, 2, 1, tzinfo=dt.timezone.utc) != mtime
    assert studio.date_text(item) == "2026-02-01 00:00 (git commit)"


def test_the_shipped_predictors_records_carry_their_dates_and_the_newest_is_shown(tmp_path, monkeypatch):
    """The walk: predictors-0037.json (0.230, an earlier predictor) showed as the latest and
    predictors-0054.json was hidden; predictor-gpu-variants.json and semi_supervised.json had the
    same invented date."""
    for name in ("predictors-0037", "predictors-0045", "predictors-0054", "predictors", "predictor-gpu-variants",
                 "semi_supervised"):
        rec = json.loads((studio.RESULTS_DIR / f"{name}.json").read_text())
        assert studio.own_date(rec) is not None and len(rec["commit"]) == 40, name
    latest = {i["kind"]: i for i in studio.latest_results()}
    assert latest["predictors"]["file"] == "predictors-0054.json" and latest["predictors"]["dated_by"] == "record"
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "what it measures" in d.value.columns)
    row = table[table["file"].str.startswith("predictors")]
    assert list(row["file"]) == ["predictors-0054.json"] and list(row["date"]) == ["2026-11-27 04:57"]
    # the page reads the folder the app names: undated records there say so on the page
    mtime = _undated_predictors(tmp_path)
    monkeypatch.setattr(studio, "RESULTS_DIR", tmp_path)
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "what it measures" in d.value.columns)
    assert list(table["file"]) == ["predictors-0054.json"] and list(table["date"]) == ["date unknown"]
    assert mtime.strftime("%Y-%m-%d") not in " ".join(e.label for e in at.expander)


def test_the_model_page_opens_with_where_the_app_stands_by_dft():
    """A newcomer met 34 benchmark sections before the numbers that decide whether a match holds:
    the truth sets' app default beside the lookup, read from the records, come first."""
    from studio.standing import truth_rows
    rows = {r["set"]: r for r in truth_rows(studio.RESULTS_DIR)}
    c = json.loads((studio.RESULTS_DIR / "truth-c.json").read_text())
    assert rows["c"]["targets"] == c["sites"] >= 30
    assert rows["c"]["app: cosine ≥ 0.9"] == c["methods"][c["app_default"]]["share_cosine_0.9_novel_after_relaxation"]
    assert rows["c"]["lookup: DFT MAE"] == c["methods"][c["app_default"]]["lookup_dft_mae_same_sites"]
    assert rows["c"]["bar met"] is (rows["c"]["app: cosine ≥ 0.9"] >= 0.8
                                    and rows["c"]["app: DFT MAE"] <= rows["c"]["lookup: DFT MAE"])
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.subheader[0].value == "Where the app stands, by DFT"
    from studio.standing import verdict
    assert verdict(list(rows.values())) == ("**The bar is met on 0 of 3 sets.** The app's default is below 80% at "
                                            "cosine ≥ 0.9 on sets a, b and an MAE above the lookup's on sets b, c.")
    assert verdict(list(rows.values())) in [m.value for m in at.markdown]
    # the sets are said in words (walk 17), and the words hold for the records: cells of at most 5 atoms
    from studio.standing import STANDING_WORDS
    assert STANDING_WORDS in [c.value for c in at.caption] and "of at most 5 atoms" in STANDING_WORDS
    assert all("--max-atoms 5" in json.loads((studio.RESULTS_DIR / r["record"]).read_text())["command"]
               for r in rows.values())
    shown = at.dataframe[0].value
    assert list(shown["set"]) == list(rows) and list(shown["record"]) == [r["record"] for r in rows.values()]


def test_the_model_page_lists_superseded_records_but_opens_them_only_on_request():
    """Walk 8: 33 benchmark expanders, the superseded among them, were too many for a demo. The
    table lists every kind; the superseded ones' rows open behind a toggle."""
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "what it measures" in d.value.columns)
    old = int((table["status"] == "superseded").sum())
    assert old >= 1 and not [e for e in at.expander if e.label.startswith("superseded: ")]
    current = len(at.expander)
    at.toggle(key="show_superseded").set_value(True).run()
    assert len([e for e in at.expander if e.label.startswith("superseded: ")]) == old
    assert len(at.expander) == current + old

def test_the_predictors_held_out_table_spans_the_page_in_widths_that_fit_800_px():
    """The walk: in half the page's width the 'MAE within ±2 eV of E_F' column showed blank cells at
    1280 px (its numbers sat past the cut edge) and the MAE column was gone at 800 px, where the main
    area is about 470 px wide."""
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    ef2 = studio.METRIC_NAMES["mae_ef2"]
    (held,) = [d for d in at.dataframe if ef2 in d.value.columns]
    assert not [d for col in at.columns for d in col.dataframe if ef2 in d.value.columns]     # not in a half column
    config = json.loads(held.proto.columns)
    shown = ["_index", *held.value.columns]
    assert all(config[c].get("width") for c in shown), config
    assert sum(config[c]["width"] for c in shown) <= 470
    assert all(config[c].get("label") for c in shown) and "E_F" in config[ef2]["label"]


def _training_chart():
    """The Model page run, and its training chart's Vega-Lite spec (skipped without a training log)."""
    at = app_page("3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    charts = at.get("vega_lite_chart")
    if not charts:
        pytest.skip("no training log in this checkout")
    return at, json.loads(charts[0].proto.spec)


def test_the_training_charts_legend_lists_one_curve_a_line_and_its_axis_keeps_its_end_labels():
    """The walk at 800 px: the legend, one row at the chart's foot, ran past the right edge and the
    x-axis' last label was cut."""
    _, spec = _training_chart()
    (layer,) = spec["layer"]
    legend = layer["encoding"]["color"]["legend"]
    assert legend["direction"] == "vertical" and legend["orient"] == "bottom"
    assert layer["encoding"]["x"]["axis"]["labelFlush"] is True


def test_a_known_site_is_named_by_its_formula_even_when_the_listing_lags_the_database(tmp_path, monkeypatch):
    """The walk: with the database rebuilt under a running app, its cached listing lacked a new label,
    and the known-sites table named that row 'gen:c707d13ae5c1d97fe6b9'."""
    from studio import state
    rows = state.reference_rows(studio.DB_URL)
    monkeypatch.setattr(state, "reference_rows", lambda url: [r for r in rows if not r["material_id"].startswith("gen:")])
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    names = [m.value for m in at.markdown if " · site " in m.value and m.value.startswith("**")]
    assert names and any("DFT-checked candidate" in n for n in names), names
    assert not any(n.startswith("**gen:") for n in names), names


def test_a_run_whose_checks_all_landed_on_known_compounds_says_so():
    """The walk: the preset's three checks all relaxed into Au3Ni and the page only said '3 of 3
    done'. It now says none stayed new, and what to change."""
    from studio.results import no_new_text
    target = np.random.default_rng(3).random(400)
    cif = ("data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\n_cell_angle_alpha 90\n"
           "_cell_angle_beta 90\n_cell_angle_gamma 90\nloop_\n_atom_site_type_symbol\n_atom_site_label\n"
           "_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n_atom_site_occupancy\n"
           "Ni Ni0 0 0 0 1\nAl Al1 0.5 0.5 0.5 1\n")
    run = {"id": "r", "settings": {"targets": [target.tolist()], "mode": "seeded"},
           "candidates": [{"rank": r, "index": r - 1, "formula": "NiAl", "n_atoms": 2, "cif": cif, "novel": True,
                           "site_to_target": {"0": 0}} for r in (1, 2)]}

    def done(**extra):
        return {"status": "done", "result": {"site_dos": np.stack([target, target]),
                                             "dos_match": {"0": {"mae": 0.2, "cosine": 0.9}}, **extra}}
    into_known = {1: done(relaxed=True, relaxed_into="mp-1"), 2: done(relaxed=True, relaxed_into="mp-2")}
    text = no_new_text(run, into_known)
    assert text.startswith("None of the 2 checked candidates stayed a new structure")
    assert '"How far from the known structure"' in text and '"Further rounds"' in text
    assert no_new_text(run, {**into_known, 2: done(relaxed=True)}) is None     # one stayed new
    assert no_new_text(run, {}) is None                                          # nothing checked yet


def test_an_intermetallic_card_does_not_claim_a_charge_balance():
    """The walk: 'charge balanced (SMACT)' in green on Au2CuNi, Rh3Sn; it means nothing for metals."""
    from studio.results import _charge_badge
    assert _charge_badge({"formula": "Au2CuNi", "charge_neutral": True}).startswith(":gray-background[intermetallic")
    assert _charge_badge({"formula": "NaCl", "charge_neutral": True}) == ":green-background[some oxidation states balance (SMACT)]"
    assert _charge_badge({"formula": "LiF2", "charge_neutral": False}) == ":red-background[no oxidation states balance (SMACT)]"


def test_a_benchmark_record_reads_as_rows_not_json():
    """The walk: the Model page's benchmark expanders showed dict text ("[{'site': 'mp-10226#1', …")
    and a raw machine dict."""
    listed = studio.record_rows(json.loads((studio.RESULTS_DIR / "truth-c.json").read_text()))
    rows = {r["quantity"]: r["value"] for r in listed}
    units = {r["quantity"]: r.get("unit") for r in listed}       # the walk: 'mae 0.239' had no unit
    assert units["methods · lookup · dft mae best of 3"] == "states/eV"
    assert units["methods · lookup · seconds per site"] == "s" and units["methods · lookup · share cosine 0.9"] == ""
    # the re-check: 'ms mae' is a time, an MAE named a level up keeps its unit, an empty list reads 'none'
    assert studio.quantity_unit("speed · ms mae") == "ms" and studio.quantity_unit("second run s") == "s"
    assert studio.quantity_unit("relaxed vs unrelaxed mae · mean") == "states/eV"
    assert studio.record_rows({"sites without check": []})[0]["value"] == "none"
    assert rows["sites"] == "30" and rows["per site"].endswith("entries (see the file)")
    assert rows["methods · lookup · share cosine 0.9"].count(".") == 1 and len(rows["methods · lookup · share cosine 0.9"]) == 5
    assert rows["machine"].startswith("cpus 2") or rows["machine"].startswith("cpus ")
    assert not any(v.startswith(("[{", "{")) for v in rows.values())


def test_a_cards_view_says_it_is_the_drawn_cell_when_dft_calculated_the_relaxed_one():
    """The walk: on a 'relaxed into known' card the 3D view (drawn cell) and the DFT curve (relaxed
    cell) showed different crystals and nothing said so."""
    from studio.results import view_note
    c = {"formula": "Au3Ni"}
    into = {"status": "done", "result": {"relaxed": True, "relaxed_into": studio.PRESET_ID}}
    assert view_note(c, into).startswith("The view shows the cell as drawn; the DFT curve is of its relaxed cell, "
                                         "which is the known Au3Ni")
    assert "which is" not in view_note(c, {"status": "done", "result": {"relaxed": True}})
    # relaxed into the structure the target came from: named as the reference itself, its curve the target's
    assert ", which is the reference itself (Au3Ni · " in view_note(c, into, {"reference_id": studio.PRESET_ID})
    from studio.results import became_text, cell_text
    became = became_text(studio.PRESET_ID, c, {"reference_id": studio.PRESET_ID})
    assert "its DFT curve is the target's own curve, so it is no new structure with this DOS." in became
    # walk 8: one crystal, two DFT numbers (the check's 0.270, the stored label's 0.244): said why
    assert became.endswith("two GPAW calculations of cells relaxed from different starts.")
    assert cell_text(c, into, {"reference_id": "mp-1"}).startswith("relaxed into the known Au3Ni")
    assert view_note(c, {"status": "done", "result": {"relaxed": False}}) == "" and view_note(c, None) == ""


def test_runs_towards_one_target_are_told_apart_in_the_pickers():
    """The second walk: four runs of one target read alike in Runs' and Verify's pickers."""
    from studio.results import run_label
    r = {"id": "2b288df3f5", "title": "target: DFT label of Au3Ni site 0 (Ni)", "mode": "seeded", "created": 0.0}
    assert run_label(r) == "2b288df3f5 · target: DFT label of Au3Ni site 0 (Ni) · grown from known sites · 01-01 00:00 UTC"


def test_the_known_sites_say_what_the_truth_bench_found_for_a_known_site_this_close(tmp_path):
    """Generation rarely beats a labelled near-twin by DFT and often beats a far one (truth set c):
    the page says which case the target is in, from the bench's own record."""
    rec = {"app_default": "deep", "per_site": [
        {"methods": {"lookup": {"candidates": [{"dft_mae": 0.10}]}, "deep": {"candidates": [{"dft_mae": 0.16}, {"dft_mae": 0.30}]}}},
        {"methods": {"lookup": {"candidates": [{"dft_mae": 0.12}]}, "deep": {"candidates": [{"dft_mae": 0.11}]}}},
        {"methods": {"lookup": {"candidates": [{"dft_mae": 0.25}]}, "deep": {"candidates": [{"dft_mae": 0.21}, {}]}}},
        {"methods": {"lookup": {"candidates": [{"dft_mae": 0.30}]}, "deep": {"candidates": []}}}]}
    path = tmp_path / "truth-c.json"
    path.write_text(json.dumps(rec))
    pairs = studio.truth_pairs(path)
    assert pairs == [(0.10, 0.16), (0.12, 0.11), (0.25, 0.21)]       # a site without a checked candidate left out
    near = studio.lookup_odds(0.08, pairs)
    assert near.startswith("The closest known site is 0.080 states/eV from this target.")
    assert "within 0.15 states/eV, the app's best checked new crystal came closer by DFT on 1 of 2 targets" in near
    far = studio.lookup_odds(0.31, pairs)
    assert "0.2 or more states/eV" in far and "on 1 of 1 targets: new crystals often come closer" in far
    assert studio.lookup_odds(0.17, pairs) == "" and studio.truth_pairs(tmp_path / "none.json") == []
    assert near.endswith("in this band the known site mostly stays ahead: expect new crystals near it rather than closer.")
    # the shipped record gives the page its line
    assert "DFT on" in studio.lookup_odds(0.1, studio.truth_pairs())


def test_the_preset_page_puts_the_truth_benchs_odds_under_the_known_sites(app):
    assert any(c.value.startswith("The closest known site is ") and "truth-c.json" in c.value for c in app.caption)


def test_the_top_of_the_page_leads_to_the_generate_button():
    """The walk: the Generate button sat about 3,000 px down the landing page, and no page named the app."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("(#generate)" in m.value for m in at.markdown)
    (head,) = [h for h in at.header if h.value == "4 · Generate"]
    assert head.proto.anchor == "generate"
    assert any("DOSMatGen Studio" in m.value for m in at.sidebar.markdown)


def test_a_card_whose_check_waits_in_the_batch_says_dft_queued(tmp_path):
    """The walk: while #1 and #2 showed "DFT running", #3, next in the batch, showed nothing."""
    run = _small_run(tmp_path)
    path = tmp_path / "run.json"
    from dosmatgen_core.candidates.runs import dumps
    path.write_text(dumps(run))

    def page(path: str, waiting: list):
        import json
        from studio.results import show_run
        show_run(json.loads(open(path).read()), {}, {}, waiting=set(waiting))
    first = run["candidates"][0]["rank"]
    at = AppTest.from_function(page, args=(str(path), [first]), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    assert sum("DFT queued" in m.value for m in at.markdown) == 1
    at = AppTest.from_function(page, args=(str(path), []), default_timeout=120).run()
    assert not any("DFT queued" in m.value for m in at.markdown)



def test_a_card_whose_check_has_not_started_can_skip_it(tmp_path):
    """Walk 18: only "Stop the DFT checks" (all of them). A card whose check has not started has a
    button that skips that one check (the callback gets its rank); a skipped one says so."""
    run = _small_run(tmp_path)
    path = tmp_path / "run.json"
    from dosmatgen_core.candidates.runs import dumps
    path.write_text(dumps(run))

    def page(path: str, skippable: list, skipped: list):
        import json
        import streamlit as st
        from studio.results import show_run
        show_run(json.loads(open(path).read()), {}, {}, waiting=set(skippable), skippable=set(skippable),
                 not_run={r: "DFT check skipped" for r in skipped},
                 skip=lambda rank: st.session_state.setdefault("asked", []).append(rank))
    first, second = (c["rank"] for c in run["candidates"][:2])
    at = AppTest.from_function(page, args=(str(path), [first], [second]), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    buttons = [b for b in at.button if b.label == "Skip its DFT check"]
    assert [b.key for b in buttons] == [f"skip_{run['id']}_{first}"]
    assert sum("DFT check skipped" in m.value for m in at.markdown) == 1
    buttons[0].click().run()
    assert at.session_state["asked"] == [first]

def test_the_zips_key_follows_a_rescore_and_a_checks_end_not_its_stages():
    """Review: the cached zip kept old predictions after `dosmatgen evaluate`, and was built again at
    each stage of a check (queued, relaxing, GPAW)."""
    from studio.results import zip_key
    run = {"id": "r", "status": "done", "candidates": [{"rank": 1, "dos_mae": 0.2}, {"rank": 2}]}
    key = zip_key(run, {1: {"status": "running", "stage": "relax"}}, {})
    assert zip_key(run, {1: {"status": "running", "stage": "gpaw"}}, {}) == key
    assert zip_key(run, {1: {"status": "done", "finished": 5.0}}, {}) != key
    rescored = {**run, "candidates": [{"rank": 1, "dos_mae": 0.25}, {"rank": 2}]}
    assert zip_key(rescored, {1: {"status": "running", "stage": "relax"}}, {}) != key


def test_a_card_puts_its_dft_match_under_the_predicted_one_once_checked(tmp_path):
    """A walk: after DFT, card #1 still showed only 'Predicted DOS against the target' (MAE 0.096)
    while its check said 0.231, in a badge only. The check's own match table joins it."""
    from dosmatgen_core import dos
    run = _small_run(tmp_path)
    c = next(c for c in run["candidates"] if c["site_to_target"])
    (site, k), = c["site_to_target"].items()
    rows = np.zeros((c["n_atoms"], dos.NPTS))
    rows[int(site)] = 0.5 * np.asarray(run["settings"]["targets"][int(k)])      # half the target: MAE known
    match = {str(site): dos.match_metrics(np.asarray(run["settings"]["targets"][int(k)]), rows[int(site)])}
    path = tmp_path / "run.json"
    from dosmatgen_core.candidates.runs import dumps
    path.write_text(dumps(run))

    def page(path: str, rank: int, match: dict, rows: list, cif: str):
        import json
        from studio.results import show_run
        done = {rank: {"status": "done", "result": {"relaxed": True, "dos_match": match, "site_dos": rows,
                                                    "cif": cif, "seconds": 1.0, "relax_seconds": 1.0}}}
        show_run(json.loads(open(path).read()), done, {})
    at = AppTest.from_function(page, args=(str(path), c["rank"], match, rows.tolist(), c["cif"]),
                               default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    heads = [x.value for x in at.caption if "DOS against the target" in x.value]
    assert any(h.startswith("DFT (GPAW, its relaxed cell) DOS against the target") for h in heads)
    want = f"{match[str(site)]['mae']:.3f}"
    # the run's DFT table holds the number too: the card's own match table must as well
    assert sum(want in t.value.to_string() for t in at.dataframe) >= 2


def test_the_apps_own_dos_csv_can_give_the_target_by_its_column():
    """The walk: the app's DOS CSV (target, predicted, DFT side by side) was refused as a target.
    The page offers its curve columns; the chosen one is the target."""
    e = np.linspace(-10, 10, 81)
    table = ("energy_minus_ef_eV,target_site0,predicted_site0,dft_site0\n" +
             "\n".join(f"{x:.4f},1.0,0.5,{np.exp(-x * x):.6f}" for x in e)).encode()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dos_csv_kept"] = ("cand_dos.csv", table)       # as if uploaded before another page
    at.run()
    next(r for r in at.radio if r.key == "target_src").set_value("A DOS file (CSV)").run()
    assert not at.exception, [e.value for e in at.exception]
    pick = at.selectbox(key="dos_column_cand_dos.csv")
    assert pick.options == ["target_site0", "predicted_site0", "dft_site0"] and pick.value is None
    # none guessed: a question, not an error (walk 18 read a red refusal of the app's own file)
    assert not at.error and any("csv holds 3 curves side by side (target\\_site0, predicted\\_site0, dft\\_site0): "
                                "choose the one to use as the target below." in i.value for i in at.info)
    pick.set_value("dft_site0").run()
    assert not at.exception and not at.error
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("target: uploaded DOS (cand_dos.csv), column dft_site0" in spec for spec in charts)


def test_every_mode_says_what_it_does_under_the_picker():
    """The walk: only the seeded mode was explained on the page; the others relied on a tooltip."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    for mode in ("seeded", "masked", "fixed_type", "unconditional", "template"):
        at.radio(key="mode").set_value(mode).run()
        assert not at.exception, [e.value for e in at.exception]
        first = {"seeded": "Known structures", "masked": "The model builds whole new cells",
                 "fixed_type": "As a new structure", "unconditional": "Plain samples", "template": "A structure you choose"}
        assert sum(c.value.startswith(first[mode]) for c in at.caption) == 1, mode
    assert any("pinned: none" in c.value for c in at.caption)


def test_reruns_share_one_reading_of_the_cpu(app, monkeypatch):
    """The estimate's reading of the other work samples /proc five times (about 0.1 s); the page
    reruns on every widget change, so reruns within a few seconds share one reading."""
    calls = []
    monkeypatch.setattr(studio, "cpu_load", lambda: calls.append(1) or (0.0, 2))
    state_mod.cpu_load.clear()
    app.run()
    app.run()
    assert not app.exception, [e.value for e in app.exception]
    assert len(calls) == 1
    assert any("Estimated time" in i.value for i in app.info)


def test_a_structure_given_as_the_dos_file_is_named_and_sent_to_the_reference_upload():
    """The walk: a CIF uploaded as the DOS file was refused by the uploader itself ("files are not
    allowed"), under the previous file's error. The uploader takes any file; the reader names a
    structure and says where it goes, in one error."""
    src = (Path(APP).parent / "pages" / "generate.py").read_text()
    assert 'type=None, key=wkey' in src
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dos_csv_kept"] = ("nacl.cif", NACL_CL_FIRST.encode())
    at.run()
    next(r for r in at.radio if r.key == "target_src").set_value("A DOS file (CSV)").run()
    assert not at.exception, [e.value for e in at.exception]
    (refused,) = at.error
    assert refused.value.startswith("Could not use nacl\\.cif: this is a crystal structure (CIF), not a DOS table")
    assert "A site of a material" in refused.value
    # a POSCAR's title line ('NaCl rock salt') is no header of curves: one error, no column offered
    poscar = (Path(__file__).parent / "bad_inputs" / "dos_poscar.csv").read_bytes()
    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state["dos_csv_kept"] = ("POSCAR", poscar)
    at.run()
    next(r for r in at.radio if r.key == "target_src").set_value("A DOS file (CSV)").run()
    (refused,) = at.error
    assert "this is a crystal structure (POSCAR)" in refused.value and not refused.value.endswith("column below")
    assert not [b for b in at.selectbox if b.key == "dos_column_POSCAR"]
    # the form stops at the refusal: the intro names the Generate step without a link to a missing section
    assert not [h for h in at.header if h.value == "4 · Generate"]
    assert not any("(#generate)" in m.value for m in at.markdown)
    assert any("**Generate** (4)" in m.value for m in at.markdown)


def test_the_runs_page_opens_the_newest_run_with_results(tmp_path, monkeypatch):
    """The walk: the Runs page opened a run still being generated (on the Generate page), with
    nothing to show and an empty download. It opens the newest run that holds candidates and is
    not generating; the newest one when none is."""
    from dosmatgen_core.candidates.runs import RunStore
    from studio.results import opened_first
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    done = _small_run(tmp_path)
    store = RunStore(tmp_path / "runs.db")
    busy = store.start({"title": "target: still drawing", "settings": {"mode": "masked", "targets": []}})
    runs = store.list()
    assert [r["id"] for r in runs][:2] == [busy, done["id"]] and runs[0]["status"] == "running"
    assert opened_first(runs) == 1 and opened_first(runs[:1]) == 0
    at = app_page("1_Runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="open_run").value == done["id"]


def test_the_valid_count_says_how_many_cells_press_atoms_together():
    """Walk 14: "Valid candidates 10/10" above cards with O–Ti at 35 % of the covalent radii."""
    from dosmatgen_core.cli.generate import ranked_lines
    from studio.results import pressed_text
    run = {"candidates": [{"structurally_valid": True, "shortest_contact": {"pair": "O–Ti", "distance": 0.79, "ratio": 0.35}},
                          {"structurally_valid": True, "shortest_contact": {"pair": "O–Ti", "distance": 1.9, "ratio": 0.86}},
                          {"structurally_valid": False, "shortest_contact": {"pair": "O–O", "distance": 0.3, "ratio": 0.23}}]}
    assert pressed_text(run).startswith("1 of the 2 valid press two atoms below 70% of their covalent radii")
    # the page's big number counts the sound cells alone (walk 17: "8/8" above 7 pressed cells)
    from dosmatgen_core.candidates.words import pressed_count
    assert pressed_count(run) == 1
    assert pressed_text({"candidates": run["candidates"][1:]}) == ""
    # the CLI says it too, under its ranking
    for r, c in enumerate(run["candidates"], 1):
        c.update(rank=r, formula="TiO2", spacegroup={"0.1": "P1"}, novel=True, charge_neutral=True)
    assert f"({pressed_text(run)})" in ranked_lines(run, has_target=False)



def test_a_run_no_closer_than_its_baseline_says_so():
    """Walk 18: a fixed-type run at 0.690 against its baseline's 0.682, with no word."""
    from studio.results import no_better_text
    run = {"settings": {"mode": "fixed_type"}, "summary": {"mean_dos_mae": 0.690, "baseline_mean_dos_mae": 0.682}}
    assert no_better_text(run) == ("By the predictor, these candidates are no closer to the target than unconditional "
                                   "samples of the same sizes (0.690 against 0.682 states/eV): the target did not steer "
                                   "this run. Seeded mode (the default) grows candidates from the known sites closest "
                                   "to the target instead.")
    assert no_better_text({**run, "settings": {"mode": "seeded"}}).endswith("did not steer this run.")
    assert no_better_text({**run, "summary": {"mean_dos_mae": 0.5, "baseline_mean_dos_mae": 0.682}}) == ""
    assert no_better_text({"settings": {"mode": "unconditional"}, "summary": {"mean_dos_mae": None}}) == ""


def test_the_runs_table_counts_valid_cells_as_the_run_s_page_does(tmp_path):
    """The Runs table's "valid" said 3/3 where the run's page said 2/3: the store counts each run's
    pressed cells (evaluate.pressed) and the table leaves them out, as the page's metric does."""
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.candidates.words import pressed_count
    from studio.results import runs_table
    store = RunStore(tmp_path / "runs.db")
    cands = [{"structurally_valid": True, "shortest_contact": {"pair": "O–Ti", "distance": 0.79, "ratio": 0.35}},
             {"structurally_valid": True, "shortest_contact": {"pair": "O–Ti", "distance": 1.9, "ratio": 0.86}},
             {"structurally_valid": True, "shortest_contact": None},
             {"structurally_valid": False, "shortest_contact": {"pair": "O–O", "distance": 0.3, "ratio": 0.23}}]
    run = {"title": "t", "settings": {"seed": 1, "mode": "seeded", "targets": [[0.0] * 400]},
           "summary": {"structurally_valid": 3}, "candidates": cands, "baseline": []}
    store.save(run)
    (listed,) = store.list()
    assert listed["pressed"] == pressed_count(run) == 1
    (row,) = runs_table([listed], {listed["id"]: {"checks": 0, "best_new_mae": None, "best_new_cosine": None}})
    assert row["valid"] == "2/4"


def test_a_target_read_off_the_predictor_says_what_it_is_worth():
    """Walk 14 took an uploaded SrTiO3's predicted Ti curve for a measured target."""
    import json
    from dosmatgen_core.paths import ASSETS
    heldout = json.loads((ASSETS / "predictor.card.json").read_text())["heldout"]
    text = studio.predicted_target_text(heldout, "Ti")
    assert f"off DFT by {heldout['d-block']['mae']:.3f} states/eV" in text and "d-block" in text
    only_all = studio.predicted_target_text({"all": heldout["all"]}, "Ti")      # a card without families: all sites
    assert f"on the {int(heldout['all']['sites'])} held-out sites" in only_all
    # the f block was never labelled: no error figure, an extrapolation (walk 15's Gd)
    gd = studio.predicted_target_text(heldout, "Gd", gpaw_here=False)
    assert "extrapolation with no error to state" in gd and "held-out" not in gd and "GPAW" not in gd
    assert "GPAW on this cell (below)" in text
    assert "not DFT." in studio.predicted_target_text({}, "O")


def test_a_template_run_that_came_back_as_its_template_says_so():
    """Walk 14: 5 of 8 template candidates were BaTiO3 mp-5020 itself, and the page said nothing."""
    from studio.results import template_back_text
    back = {"novel": False, "matches": "mp-5020", "formula": "BaTiO3"}
    run = {"settings": {"mode": "template", "template_id": "mp-5020", "strength": 0.5},
           "candidates": [back] * 5 + [{"novel": True, "matches": None}] * 3}
    text = template_back_text(run)
    assert text.startswith("5 of 8 candidates came back as the template itself (BaTiO3 · mp-5020): at strength 0.5")
    run["candidates"][0] = {"novel": False, "matches": "mp-2998", "formula": "BaTiO3"}
    assert "as known crystals, 4 of them the template itself" in template_back_text(run)
    assert template_back_text({**run, "candidates": [back] + [{"novel": True}] * 3}) == ""
    assert template_back_text({**run, "settings": {"mode": "masked"}}) == ""


def test_two_sites_carrying_one_target_list_it_once_in_the_legend(tmp_path):
    """Walk 17: a masked run with two conditioned sites listed the same target and unconditional
    partner under one name per site, 8 entries. One target entry names both carriers; each site's
    own curves name their site."""
    from dosmatgen_core.candidates.runs import structure_of
    from studio.results import candidate_curves
    run = _small_run(tmp_path)
    c = {**run["candidates"][0]}
    c["site_to_target"] = {"0": 0, "1": 0}
    struct = structure_of(c)
    names = [x["name"] for x in candidate_curves(run, c, None, None)]
    targets = [n for n in names if n.startswith("target")]
    assert targets == [f"target for sites 0 ({struct[0].specie.symbol}), 1 ({struct[1].specie.symbol}): "
                       "DFT label of Au3Ni site 0 (Ni)"]
    assert len(names) == len(set(names))              # no entry twice under one name
