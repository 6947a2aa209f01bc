"""Page logic through streamlit.testing: preset, mode switches, validation messages."""
import os

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from studio import shared as studio

APP = str(studio.ROOT / "app.py")


@pytest.fixture()
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_page_loads_with_all_sections(app):
    heads = [h.value for h in app.header]
    assert heads[:5] == ["1 · Reference material and site", "2 · Target DOS", "3 · Mode", "4 · Settings", "5 · Generate"]
    assert any("Device:" in c.value for c in app.sidebar.caption)


def test_preset_selects_ni_in_au3ni(app):
    app.text_input(key="ref_query").set_value("mp-522").run()
    assert app.selectbox(key="ref_select").value == "mp-522"
    app.button(key="preset").click().run()
    assert app.selectbox(key="ref_select").value == studio.PRESET_ID
    site = app.selectbox(key=f"site_{studio.PRESET_ID}").value
    from dosmatgen_core.labels.reference_db import open_db
    assert open_db(studio.DB_URL).get(studio.PRESET_ID).symbols[site] == "Ni"
    assert not app.exception


def test_mode_switches_show_their_controls(app):
    app.radio(key="mode").set_value("template").run()
    assert app.slider(key="strength").value == 0.5
    assert app.multiselect(key="tpl_cond") is not None
    app.radio(key="mode").set_value("fixed_type").run()
    assert app.text_input(key="fixed_el").value
    app.radio(key="mode").set_value("masked").run()
    assert app.number_input(key="n_atoms").value == 4
    assert not app.exception


def test_generate_without_conditioned_atoms_says_why(app):
    app.multiselect(key="cond_new").set_value([]).run()
    app.button(key="generate").click().run()
    assert any("no atom carries a target DOS" in e.value for e in app.error)


def test_unknown_element_in_fixed_mode_says_why(app):
    app.radio(key="mode").set_value("fixed_type").run()
    app.text_input(key="fixed_el").set_value("Qq").run()
    app.button(key="generate").click().run()
    assert any("unknown element" in e.value for e in app.error)


def test_search_that_matches_nothing_is_explained(app):
    app.text_input(key="ref_query").set_value("Zz9").run()
    assert app.warning or app.info


def test_csv_upload_parsing():
    e = np.linspace(-8, 8, 161)
    g = np.exp(-e ** 2)
    text = "energy,dos\n" + "\n".join(f"{a},{b}" for a, b in zip(e, g))
    out = studio.read_dos_csv(text.encode())
    assert out.shape == (400,) and out.max() == pytest.approx(1.0, abs=0.01)
    with pytest.raises(ValueError, match="NaN"):
        studio.read_dos_csv("1,2\n2,nan\n3,1\n4,1\n5,1\n")
    with pytest.raises(ValueError, match="no numeric rows|empty"):
        studio.read_dos_csv(b"")
    with pytest.raises(ValueError, match="two columns|not two numbers"):
        studio.read_dos_csv("1,2\n2,3\nabc,def\n")


def test_choosing_a_site_plots_its_dos(app):
    app.text_input(key="ref_query").set_value("mp-522").run()      # AuCu: two sites
    box = app.selectbox(key="site_mp-522")
    box.set_value(1).run()
    titles = [c.proto.spec for c in app.get("plotly_chart")]
    assert any("site 1 DOS" in t for t in titles)


@pytest.mark.parametrize("page", ["1_Runs.py", "2_Verify.py", "3_Model.py"])
def test_other_pages_load(page, tmp_path, monkeypatch):
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(str(studio.ROOT / "pages" / page), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title


def test_a_finished_run_survives_a_reload(tmp_path, monkeypatch):
    """The run id lives in the URL: a fresh session with ?run=ID shows the stored results."""
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.scoring.predictor import load_predictor
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.labels.reference_db import open_db
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    ni = open_db(studio.DB_URL).get(studio.PRESET_ID)
    req = Request(mode="masked", n_atoms=4, targets=[ni.site_dos[ni.symbols.index("Ni")].tolist()], cond_sites=[0],
                  n_candidates=2, steps=5)
    run = run_generation(req, load_model(studio.MODEL_PATH), load_predictor(studio.PREDICTOR_PATH),
                         store=RunStore(tmp_path / "runs.db"), check_novelty=False)
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = run["id"]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "6 · Results" in [h.value for h in at.header]
    assert any(run["id"] in c.value for c in at.caption)


def test_model_summary_counts_the_source_models_steps_for_a_fine_tune():
    card = {"epoch": 33, "steps": 9009, "n_labelled_structures": 962, "n_train": 17409, "date": "2026-11-26",
            "type_diffusion": "d3pm", "warm_start": {"file": "denoiser.pt", "steps": 14742}}
    line = studio.model_summary(card)
    assert "23.8k steps (9.0k of them fine-tuning)" in line and "962 labelled + 16447 unlabelled" in line
    card.pop("warm_start")
    assert "epoch 33, 9.0k steps" in studio.model_summary(card)


def test_the_results_header_says_when_a_run_was_dos_steered():
    from studio.results import steering_text
    assert steering_text({"particles": 4}) == "DOS steering K = 4 · "
    assert steering_text({"particles": 1}) == "" and steering_text({}) == ""   # plain, or stored before steering
