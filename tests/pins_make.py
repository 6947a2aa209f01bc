"""Writes tests/data/sampler_pins.json: what the shipped models give for fixed seeds.

Run once before a refactor that must not change samples; tests/test_pins.py holds the code to it.
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pin_cases import draw_all  # noqa: E402

if __name__ == "__main__":
    out = {name: [{"numbers": g.crystal.numbers.tolist(), "frac": np.round(g.crystal.frac, 5).tolist(),
                   "lattice": np.round(g.crystal.lattice, 4).tolist()} for g in gens]
           for name, gens in draw_all().items()}
    Path(__file__).with_name("data").joinpath("sampler_pins.json").write_text(json.dumps(out, indent=0))
    print({k: [c["numbers"] for c in v] for k, v in out.items()})
