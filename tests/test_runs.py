"""Run store round trip, exports that read back, and a DFT verification that fails cleanly."""
import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen_core.candidates import runs
from dosmatgen_core.labels.labeller import Recipe
from dosmatgen_core.scoring.verify import Verifier


def fake_run(cif):
    target = np.exp(-np.linspace(-10, 10, 400) ** 2).tolist()
    cand = {"index": 0, "rank": 1, "cif": cif, "formula": "Cu", "n_atoms": 1, "site_to_target": {0: 0},
            "predicted_dos": [target], "valid": True}
    return {"title": "t", "settings": {"seed": 1, "targets": [target]}, "summary": {"n": 1},
            "candidates": [cand], "baseline": []}


def test_store_round_trip_and_delete(tmp_path):
    s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    back = store.get(rid)
    assert back["candidates"][0]["site_to_target"] == {"0": 0}
    assert store.list()[0]["id"] == rid
    store.delete(rid)
    assert store.list() == []
    with pytest.raises(KeyError):
        store.get(rid)


def test_exports_read_back():
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sym = Structure.from_str(runs.to_cif(s, symmetrised=True), fmt="cif")
    p1 = Structure.from_str(runs.to_cif(s), fmt="cif")
    assert len(sym) == len(p1) == 8 and "Fm-3m" in runs.to_cif(s, symmetrised=True)
    assert Structure.from_str(runs.to_poscar(s), fmt="poscar").composition == s.composition
    assert runs.to_extxyz(s).splitlines()[0].strip() == "8"
    run = fake_run(runs.to_cif(s))
    csv = runs.dos_csv(run["candidates"][0], run["settings"]["targets"]).splitlines()
    assert csv[0] == "energy_minus_ef_eV,target_site0,predicted_site0" and len(csv) == 401
    assert json.loads(runs.run_json(run))["settings"]["seed"] == 1


@pytest.mark.dft
def test_unconverged_verification_is_reported_and_run_is_kept(tmp_path):
    s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    before = store.get(rid)
    res = Verifier(store).run(rid, 1, recipe=Recipe(maxiter=2), timeout=300)
    assert res["status"] == "failed"
    assert "converge" in res["error"].lower()
    assert store.get(rid) == before       # nothing else in the run changed


@pytest.mark.dft
def test_verification_stores_the_dft_site_dos(tmp_path):
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    res = Verifier(store).run(rid, 1, timeout=600)
    assert res["status"] == "done", res.get("error")
    dft = np.array(res["result"]["site_dos"])
    assert dft.shape == (1, 400)
    from dosmatgen_core import dos
    assert dos.integrate(dft[0], upto=0.0) == pytest.approx(11.0, abs=0.05)   # Cu: 3d10 4s1
    assert set(res["result"]["dos_match"]["0"]) >= {"mae", "cosine", "wasserstein"}


@pytest.mark.dft
def test_verification_after_relaxation(tmp_path):
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.85), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    res = Verifier(store).run(rid, 1, timeout=600, relaxed=True)
    assert res["status"] == "done", res.get("error")
    assert res["result"]["relaxed"] is True
    calc = Structure.from_str(res["result"]["cif"], fmt="cif")
    assert calc.volume < s.volume          # CHGNet shrank the 7 %-too-large cell before DFT
