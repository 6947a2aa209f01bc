"""Shipped model files: a weights-only torch file plus a JSON model card holding its sha256."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dosmatgen_core.model.denoiser import Denoiser, DenoiserConfig

from dosmatgen_core.paths import MODEL_PATH as DEFAULT_MODEL


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def checked_card(path: str | Path) -> dict:
    """The model card next to `path`, after checking the file's sha256 against it."""
    path = Path(path)
    card = json.loads(card_path(path).read_text())
    if card.get("sha256") != sha256_file(path):
        raise ValueError(f"{path.name}: sha256 does not match its card; the file is corrupt or was replaced")
    return card


@dataclass
class LoadedModel:
    model: Denoiser
    dos_mean: np.ndarray
    dos_std: np.ndarray
    card: dict
    sha256: str
    path: Path


def save_model(path: str | Path, model: Denoiser, dos_mean, dos_std, card: dict) -> dict:
    """Write weights (state dict, plain tensors) and the card with the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"config": model.cfg.to_dict(),
            "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
            "dos_mean": torch.as_tensor(np.asarray(dos_mean, np.float32)),
            "dos_std": torch.as_tensor(np.asarray(dos_std, np.float32))}
    tmp = path.with_suffix(".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    card = dict(card, file=path.name, sha256=sha256_file(path), bytes=path.stat().st_size)
    card_path(path).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def load_model(path: str | Path = DEFAULT_MODEL, device: str = "cpu") -> LoadedModel:
    """Load a shipped model after checking its sha256 against the card."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"model file {path} not found; train one with `dosmatgen train`")
    cp = card_path(path)
    if not cp.exists():
        raise FileNotFoundError(f"model card {cp} not found next to {path.name}")
    card = json.loads(cp.read_text())
    digest = sha256_file(path)
    if card.get("sha256") != digest:
        raise ValueError(f"{path.name}: sha256 {digest[:12]}… does not match its card "
                         f"({str(card.get('sha256'))[:12]}…); the file is corrupt or was replaced")
    blob = torch.load(path, map_location=device, weights_only=True)
    model = Denoiser(DenoiserConfig(**blob["config"])).to(device)
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return LoadedModel(model, blob["dos_mean"].numpy(), blob["dos_std"].numpy(), card, digest, path)
