"""What the Streamlit pages share: file locations, cached resources, target shaping, CSV upload."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from dosmatgen_core import dos as dosmod

from dosmatgen_core.paths import (DB_URL, GUIDE_PATH, HULL_PATH, MODEL_PATH,  # noqa: F401 (the pages read them here)
                                  PREDICTOR_PATH, ROOT, RUNS_PATH)
from dosmatgen_core.dos import read_dos_csv, shape_target  # noqa: F401 (the pages read them here)
from dosmatgen_core.settings import PRESET_ID, SHIPPED  # noqa: F401

DEFAULT_PARTICLES = SHIPPED.particles
DEFAULT_STEPS = SHIPPED.steps


def device_label() -> str:
    import torch
    if torch.cuda.is_available():
        return f"GPU: {torch.cuda.get_device_name(0)}"
    return f"CPU ({os.cpu_count()} cores, no GPU found)"


def model_summary(card: dict) -> str:
    """One line on the shipped generator; a fine-tune counts its source model's steps too."""
    steps = int(card.get("steps") or 0)
    ws = card.get("warm_start")
    total = steps + int(ws.get("steps") or 0) if isinstance(ws, dict) else steps
    n_lab = card.get("n_labelled_structures") or 0
    how = (f"{total / 1000:.1f}k steps ({steps / 1000:.1f}k of them fine-tuning)" if total != steps
           else f"epoch {card.get('epoch')}, {steps / 1000:.1f}k steps")
    return (f"Generator: {how}; {n_lab} labelled + {(card.get('n_train') or 0) - n_lab} unlabelled "
            f"structures, {card.get('type_diffusion', 'continuous')} atom types ({card.get('date')})")
