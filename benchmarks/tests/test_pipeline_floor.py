"""The pipeline floor's bookkeeping on real truth targets, with the relaxation and GPAW stood in
for: each target is sent through in its own site order, and its floor is its own row's distance
from its label."""
import numpy as np
import pytest

from benchmarks import pipeline_floor as floor
from dosmatgen_core import dos


def test_each_target_is_checked_once_in_site_order_and_scored_on_its_own_row(tmp_path, monkeypatch):
    seen = []

    def relax(cif, potential):
        seen.append(cif)
        return cif, {"potential": potential, "relax_steps": 3, "relax_converged": True, "relax_seconds": 0.1,
                     "volume_ratio": 1.02}

    def dft(cif, recipe, timeout, material_id=None, order_of=None, cpu=False):
        from dosmatgen_core.structures import atoms_from_cif
        n = len(atoms_from_cif(cif))
        assert order_of == cif and material_id.startswith("floor:")
        rows = np.tile(np.arange(n, dtype=float)[:, None] * 0.01 + 0.2, (1, dos.NPTS))     # row i: 0.2 + 0.01 i
        return {"site_dos": rows, "seconds": 1.0}
    monkeypatch.setattr(floor, "relax_in_site_order", relax)
    monkeypatch.setattr(floor, "dft_in_site_order", dft)
    monkeypatch.setattr(floor, "CACHE", tmp_path / "floor.jsonl")
    monkeypatch.setattr(floor, "lookup_maes", lambda site_set: {})
    res = floor.run("c", n_sites=30, max_atoms=5)
    rows = res["per_site"]
    assert len(rows) == len(seen) == 30 and all("floor_mae" in r for r in rows)
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    db = open_db(DB_URL)
    for r in rows[:5]:
        mid, site = r["site"].split("#")
        target = db.get(mid).site_dos[int(site)]
        assert r["floor_mae"] == pytest.approx(dos.mae(target, np.full(dos.NPTS, 0.2 + 0.01 * int(site))), abs=1e-9)
    assert res["summary"]["structures"] == 30 and "lookup_mae_same_sites" not in res["summary"]
    # resumed: nothing is calculated again
    seen.clear()
    assert floor.run("c", n_sites=30, max_atoms=5)["summary"]["structures"] == 30 and not seen
