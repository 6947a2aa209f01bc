import gzip
import json
import os
from pathlib import Path

import pytest

from dosmatgen_core.paths import missing_mp_tables

ROOT = Path(__file__).resolve().parent
SEED_SHARD = ROOT / "data" / "labels" / "seed-000.jsonl.gz"

# GPAW and BLAS in tests: one thread each, the CI box has two cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    # a checkout without ../shared beside it cannot judge novelty or build MP hulls: say so, once
    missing = missing_mp_tables()
    no_mp = pytest.mark.skip(reason=f"needs the shared MP tables: {', '.join(missing)} missing "
                                    "(set DOSMATGEN_SHARED)")
    slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if missing and "needs_mp" in item.keywords:
            item.add_marker(no_mp)
        if "slow" in item.keywords and not config.getoption("--runslow"):
            item.add_marker(slow)


@pytest.fixture(scope="session")
def seed_lines() -> dict:
    """The seed labels by material_id (successful ones only)."""
    out = {}
    with gzip.open(SEED_SHARD, "rt") as fh:
        for line in fh:
            d = json.loads(line)
            if "failed" not in d:
                out[d["material_id"]] = d
    return out
