"""Where everything lives, in one place: the app, the CLI, the library and the benchmarks agree.

In a checkout, paths sit under the repository root. An installed wheel carries the shipped assets
under `<prefix>/share/dosmatgen-studio/assets` and keeps its writable state (runs, caches) under
DOSMATGEN_HOME (default ~/.local/share/dosmatgen). Each path can be overridden by its variable.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IN_CHECKOUT = (ROOT / "pyproject.toml").exists() and (ROOT / "assets").is_dir()


def _env(name: str, default: Path) -> Path:
    return Path(os.environ[name]) if os.environ.get(name) else default


def _installed_assets() -> Path:
    """Where a wheel put the data files: <prefix>/share/dosmatgen-studio/assets, the prefix being
    the one this package was installed under (site-packages is <prefix>/lib/pythonX.Y/site-packages)."""
    here = Path(__file__).resolve()
    for prefix in (here.parents[4] if len(here.parents) > 4 else None, Path(sys.prefix)):
        if prefix is not None and (prefix / "share" / "dosmatgen-studio" / "assets").is_dir():
            return prefix / "share" / "dosmatgen-studio" / "assets"
    return Path(sys.prefix) / "share" / "dosmatgen-studio" / "assets"


ASSETS = _env("DOSMATGEN_ASSETS", ROOT / "assets" if IN_CHECKOUT else _installed_assets())
HOME = _env("DOSMATGEN_HOME", ROOT if IN_CHECKOUT else Path.home() / ".local" / "share" / "dosmatgen")

# shipped, read-only
MODEL_PATH = _env("DOSMATGEN_MODEL", ASSETS / "denoiser.pt")
PREDICTOR_PATH = _env("DOSMATGEN_PREDICTOR", ASSETS / "predictor.pt")
GUIDE_PATH = _env("DOSMATGEN_GUIDE", ASSETS / "guide.pt")
DB_PATH = ASSETS / "reference.db"
DB_URL = os.environ.get("DOSMATGEN_DB") or str(DB_PATH)
THREEDMOL_JS = ASSETS / "vendor" / "3dmol-2.5.5" / "3Dmol-min.js"

# labels and training data
LABEL_DIR = _env("DOSMATGEN_LABELS", HOME / "data" / "labels")
SEED_SHARD = LABEL_DIR / "seed-000.jsonl.gz"
CACHE_DIR = _env("DOSMATGEN_CACHE", HOME / "data" / "cache")
TRAIN_PACK = CACHE_DIR / "train-pack.npz"
PSEUDO_PACK = CACHE_DIR / "pseudo.npz"
# the Materials Project tables beside the checkout (../shared/data; training and novelty need them)
SHARED_DATA = _env("DOSMATGEN_SHARED", ROOT.parent / "shared" / "data")
MP_CSVS = [SHARED_DATA / "mp20" / "structures.csv.gz", SHARED_DATA / "mpts52" / "structures.csv.gz"]


def missing_mp_tables() -> list[str]:
    """The MP tables that are not where MP_CSVS says: novelty and the hull cannot work without them."""
    return [str(p) for p in MP_CSVS if not p.exists()]


# writable state
RUNS_DIR = HOME / "runs"
RUNS_PATH = _env("DOSMATGEN_RUNS", RUNS_DIR / "studio.db")
# the ML hull caches: one file per potential beside this base name (hull-sevennet.db, hull-chgnet.db)
HULL_PATH = _env("DOSMATGEN_HULL", RUNS_PATH.parent / "hull.db")
TRAIN_RUNS = RUNS_DIR / "train"
