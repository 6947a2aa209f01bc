"""What a candidate's DOS plot and the Model page's training curve show, on small real data: the
reference database's GaP and Au3Ni site DOS, and the shipped training logs."""
import json
import sys

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dosmatgen_core.candidates.runs import to_cif
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.structures import to_structure
from studio import figures as viz
from studio import shared as studio
from studio.results import candidate_curves

GAP = "mp-8882"       # Ga2P2: sites 0, 1 Ga, 2, 3 P; site DOS peaks 1.2-1.6 states/eV
LOSSES = list(studio.LOSS_CURVES)


@pytest.fixture(autouse=True)
def _keep_main_module():
    """AppTest runs a page as __main__ and leaves it there (see tests/test_app.py)."""
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(scope="module")
def card_run():
    """A fixed-type run towards GaP's P site, its candidate GaP itself with the stored site DOS as
    its prediction (±20 % spread), and as its unconditional partner Au3Ni's site DOS (Ni: 12.7
    states/eV, the tall baseline the walk saw)."""
    db = open_db(studio.DB_URL)
    gap, au3ni = db.get(GAP), db.get(studio.PRESET_ID)
    pred = np.asarray(gap.site_dos, float)
    run = {"title": "target: DFT label of GaP site 2 (P)", "settings": {"targets": [pred[2].tolist()]},
           "baseline": [{"predicted_dos": np.asarray(au3ni.site_dos, float), "n_atoms": 4}]}
    cand = {"rank": 1, "index": 0, "cif": to_cif(to_structure(gap.atoms)), "predicted_dos": pred,
            "predicted_spread": 0.2 * pred}
    return run, cand


def one_site(cand: dict, site: str) -> dict:
    return {**cand, "site_to_target": {site: 0}}


def test_a_tall_baseline_does_not_set_the_dos_axis(card_run):
    """The walk: in masked, template and fixed-type cards the axis ran to 8-15 states/eV because the
    unconditional sample peaked there, squashing the 0-1.5 states/eV target and prediction flat."""
    run, cand = card_run
    curves = candidate_curves(run, one_site(cand, "0"), None, None)
    assert {c["style"] for c in curves} == {"target", "predicted", "baseline"}
    base = max(np.max(c["y"]) for c in curves if c["style"] == "baseline")
    # the target, and the prediction with its band's top
    shown = max(np.max(np.asarray(c["y"]) + (c["band"] if c.get("band") is not None else 0))
                for c in curves if c["style"] != "baseline")
    assert base > 5 * shown                                       # the baseline really is the tall one
    lo, hi = viz.dos_figure(curves).layout.yaxis.range
    assert lo == 0 and shown <= hi <= 1.1 * shown                 # with a little headroom; the baseline clipped
    # a chart of background curves only still shows them whole
    lo, hi = viz.dos_figure([c for c in curves if c["style"] == "baseline"]).layout.yaxis.range
    assert lo == 0 and base <= hi <= 1.1 * base


