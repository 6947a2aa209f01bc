"""The truth bench's settings that more than one of its modules reads (benchmarks.truth,
truth_dft, truth_replacements): each defined once, here."""
from __future__ import annotations

from dosmatgen_core.paths import ROOT

CACHE = ROOT / "runs" / "truth"
RELAXED = CACHE / "relaxed.jsonl"        # DFT of relaxed candidates, by the drawn candidate's key
TOP = 3
MAX_DFT_ATOMS = 8
