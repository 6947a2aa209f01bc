"""The training pack (what a GPU box without ASE or pymatgen trains from), the conditioning-DOS
augmentation, and predictor ensembles, on real seed labels."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import common as bench
from dosmatgen_core import dos as dosmod
from dosmatgen_core.scoring import predictor as pr
from dosmatgen_core.scoring.predictor import (CHGNET_FEA, PredictorConfig, SiteDOSPredictor, chgnet_atom_features,
                                              collate_graphs, element_table, load_predictor, model_from_blob)
from dosmatgen_core.scoring.stability import chgnet
from dosmatgen_core.structures import atoms_from_cif
from dosmatgen_core.training import dataset as data
from dosmatgen_core.training import pseudo
from dosmatgen_core.training.denoiser import TrainConfig, epoch_order
from dosmatgen_core.training.predictor import export_predictor, graph_and_target

IDS = ["mp-22905", "mp-23259", "mp-522", "L12-Au3Ni-chgnet", "mp-1941", "mp-406", "mp-1902", "mp-2201"]
# the last two fall in the predictor's held-out 15 %


def _entries(seed_lines, ids=IDS):
    return [data.entry_from_atoms(m, atoms_from_cif(seed_lines[m]["cif"]), seed_lines[m]["site_dos"]) for m in ids]


def _write_pack(tmp_path, seed_lines):
    lab = _entries(seed_lines)
    unl = [data.Entry(e.material_id + "-bare", e.z, e.frac, e.lattice, None) for e in _entries(seed_lines, IDS[:3])]
    path = data.save_pack(tmp_path / "pack.npz", lab, unl,
                          {"label_shards": ["seed-000.jsonl.gz"], "csvs": [], "element_table": element_table().tolist()})
    return path, lab, unl


def test_pack_round_trips_every_crystal_and_label(tmp_path, seed_lines):
    path, lab, unl = _write_pack(tmp_path, seed_lines)
    lab2, unl2, meta = data.load_pack(path)
    assert [e.material_id for e in lab2] == [e.material_id for e in lab]
    assert [e.material_id for e in unl2] == [e.material_id for e in unl]
    assert all(e.site_dos is None for e in unl2) and meta["label_shards"] == ["seed-000.jsonl.gz"]
    for a, b in zip(lab, lab2):
        assert (a.z == b.z).all() and np.allclose(a.frac, b.frac, atol=1e-6)
        assert np.allclose(a.lattice, b.lattice, atol=1e-5) and np.allclose(a.site_dos, b.site_dos, atol=1e-6)


def test_a_pack_whose_dos_block_does_not_match_its_atoms_is_refused(tmp_path, seed_lines):
    path, _, _ = _write_pack(tmp_path, seed_lines)
    with np.load(path) as d:
        arrays = {k: d[k] for k in d.files}
    arrays["dos"] = arrays["dos"][:-1]
    np.savez(tmp_path / "broken.npz", **arrays)
    with pytest.raises(ValueError, match="labelled atoms"):
        data.load_pack(tmp_path / "broken.npz")


def test_dos_augmentation_shifts_the_whole_crystal_alike_and_keeps_the_states(seed_lines):
    g = np.asarray(seed_lines["L12-Au3Ni-chgnet"]["site_dos"], np.float32)
    shifted = data.DOSAugment(shift_ev=0.2)(g, np.random.default_rng(1))
    d = np.random.default_rng(1).uniform(-0.2, 0.2)
    assert np.allclose(shifted, np.stack([dosmod.shift(r, d) for r in g]), atol=1e-5)
    # the band centre of every site moves by the same d; states within the window are kept
    for a, b in zip(g, shifted):
        assert dosmod.band_centre(b) - dosmod.band_centre(a) == pytest.approx(d, abs=0.02)
        assert dosmod.integrate(b) == pytest.approx(dosmod.integrate(a), rel=0.02)
    scaled = data.DOSAugment(scale=0.1)(g, np.random.default_rng(2))
    ratio = scaled.sum(1) / g.sum(1)
    assert np.allclose(scaled / ratio[:, None], g, rtol=1e-4, atol=1e-6) and np.std(ratio) > 0
    assert not data.DOSAugment().active()
    b0 = data.collate(_entries(seed_lines, IDS[:2]), np.zeros(400), np.ones(400))
    b1 = data.collate(_entries(seed_lines, IDS[:2]), np.zeros(400), np.ones(400), data.DOSAugment(0.2, 0.1),
                      np.random.default_rng(0))
    assert b0.dos.shape == b1.dos.shape and not torch.allclose(b0.dos, b1.dos)


def test_training_from_a_pack_needs_neither_pymatgen_nor_the_shards(tmp_path, seed_lines):
    """What the GPU round relies on: train and train-predictor from a pack, pymatgen unimportable."""
    path, _, _ = _write_pack(tmp_path, seed_lines)
    block = tmp_path / "block" / "pymatgen"
    block.mkdir(parents=True)
    (block / "__init__.py").write_text("raise ImportError('no pymatgen on this machine')\n")
    code = f"""