def test_two_conditioned_sites_get_their_own_dash_and_shade_and_one_site_keeps_the_palette(card_run):
    """The walk: a fixed-type run with atoms 0 and 1 conditioned drew two black targets and two blue
    predictions that overlapped, in identical colours."""
    run, cand = card_run
    # two sites, each with its own target row (one target carried by both is one entry: walk 17)
    run = {**run, "settings": {**run["settings"], "targets": [run["settings"]["targets"][0]] * 2}}
    two = {**cand, "site_to_target": {"0": 0, "1": 1}}
    fig = viz.dos_figure(candidate_curves(run, two, None, None))
    lines = {t.name: t.line for t in fig.data if t.name and "±" not in t.name}
    look = {name: (line.color, line.dash) for name, line in lines.items()}
    t0, t1 = look["target for site 0 (Ga): DFT label of GaP site 2 (P)"], look["target for site 1 (Ga): DFT label of GaP site 2 (P)"]
    p0, p1 = look["predicted for candidate #1 site 0 (Ga)"], look["predicted for candidate #1 site 1 (Ga)"]
    assert t0 == (viz.PALETTE["target"]["color"], None) and p0 == (viz.PALETTE["predicted"]["color"], None)
    assert t1[0] != t0[0] and t1[1] not in (None, "solid") and p1[0] != p0[0] and p1[1] not in (None, "solid")
    assert t1[1] == p1[1]                         # site 1's target and prediction pair up by their dash
    assert b"stroke-dasharray" in viz.dos_image(candidate_curves(run, two, None, None))    # the export too
    # one target carried by both: one entry naming both, the two predictions still apart
    shared = viz.dos_figure(candidate_curves(run, {**cand, "site_to_target": {"0": 0, "1": 0}}, None, None))
    names = [t.name for t in shared.data if t.name and "±" not in t.name]
    assert [n for n in names if n.startswith("target")] == ["target for sites 0 (Ga), 1 (Ga): DFT label of GaP site 2 (P)"]
    assert {"predicted for candidate #1 site 0 (Ga)", "predicted for candidate #1 site 1 (Ga)"} <= set(names)
    # one conditioned site: every curve exactly in its kind's palette line, as before
    single = viz.dos_figure(candidate_curves(run, one_site(cand, "0"), None, None))
    drawn = [t for t in single.data if t.name and "±" not in t.name]
    for t, c in zip(drawn, candidate_curves(run, one_site(cand, "0"), None, None)):
        want = viz.PALETTE[c["style"]]
        assert (t.line.color, t.line.width, t.line.dash) == (want["color"], want["width"], want.get("dash")), t.name


def test_the_training_caption_comes_from_the_log():
    """The walk: the caption said "From epoch 3 (the first two reach 3 and would flatten the rest)"
    over a fine-tune's log whose epochs 1-2 (3.22, 3.24) sit with the rest, and the flat curve
    read as "didn't learn"."""
    fine = pd.read_csv(studio.ROOT / "runs/train/single-0061/log.csv")      # the shipped model's fine-tune
    shown, cap = viz.training_view(fine, LOSSES, {"steps": 3822})
    assert len(shown) == len(fine) and "From epoch" not in cap and "flatten" not in cap
    assert "starts from a trained model (3.8k steps)" in cap and "flat curve is expected" in cap
    assert "lattice, coordinate and atom-type terms" in cap
    # a run from scratch: epochs 1-8 (24.7 down to 2.7) are over 1.5x the later epochs' median (1.71)
    scratch = pd.read_csv(studio.ROOT / "runs/train/main/log.csv")
    shown, cap = viz.training_view(scratch, LOSSES)
    assert int(shown["epoch"].iloc[0]) == 9 and len(shown) == len(scratch) - 8
    assert cap.startswith("From epoch 9: epochs 1–8 reach 24.7 to 2.7, over 1.5× the later epochs' median (1.71)")
    assert "fine-tune" not in cap


def test_the_model_page_draws_every_epoch_of_its_fine_tune(tmp_path, monkeypatch):
    """The page itself: the shipped model's log plotted whole, its caption without a skipped epoch."""
    card = json.loads(studio.MODEL_PATH.with_suffix(".card.json").read_text())
    log = studio.ROOT / card.get("run_dir", "runs/train/main") / "log.csv"
    if not log.exists():
        pytest.skip("no training log in this checkout")
    shown, want = viz.training_view(pd.read_csv(log), [c for c in LOSSES if c in pd.read_csv(log)],
                                    card.get("warm_start"))
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    at = AppTest.from_file(str(studio.ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/3_Model.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    (cap,) = [c.value for c in at.caption if "lattice, coordinate and atom-type terms" in c.value]
    assert cap == want
    if isinstance(card.get("warm_start"), dict) and len(shown) == len(pd.read_csv(log)):
        assert not cap.startswith("From epoch") and "starts from a trained model" in cap


def test_a_card_with_two_targets_names_the_atom_that_carries_each_before_the_source():
    """The walk read 'target: DFT label of GaP site 2 (P) site 0 (P)': which site is whose?"""
    from studio.results import target_label
    run = {"title": "target: DFT label of GaP site 2 (P)"}
    assert target_label(run) == "target: DFT label of GaP site 2 (P)"
    assert target_label(run, "site 0 (P)") == "target for site 0 (P): DFT label of GaP site 2 (P)"
    assert target_label({"title": "a run stored before titles named targets"}, "site 1 (Ga)") == "target for site 1 (Ga)"
