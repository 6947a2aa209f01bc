"""`dosmatgen train` end to end on a few real labels: warm start, resume, export, load."""
import csv as csvmod
import gzip
import json
import shutil

import numpy as np
import pytest
import torch

from dosmatgen_core.model.checkpoint import load_model, save_model
from dosmatgen_core.model.denoiser import Denoiser, DenoiserConfig
from dosmatgen_core.structures import atoms_from_cif
from dosmatgen_core.training import dataset as data
from dosmatgen_core.training.denoiser import TrainConfig, export, halve_run, restore_run, slim_state, train

TINY = dict(hidden=32, layers=2, n_freqs=4, time_dim=16, dos_hidden=32)


def test_warm_started_d3pm_run_resumes_and_exports_a_loadable_model(tmp_path, seed_lines):
    labels = tmp_path / "labels"
    labels.mkdir()
    with gzip.open(labels / "labels-0000.jsonl.gz", "wt") as fh:
        for mid in ("mp-22905", "L12-Au3Ni-chgnet", "mp-522", "mp-1941"):
            fh.write(json.dumps(seed_lines[mid]) + "\n")
    torch.manual_seed(0)
    src = Denoiser(DenoiserConfig(**TINY))                      # a "shipped" continuous model
    save_model(tmp_path / "src.pt", src, np.zeros(400), np.ones(400), {})
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), label_dirs=[str(labels)], csvs=[], labelled_only=True,
                      epochs=1, batch_size=2, epoch_size=4, threads=1, init_from=str(tmp_path / "src.pt"),
                      model=DenoiserConfig(**TINY, types="d3pm").to_dict())
    logs = []
    train(cfg, log=logs.append)
    assert any("warm start" in m for m in logs)
    slim_state(tmp_path / "run")                                 # as committed: no optimiser moments
    cfg.epochs, cfg.model = 2, DenoiserConfig(**TINY).to_dict()  # the run keeps its own (d3pm) architecture
    cfg.init_from = ""                                           # ... and its warm-start provenance
    logs.clear()
    train(cfg, log=logs.append)
    assert any("resumed at epoch 1" in m for m in logs)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["init_from"].endswith("src.pt")
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and all(np.isfinite(float(x)) for x in rows[-1].split(",")[2:6])   # train losses (no validation ids here)
    card = export(tmp_path / "run", tmp_path / "out.pt", pick="last")
    assert card["type_diffusion"] == "d3pm" and card["epoch"] == 2 and card["warm_start"]["file"] == "src.pt"
    assert card["warm_start"]["sha256"] == json.loads((tmp_path / "src.card.json").read_text())["sha256"]
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):     # a new file: trusted by its trainer
        loaded = load_model(tmp_path / "out.pt", trust=True)
    assert loaded.model.cfg.types == "d3pm" and loaded.sha256 == card["sha256"]


def test_a_run_with_pseudo_labels_trains_on_them_and_says_so_in_its_card(tmp_path, seed_lines):
    ents = [data.entry_from_atoms(m, atoms_from_cif(seed_lines[m]["cif"]), seed_lines[m]["site_dos"])
            for m in ("mp-22905", "mp-522", "mp-1941", "mp-406")]
    unl = [data.Entry(e.material_id + "-u", e.z, e.frac, e.lattice, None) for e in ents[2:]]
    pack = data.save_pack(tmp_path / "pack.npz", ents[:2], unl, {"label_shards": ["labels-0000.jsonl.gz"], "csvs": []})
    offs = np.cumsum([0] + [len(e.z) for e in unl])
    np.savez(tmp_path / "pseudo.npz", ids=np.array([e.material_id for e in unl]), offsets=offs,
             dos=np.concatenate([e.site_dos for e in ents[2:]]).astype(np.float16),
             meta=np.array(json.dumps({"predictor_sha256": "abc"})))
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), pack=str(pack), pseudo=str(tmp_path / "pseudo.npz"),
                      pseudo_share=0.5, labelled_share=0.25, epochs=1, batch_size=2, epoch_size=4, threads=1,
                      model=DenoiserConfig(**TINY).to_dict())
    logs = []
    train(cfg, log=logs.append)
    assert any("(2 of them also pseudo-labelled)" in m for m in logs)
    card = export(tmp_path / "run", tmp_path / "out.pt", pick="last")
    assert card["pseudo_labels"] == {"file": "pseudo.npz", "predictor_sha256": "abc"}
    assert card["train"]["pseudo_share"] == 0.5


def test_export_can_pick_the_epoch_with_the_best_labelled_validation_loss(tmp_path, seed_lines):

    names = list(seed_lines)[:6]
    ents = [data.entry_from_atoms(m, atoms_from_cif(seed_lines[m]["cif"]), seed_lines[m]["site_dos"]) for m in names]
    val_ids = [f"v-{i}" for i in range(200) if data.is_validation(f"v-{i}")][:2]
    ents = [data.Entry(val_ids[i] if i < 2 else e.material_id + "-t", e.z, e.frac, e.lattice, e.site_dos)
            for i, e in enumerate(ents)]
    ents = [e for e in ents if e.material_id in val_ids or not data.is_validation(e.material_id)]
    pack = data.save_pack(tmp_path / "pack.npz", ents, [], {"label_shards": ["labels-0000.jsonl.gz"], "csvs": []})
    cfg = TrainConfig(run_dir=str(tmp_path / "run"), pack=str(pack), epochs=3, batch_size=2, epoch_size=4,
                      threads=1, lr=3e-3, model=DenoiserConfig(**TINY).to_dict())
    train(cfg, log=lambda m: None)
    rows = list(csvmod.DictReader((tmp_path / "run" / "log.csv").open()))
    best_lab = min(rows, key=lambda r: float(r["val_labelled_loss"]))
    card = export(tmp_path / "run", tmp_path / "lab.pt", pick="best-labelled")
    assert card["picked"] == "best-labelled" and card["epoch"] == int(best_lab["epoch"])
    assert card["val_labelled_loss"] == float(best_lab["val_labelled_loss"])
    with pytest.raises(ValueError, match="pick must be"):
        export(tmp_path / "run", tmp_path / "x.pt", pick="newest")

    # the trip back from a GPU round: float16 best states + metadata, restored into an exportable run
    trip = tmp_path / "trip"
    trip.mkdir()
    for f in halve_run(tmp_path / "run") + [tmp_path / "run" / "log.csv", tmp_path / "run" / "config.json"]:
        shutil.copy(f, trip / f.name)
    restore_run(trip)
    back = export(trip, tmp_path / "back.pt", pick="best-labelled")
    assert back["epoch"] == card["epoch"] and back["val_labelled_loss"] == card["val_labelled_loss"]
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):
        a, b = (load_model(tmp_path / f, trust=True).model.state_dict() for f in ("lab.pt", "back.pt"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=2e-3, rtol=2e-3) for k in a)
    with pytest.raises(FileNotFoundError, match="meta.pt missing"):
        restore_run(tmp_path / "run" / "nowhere")