import sys; sys.path.insert(0, {str(tmp_path / 'block')!r})
from dosmatgen_core.training.denoiser import TrainConfig, train
from dosmatgen_core.training.predictor import PredictorTrainConfig, train_predictor
train(TrainConfig(run_dir={str(tmp_path / 'gen')!r}, pack={str(path)!r}, epochs=1, batch_size=4, epoch_size=8,
                  threads=1, dos_shift_ev=0.1, dos_scale=0.05,
                  model=dict(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32, types='d3pm')), log=print)
train_predictor(PredictorTrainConfig(run_dir={str(tmp_path / 'pred')!r}, pack={str(path)!r}, epochs=2,
                                     threads=1, model=dict(hidden=32, layers=2, dropout=0.1)), log=print)
import pymatgen
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "no pymatgen on this machine" in r.stderr, r.stderr[-2000:]     # the last line proves the block
    assert "epoch 1:" in r.stdout and "predictor:" in r.stdout and "epoch 2:" in r.stdout, r.stdout
    cfg = json.loads((tmp_path / "gen" / "config.json").read_text())
    assert cfg["label_shards"] == ["seed-000.jsonl.gz"] and cfg["dos_shift_ev"] == 0.1
    assert (tmp_path / "pred" / "heldout.json").exists() and (tmp_path / "gen" / "last.pt").exists()
    assert torch.load(tmp_path / "pred" / "last.pt", weights_only=True)["label_shards"] == ["seed-000.jsonl.gz"]


