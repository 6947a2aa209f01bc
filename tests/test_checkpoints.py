"""Only the shipped model files load without a word; anything else needs trust=True, and a file
that is not a weights-only checkpoint gives one CheckpointError line, never a traceback."""
import json
import pathlib
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from dosmatgen_core.model.checkpoint import SHIPPED_SHA256, CheckpointError, card_path, load_model, sha256_file
from dosmatgen_core.model.guide import load_guide
from dosmatgen_core.scoring.predictor import load_predictor

ROOT = Path(__file__).resolve().parent.parent
LOADERS = {"denoiser": load_model, "guide": load_guide, "predictor": load_predictor}


def _copy_with_card(src: Path, dst: Path, data: bytes | None = None) -> Path:
    """dst holding `data` (default: src's bytes) and src's card re-hashed to match it."""
    dst.write_bytes(src.read_bytes() if data is None else data)
    card = json.loads(card_path(src).read_text())
    card["sha256"] = sha256_file(dst)
    card_path(dst).write_text(json.dumps(card))
    return dst


def test_the_shipped_list_is_the_shipped_files():
    assert {k: sha256_file(ROOT / k) for k in SHIPPED_SHA256} == SHIPPED_SHA256


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_shipped_files_load_without_a_warning(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = LOADERS[name](ROOT / "assets" / f"{name}.pt")
    assert loaded.card["sha256"] == SHIPPED_SHA256[f"assets/{name}.pt"]


def test_a_copy_with_a_flipped_byte_and_a_rehashed_card_loads_only_when_trusted(tmp_path):
    src = ROOT / "assets" / "guide.pt"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01          # inside the weights: torch still reads the file
    bad = _copy_with_card(src, tmp_path / "guide.pt", bytes(data))
    with pytest.raises(CheckpointError) as e:
        load_guide(bad)
    digest = sha256_file(bad)
    assert str(e.value) == (f"{bad} is not a shipped checkpoint (sha256 {digest[:8]}…); "
                            "load it only if you trust it: --trust-checkpoint")
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):
        trusted = load_guide(bad, trust=True)
    shipped = load_guide(src)
    a, b = shipped.model.state_dict(), trusted.model.state_dict()
    assert sum(not torch.equal(a[k], b[k]) for k in a) == 1       # the flipped byte, and only it


def test_an_unchanged_copy_elsewhere_is_still_the_shipped_file(tmp_path):
    copy = _copy_with_card(ROOT / "assets" / "denoiser.pt", tmp_path / "mine.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_model(copy).sha256 == SHIPPED_SHA256["assets/denoiser.pt"]


class _Payload:
    """A pickle that would create a file when unpickled (weights_only must refuse it unread)."""
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def _unreadable(tmp_path: Path) -> dict[str, Path]:
    src = ROOT / "assets" / "predictor.pt"
    torch.save({"config": _Payload(tmp_path / "ran"), "state_dict": {}}, tmp_path / "payload.raw")
    return {"truncated": _copy_with_card(src, tmp_path / "truncated.pt", src.read_bytes()[:4096]),
            "foreign": _copy_with_card(src, tmp_path / "foreign.pt", b"elements,dos\nNi,0.1\n"),
            "payload": _copy_with_card(src, tmp_path / "payload.pt", (tmp_path / "payload.raw").read_bytes()),
            "other_kind": _copy_with_card(src, tmp_path / "other.pt", (ROOT / "assets" / "guide.pt").read_bytes())}


@pytest.mark.parametrize("kind, words", [("truncated", "not a readable torch checkpoint"),
                                         ("foreign", "not a readable torch checkpoint"),
                                         ("payload", "pickled objects beyond tensors"),
                                         ("other_kind", "does not hold a site-DOS predictor")])
def test_an_unreadable_file_gives_one_clean_line(tmp_path, kind, words):
    path = _unreadable(tmp_path)[kind]
    if kind == "other_kind":     # the shipped guide, given as a predictor: shipped, but not one
        with pytest.raises(CheckpointError) as e:
            load_predictor(path)
    else:
        with pytest.raises(CheckpointError, match="not a shipped checkpoint"):
            load_predictor(path)
        with pytest.raises(CheckpointError) as e, pytest.warns(UserWarning):
            load_predictor(path, trust=True)
    msg = str(e.value)
    assert words in msg and str(path) in msg and "\n" not in msg and len(msg) < 300, msg
    assert e.value.__suppress_context__           # no chained traceback from torch's own error
    assert not (tmp_path / "ran").exists()         # the payload was never run


def test_a_missing_file_or_card_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-predictor"):
        load_predictor(tmp_path / "none.pt")
    shutil.copy(ROOT / "assets" / "denoiser.pt", tmp_path / "denoiser.pt")
    with pytest.raises(FileNotFoundError, match="card"):
        load_model(tmp_path / "denoiser.pt")


def test_evaluate_rescores_with_the_predictor_it_is_given_and_refuses_a_tampered_one(tmp_path, capsys):
    """A walk: `evaluate RUN --model FILE` printed the shipped predictor's numbers whatever FILE was."""
    from dosmatgen_core import cli
    from dosmatgen_core.candidates.runs import RunStore, to_cif
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    from dosmatgen_core.settings import PRESET_ID
    from dosmatgen_core.structures import to_structure
    au3ni = open_db(DB_URL).get(PRESET_ID)
    store = tmp_path / "r.db"
    rid = RunStore(store).save({"title": "t", "settings": {"targets": [au3ni.site_dos[0].tolist()]}, "summary": {},
                                "candidates": [{"index": 0, "rank": 1, "cif": to_cif(to_structure(au3ni.atoms)), "formula": "Au3Ni",
                                                "n_atoms": 4, "site_to_target": {"0": 0}}], "baseline": []})
    src = ROOT / "assets" / "predictor.pt"
    data = bytearray(src.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad = _copy_with_card(src, tmp_path / "predictor.pt", bytes(data))
    for argv in (["--predictor", str(bad)], ["--model", str(tmp_path / "none.pt")]):
        assert cli.main(["evaluate", rid, "--runs", str(store), *argv]) == 2
        (line,) = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert line.startswith("error: ") and ("not a shipped checkpoint" in line or "none.pt" in line), line
    with pytest.warns(UserWarning, match="not a shipped checkpoint"):
        assert cli.main(["evaluate", rid, "--runs", str(store), "--predictor", str(bad), "--trust-checkpoint"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["predictor"] == str(bad) and out["predictor_sha256"] == sha256_file(bad)
    assert cli.main(["evaluate", rid, "--runs", str(store)]) == 0
    assert json.loads(capsys.readouterr().out)["predictor_sha256"] == SHIPPED_SHA256["assets/predictor.pt"]
