"""DOSMatGen Studio's science and logic: structures → labels → model → sampling → candidates → scoring."""
import os
import warnings

# spglib (pymatgen's symmetry search) prints "ssm_get_exact_positions failed" on stderr for each
# tolerance it retries, though its answer stands; in one place for the app, the CLI and the benches,
# unless a user sets SPGLIB_WARNING themselves
os.environ.setdefault("SPGLIB_WARNING", "OFF")
# pymatgen warns once per noble gas that it has no Pauling electronegativity (then gives NaN, which
# it handles) whenever a formula with He or Ar is ordered: the known tables hold such compounds
warnings.filterwarnings("ignore", message="No Pauling electronegativity", category=UserWarning)