def test_a_pack_carries_chgnet_features_so_the_predictor_trains_without_chgnet(tmp_path, seed_lines):
    """The GPU box has neither CHGNet nor pymatgen: a --chgnet predictor reads the pack's features."""
    lab = _entries(seed_lines)
    fea = chgnet_atom_features([(e.z, e.frac, e.lattice) for e in lab])
    meta = {"label_shards": ["seed-000.jsonl.gz"], "csvs": [], "element_table": element_table().tolist()}
    with pytest.raises(ValueError, match="one row per atom"):
        data.save_pack(tmp_path / "bad.npz", lab, [], meta, fea[:-1])
    path = data.save_pack(tmp_path / "pack.npz", lab, [], meta, fea)
    stored = data.load_pack_features(path)
    assert list(stored) == [e.material_id for e in lab]
    assert all(np.array_equal(stored[e.material_id], f) for e, f in zip(lab, fea))
    assert data.load_pack_features(_write_pack(tmp_path / "plain", seed_lines)[0]) is None
    block = tmp_path / "block"
    for mod in ("pymatgen", "chgnet"):
        (block / mod).mkdir(parents=True)
        (block / mod / "__init__.py").write_text(f"raise ImportError('no {mod} on this machine')\n")
    code = f"""
import sys; sys.path.insert(0, {str(block)!r})
from dosmatgen_core.training.predictor import PredictorTrainConfig, train_predictor
train_predictor(PredictorTrainConfig(run_dir={str(tmp_path / 'pred')!r}, pack={str(path)!r}, epochs=2, threads=1,
                                     model=dict(hidden=16, layers=2, dropout=0.0, chgnet=True)), log=print)
import chgnet
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert "no chgnet on this machine" in r.stderr, r.stderr[-2000:]     # the last line proves the block
    assert "epoch 2:" in r.stdout, r.stdout
    assert json.loads((tmp_path / "pred" / "heldout.json").read_text())["all"]["sites"] > 0


def test_predictor_ensemble_is_the_mean_of_its_members(tmp_path, seed_lines):
    path, lab, _ = _write_pack(tmp_path, seed_lines)
    runs, members = [], []
    for k in range(2):
        torch.manual_seed(k)
        m = SiteDOSPredictor(PredictorConfig(hidden=32, layers=2)).eval()
        run = tmp_path / f"p{k}"
        run.mkdir()
        torch.save({"ema": m.state_dict(), "epoch": 3, "config": {"hidden": 32, "layers": 2, "dropout": 0.0}},
                   run / "last.pt")
        runs.append(run)
        members.append(m)
    card = export_predictor(runs, tmp_path / "ens.pt", [], pack=str(path))
    assert card["members"] == 2 and len(card["heldout_member_mae"]) == 2 and card["label_shards"] == ["seed-000.jsonl.gz"]
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):
        loaded = load_predictor(tmp_path / "ens.pt", trust=True)
    g, _ = graph_and_target(lab[:3])
    with torch.no_grad():
        want = (members[0](g) + members[1](g)).numpy() / 2
    got = np.concatenate(loaded.predict([(e.z, e.frac, e.lattice) for e in lab[:3]]))
    assert np.allclose(got, want, atol=1e-5)
    torch.save({"ema": SiteDOSPredictor(PredictorConfig(hidden=16, layers=2)).state_dict(), "epoch": 1,
                "config": {"hidden": 16, "layers": 2, "dropout": 0.0}}, runs[1] / "last.pt")
    with pytest.raises(ValueError, match="share one architecture"):
        export_predictor(runs, tmp_path / "bad.pt", [], pack=str(path))


def test_predictor_card_names_the_shards_its_members_trained_on(tmp_path, seed_lines):
    """Not the shards lying about at export time: a candidate labelled after training is held out."""
    path, _, _ = _write_pack(tmp_path, seed_lines)
    runs = []
    for k, shards in enumerate([["labels-0001.jsonl.gz"], ["labels-0001.jsonl.gz", "generated-0005.jsonl.gz"]]):
        run = tmp_path / f"p{k}"
        run.mkdir()
        torch.save({"ema": SiteDOSPredictor(PredictorConfig(hidden=16, layers=2)).state_dict(), "epoch": 1,
                    "config": {"hidden": 16, "layers": 2, "dropout": 0.0}, "label_shards": shards}, run / "last.pt")
        runs.append(run)
    card = export_predictor(runs, tmp_path / "ens.pt", [], pack=str(path))
    assert card["label_shards"] == ["generated-0005.jsonl.gz", "labels-0001.jsonl.gz"]


def test_a_predictor_saved_before_dropout_existed_still_loads(tmp_path):
    m = SiteDOSPredictor(PredictorConfig(hidden=16, layers=2)).eval()
    old = {k.replace("upd.3.", "upd.2.").replace("head.3.", "head.2."): v for k, v in m.state_dict().items()}
    back = model_from_blob({"config": {"hidden": 16, "layers": 2}, "state_dict": old})
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), m.state_dict().values()))


def test_a_predictor_takes_its_element_table_from_its_checkpoint_not_pymatgen(tmp_path, monkeypatch):
    """The table travels as a buffer: loading (and family statistics) must not recompute it, so a
    machine without pymatgen (the GPU box) reads packs and checkpoints alike."""
    table = pr.element_table().copy()
    table[:, :-4] *= 0.5                                    # a table pymatgen would not give
    m = pr.SiteDOSPredictor(pr.PredictorConfig(hidden=16, layers=2), elem=table).eval()
    monkeypatch.setattr(pr, "element_table", lambda: pytest.fail("recomputed the element table"))
    back = pr.model_from_blob({"config": {"hidden": 16, "layers": 2, "dropout": 0.0}, "state_dict": m.state_dict()})
    assert np.array_equal(back.elem.numpy(), table)
    ens = pr.model_from_blob({"config": {"hidden": 16, "layers": 2, "dropout": 0.0},
                               "members": [m.state_dict(), m.state_dict()]})
    assert np.array_equal(ens.elem.numpy(), table)
    assert pr.family(28, table) == "d-block" and pr.family(3, table) == "s-block"


def test_bench_predictors_scores_runs_and_their_seed_ensembles(tmp_path, seed_lines):
    path, _, _ = _write_pack(tmp_path, seed_lines)
    runs = []
    for name in ("a-0", "a-1", "b-0"):
        torch.manual_seed(len(runs))
        run = tmp_path / name
        run.mkdir()
        torch.save({"ema": SiteDOSPredictor(PredictorConfig(hidden=16, layers=2)).state_dict(), "epoch": 1,
                    "config": {"hidden": 16, "layers": 2, "dropout": 0.0}}, run / "last.pt")
        runs.append(run)
    res = bench.bench_predictors(runs, pack=str(path))
    assert set(res["runs"]) == {"a-0", "a-1", "b-0"} and set(res["ensembles"]) == {"a"}   # b has one seed
    assert res["ensembles"]["a"]["members"] == 2 and res["n_heldout_structures"] == 2
    assert all(r["mae"] > 0 for r in res["runs"].values())
    lab, _, _ = data.load_pack(path)
    data.save_pack(tmp_path / "train-only.npz", [e for e in lab if not data.is_validation(e.material_id, 0.15)], [], {})
    with pytest.raises(ValueError, match="no held-out"):
        bench.bench_predictors(runs, pack=str(tmp_path / "train-only.npz"))


def test_chgnet_feature_predictor_is_permutation_equivariant_and_rotation_invariant(tmp_path, seed_lines):
    """A predictor that reads CHGNet's atom features, shipped and loaded as the app loads it:
    reordering the atoms reorders its site DOS; rotating the cell (same crystal) changes nothing."""
    path, lab, _ = _write_pack(tmp_path, seed_lines)
    torch.manual_seed(0)
    run = tmp_path / "chg"
    run.mkdir()
    cfg = {"hidden": 16, "layers": 2, "dropout": 0.0, "chgnet": True}
    torch.save({"ema": SiteDOSPredictor(PredictorConfig(**cfg)).state_dict(), "epoch": 1, "config": cfg},
               run / "last.pt")
    export_predictor(run, tmp_path / "chg.pt", [], pack=str(path))
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):
        pred = load_predictor(tmp_path / "chg.pt", trust=True)
    e = next(x for x in lab if x.material_id == "L12-Au3Ni-chgnet")
    before = chgnet().graph_converter.on_isolated_atoms
    (f,) = chgnet_atom_features([(e.z, e.frac, e.lattice)])
    assert f.shape == (len(e.z), CHGNET_FEA) and np.isfinite(f).all()
    assert chgnet().graph_converter.on_isolated_atoms == before     # the shared CHGNet is left as found
    perm = np.array([2, 0, 3, 1])
    rot = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])        # 90° about z
    base, permuted, rotated = pred.predict([(e.z, e.frac, e.lattice), (e.z[perm], e.frac[perm], e.lattice),
                                            (e.z, e.frac, e.lattice @ rot.T)])
    assert np.allclose(permuted, base[perm], atol=1e-4)
    assert np.allclose(rotated, base, atol=1e-4)
    with pytest.raises(ValueError, match="CHGNet atom features"):
        pred.model(collate_graphs([(e.z, e.frac, e.lattice)]))


def test_bench_val_loss_scores_checkpoints_on_the_generators_validation_crystals(tmp_path, seed_lines):
    path, _, _ = _write_pack(tmp_path, seed_lines)          # mp-2201 is in the generator's 5 % split
    res = bench.bench_validation_loss(["assets/denoiser.pt"], pack=str(path))
    assert res["n_validation"] == 1 and res["n_validation_labelled"] == 1
    r = res["models"]["assets/denoiser.pt"]
    assert np.isfinite(r["val_loss"]) and np.isfinite(r["val_labelled_loss"]) and r["sha256"]


def test_pseudo_labels_are_the_predictors_dos_for_training_crystals_only(tmp_path, seed_lines):
    """dosmatgen pseudo-label: the shipped predictor's site DOS for every unlabelled training
    crystal; validation crystals (here mp-2201, whose sites are benchmark targets) and crystals
    with an element no DFT label covers (a Gd copy) get none, and a rerun reuses the chunks."""
    lab = _entries(seed_lines, IDS[:6])
    unl = [data.Entry(e.material_id + "-u", e.z, e.frac, e.lattice, None) for e in _entries(seed_lines, IDS[2:5])]
    val = _entries(seed_lines, ["mp-2201"])[0]
    unl.append(data.Entry("mp-2201", val.z, val.frac, val.lattice, None))
    unl.append(data.Entry("mp-522-Gd", np.full_like(unl[0].z, 64), unl[0].frac, unl[0].lattice, None))
    assert data.is_validation("mp-2201") and not data.is_validation("mp-522-Gd")
    assert 64 not in {int(z) for e in lab for z in e.z}
    pack = data.save_pack(tmp_path / "pack.npz", lab, unl, {"label_shards": ["seed-000.jsonl.gz"], "csvs": []})
    info = pseudo.pseudo_label(pack, "assets/predictor.pt", tmp_path / "pseudo.npz", chunk=2, log=lambda m: None)
    assert info["n_crystals"] == 3 and info["n_unscorable"] == 0 and info["n_unlabelled_element"] == 1
    got, meta = pseudo.attach(tmp_path / "pseudo.npz", unl)
    assert [e.material_id for e in got] == [e.material_id for e in unl[:3]]
    assert meta["predictor_sha256"] == load_predictor("assets/predictor.pt").card["sha256"]
    want = load_predictor("assets/predictor.pt").predict([(e.z, e.frac, e.lattice) for e in unl[:3]])
    for e, w in zip(got, want):
        assert e.site_dos.shape == (len(e.z), dosmod.NPTS) and (e.site_dos >= 0).all()
        assert np.allclose(e.site_dos, np.clip(w, 0, None), atol=2e-2)    # stored as float16
    parts = sorted((tmp_path / "pseudo.parts").glob("*.npy"))
    assert len(parts) == 2
    stamp = [p.stat().st_mtime_ns for p in parts]
    pseudo.pseudo_label(pack, "assets/predictor.pt", tmp_path / "pseudo.npz", chunk=2, log=lambda m: None)
    assert [p.stat().st_mtime_ns for p in parts] == stamp


def test_pseudo_label_elements_come_from_the_predictors_own_label_shards(tmp_path):
    """The elements a pseudo-label may hold are those in the predictor's training labels (the shards
    its card names, training split), not a newer pack's; a card naming absent shards is refused."""
    card = load_predictor("assets/predictor.pt").card
    full = pseudo.predictor_elements(card, "data/labels")
    seed = pseudo.predictor_elements({"label_shards": ["seed-000.jsonl.gz"]}, "data/labels")
    assert seed < full and 28 in full and 79 in full and not {57, 64, 92} & full
    with pytest.raises(FileNotFoundError, match="labels-9999"):
        pseudo.predictor_elements({"label_shards": ["labels-9999.jsonl.gz"]}, "data/labels")
    with pytest.raises(FileNotFoundError, match="none named"):
        pseudo.predictor_elements({}, tmp_path)


