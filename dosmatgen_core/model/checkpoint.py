"""Model files: a weights-only torch file plus a JSON model card holding its sha256.

Only the files this release ships load without a word: their sha256 is written here, in code, so
a replaced file cannot vouch for itself by re-hashing its card. Anything else (a retrained model,
a file from elsewhere) loads only with trust=True, and says so with a warning. A file that is not
a readable weights-only checkpoint gives one CheckpointError line, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dosmatgen_core.model.denoiser import Denoiser, DenoiserConfig
from dosmatgen_core.paths import MODEL_PATH as DEFAULT_MODEL

# sha256 of every shipped file (sha256sum assets/*.pt). Shipping a new model means writing its
# digest here in the same commit.
SHIPPED_SHA256 = {
    "assets/denoiser.pt": "e7b7868c5d4048e87f684ed68c24477d756d0a481952ac3f10eee96a27bd793e",
    "assets/guide.pt": "a5b919426e75b6aef1bbd72716f06b368676a13351d84b1f1408e9e057a043af",
    "assets/predictor.pt": "fc4d71e1e399180cede391a0e772d8dfae5a6e987c175156dd069ebc0da0d2c7",
}


class CheckpointError(ValueError):
    """A model file that is not shipped (and not trusted), or not a readable checkpoint."""


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def card_path(model_path: str | Path) -> Path:
    p = Path(model_path)
    return p.with_name(p.stem + ".card.json")


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:160]


def read_checkpoint(path: str | Path, trust: bool = False, device: str = "cpu",
                    kind: str = "model", train_verb: str = "train") -> tuple[dict, dict, str]:
    """(the torch blob, its card, its sha256) of a model file, after every check: the file and its
    card exist, the file is shipped (or trusted), the card's sha256 is the file's, and
    torch.load(weights_only=True) reads it into a dict with a config."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} file {path} not found; train one with `dosmatgen {train_verb}`")
    cp = card_path(path)
    if not cp.exists():
        raise FileNotFoundError(f"{kind} card {cp} not found next to {path.name}")
    digest = sha256_file(path)
    if digest not in SHIPPED_SHA256.values():
        if not trust:
            raise CheckpointError(f"{path} is not a shipped checkpoint (sha256 {digest[:8]}…); "
                                  "load it only if you trust it: --trust-checkpoint")
        warnings.warn(f"{path} is not a shipped checkpoint (sha256 {digest[:8]}…); loading it as trusted",
                      stacklevel=3)
    try:
        card = json.loads(cp.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cp} is not a JSON model card: {_first_line(e)}") from None
    if not isinstance(card, dict) or card.get("sha256") != digest:
        got = card.get("sha256") if isinstance(card, dict) else None
        raise CheckpointError(f"{path.name}: sha256 {digest[:12]}… does not match its card "
                              f"({str(got)[:12]}…); the file is corrupt or was replaced")
    try:
        blob = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as e:
        why = ("it holds pickled objects beyond tensors and plain data (refused unread)"
               if "weights only" in str(e).lower() else _first_line(e))
        raise CheckpointError(f"{path} is not a weights-only checkpoint: {why}") from None
    except Exception as e:    # truncated zip, a foreign file: torch raises RuntimeError, KeyError, EOFError...
        raise CheckpointError(f"{path} is not a readable torch checkpoint "
                              f"({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(blob, dict) or "config" not in blob:
        raise CheckpointError(f"{path} is a torch file but not a {kind} checkpoint (no config)")
    return blob, card, digest


@contextmanager
def building(path: str | Path, kind: str):
    """Turn a blob that does not fit the network (missing keys, other shapes) into one line."""
    try:
        yield
    except (KeyError, TypeError, RuntimeError, ValueError) as e:
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path} does not hold a {kind} ({type(e).__name__}: {_first_line(e)})") from None


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


def load_model(path: str | Path = DEFAULT_MODEL, device: str = "cpu", trust: bool = False) -> LoadedModel:
    """Load a denoiser: a shipped one, or with trust=True any file whose card matches it."""
    blob, card, digest = read_checkpoint(path, trust, device, kind="model", train_verb="train")
    with building(path, "denoiser"):
        model = Denoiser(DenoiserConfig(**blob["config"])).to(device)
        model.load_state_dict(blob["state_dict"])
        mean, std = blob["dos_mean"].numpy(), blob["dos_std"].numpy()
    model.eval()
    return LoadedModel(model, mean, std, card, digest, Path(path))
