"""DOSMatGen Studio's science and logic: structures → labels → model → sampling → candidates → scoring."""
import os

# spglib (pymatgen's symmetry search) prints "ssm_get_exact_positions failed" on stderr for each
# tolerance it retries, though its answer stands; in one place for the app, the CLI and the benches,
# unless a user sets SPGLIB_WARNING themselves
os.environ.setdefault("SPGLIB_WARNING", "OFF")