def test_pseudo_labels_for_a_different_crystal_are_refused(tmp_path, seed_lines):
    e = _entries(seed_lines, ["mp-522"])[0]
    np.savez(tmp_path / "p.npz", ids=np.array(["mp-522"]), offsets=np.array([0, len(e.z) + 1]),
             dos=np.zeros((len(e.z) + 1, dosmod.NPTS), np.float16), meta=np.array("{}"))
    with pytest.raises(ValueError, match="mp-522 has"):
        pseudo.attach(tmp_path / "p.npz", [e])


def test_epoch_order_draws_each_group_to_its_share():
    cfg = TrainConfig(labelled_share=0.2, pseudo_share=0.5, epoch_size=1000)
    order = epoch_order(50, 900, cfg, np.random.default_rng(0), n_pseudo=900)
    assert len(order) == 1000
    assert (order < 50).sum() == 200 and ((order >= 50) & (order < 950)).sum() == 500
    assert (order >= 950).sum() == 300 and len(set(order[order >= 950])) == 300   # unlabelled: no repeats
    plain = epoch_order(50, 900, TrainConfig(labelled_share=0.2, epoch_size=1000), np.random.default_rng(0))
    assert (plain < 50).sum() == 200 and (plain >= 50).sum() == 800


def test_label_halves_share_no_training_crystal_and_train_on_no_held_out_one():
    mk = lambda i: data.Entry(f"mp-{i}", np.array([14]), np.zeros((1, 3)), np.eye(3) * 4.0, np.zeros((1, 400)))
    lab = [mk(i) for i in range(3000)]
    a, b = data.label_half(lab, "A"), data.label_half(lab, "B")
    band = {e.material_id for e in lab if data.is_validation(e.material_id, data.PREDICTOR_HOLDOUT)}
    # what each half's trainer actually fits: the guide skips the generator's validation ids,
    # the predictor its whole hold-out band
    fit_a = {e.material_id for e in a if not data.is_validation(e.material_id)}
    fit_b = {e.material_id for e in b if e.material_id not in band}
    assert fit_a and fit_b and not fit_a & {e.material_id for e in b} and not fit_b & {e.material_id for e in a}
    assert not (fit_a | fit_b) & band
    assert fit_a | fit_b == {e.material_id for e in lab} - band        # every trainable label is used once
    assert 0.4 < len(fit_a) / len(fit_a | fit_b) < 0.6
    assert {e.material_id for e in b} >= band                          # B's predictor can report its hold-out
    with pytest.raises(ValueError, match="A or B"):
        data.label_half(lab, "C")
