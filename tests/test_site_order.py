"""Atom order is data: DFT rows belong to the candidate's own atoms, in its own order.

pymatgen's CIF reader regroups sites by element; a candidate [Sn, Ni, Au, Ni] once came back with
rows for [Ni, Ni, Sn, Au], so "site 0" was scored with another atom's curve. These tests fail
when any step between the candidate's CIF and its DFT rows reorders the sites.
"""
import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen_core import dos
from dosmatgen_core.labels import labeller as labelling
from dosmatgen_core.candidates import runs
from dosmatgen_core.paths import MP_CSVS
from dosmatgen_core.structures import atoms_from_cif, atoms_to_cif, iter_mp_csv, niggli_atoms, read_structure
from dosmatgen_core.scoring.verify import Verifier, rows_out_of_order

SN_NI_AU_NI = Structure(Lattice.cubic(4.0), ["Sn", "Ni", "Au", "Ni"],
                        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def _random_cells(n, seed=0):
    rng = np.random.default_rng(seed)
    pool = ["Li", "Na", "Mg", "Al", "Si", "Ti", "Fe", "Ni", "Cu", "Zn", "Ga", "Sn", "Au", "O", "Cl", "S", "N"]
    for _ in range(n):
        k = int(rng.integers(3, 8))
        lat = Lattice.from_parameters(*(rng.uniform(4.5, 7.0, 3)), *(rng.uniform(70, 110, 3)))
        # jittered grid points: no two atoms closer than ~1.5 Å
        grid = np.array([[i, j, l] for i in range(2) for j in range(2) for l in range(2)]) / 2.0
        frac = grid[rng.permutation(8)[:k]] + rng.uniform(-0.04, 0.04, (k, 3))
        yield Structure(lat, list(rng.choice(pool, k)), frac)


def test_cif_is_read_back_in_the_order_it_was_written():
    s = read_structure(runs.to_cif(SN_NI_AU_NI))
    assert [x.specie.symbol for x in s] == ["Sn", "Ni", "Au", "Ni"]
    assert np.allclose(s.frac_coords, SN_NI_AU_NI.frac_coords)
    for cell in _random_cells(200):
        back = read_structure(runs.to_cif(cell))
        assert [x.specie.symbol for x in back] == [x.specie.symbol for x in cell]
        assert np.allclose(back.frac_coords, np.mod(cell.frac_coords, 1.0), atol=1e-6)


def test_stored_candidate_reads_back_in_its_own_order():
    cand = {"rank": 1, "cif": runs.to_cif(SN_NI_AU_NI)}
    assert [x.specie.symbol for x in runs.structure_of(cand)] == ["Sn", "Ni", "Au", "Ni"]


@pytest.mark.parametrize("keep_cell", [True, False])
def test_dft_rows_follow_the_candidate_sites(monkeypatch, keep_cell):
    """GPAW stubbed: row i carries atom i's atomic number, so a reordering shows as a wrong row."""
    def fake_dft(atoms, recipe=None, txt=None):
        rows = np.repeat(atoms.numbers[:, None].astype(float), dos.NPTS, axis=1)
        return {"energy_eV": 0.0, "e_fermi_eV": 0.0, "site_dos": rows, "total_dos": rows.sum(0),
                "n_kpts": 1, "seconds": 0.0}
    monkeypatch.setattr(labelling, "gpaw_site_dos", fake_dft)
    cells = [SN_NI_AU_NI, *_random_cells(60, seed=1)]
    for cell in cells:
        line = labelling.label_structure("cand", runs.to_cif(cell), keep_cell=keep_cell)
        if "failed" in line:
            continue   # too-short translations are refused, with a reason; order is not at stake
        rows = np.asarray(line["site_dos"])[:, 0].astype(int).tolist()
        assert rows == list(cell.atomic_numbers), (cell.formula, rows)
        assert rows_out_of_order(runs.to_cif(cell), line["cif"]) is None
    assert "failed" not in labelling.label_structure("cand", runs.to_cif(SN_NI_AU_NI), keep_cell=keep_cell)


def test_a_reordered_calculation_is_refused():
    mixed = Structure(SN_NI_AU_NI.lattice, ["Ni", "Ni", "Sn", "Au"],
                      [[0.5, 0.5, 0], [0, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0.5]])
    assert "not the candidate's" in rows_out_of_order(runs.to_cif(SN_NI_AU_NI), runs.to_cif(mixed))


@pytest.mark.dft
def test_verification_scores_the_conditioned_atom_with_real_dft(tmp_path):
    """Rock salt written Cl first: row 0 must be chlorine's DOS (its filled 3p band: about 5
    electrons inside the −10…0 eV window, the 3s band lies below it; Na keeps under 1), and the
    target's site 0 is scored on it."""
    s = Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), ["Cl", "Na"],
                  [[0.5, 0.5, 0.5], [0, 0, 0]])
    cif = runs.to_cif(s)
    assert atoms_from_cif(cif).get_chemical_symbols() == ["Cl", "Na"]
    target = np.exp(-np.linspace(-10, 10, 400) ** 2).tolist()
    cand = {"index": 0, "rank": 1, "cif": cif, "formula": "NaCl", "n_atoms": 2, "site_to_target": {0: 0},
            "predicted_dos": [target, target], "valid": True}
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save({"title": "t", "settings": {"seed": 1, "targets": [target]}, "summary": {"n": 1},
                      "candidates": [cand], "baseline": []})
    res = Verifier(store, label_dir=tmp_path / "labels").run(rid, 1, timeout=900)
    assert res["status"] == "done", res.get("error")
    rows = np.asarray(res["result"]["site_dos"])
    electrons = [dos.integrate(r, upto=0.0) for r in rows]
    assert electrons[0] > 4.0 > 2.0 > electrons[1], electrons
    assert res["result"]["dos_match"]["0"]["mae"] == pytest.approx(dos.mae(np.asarray(target), rows[0]), abs=1e-6)


@pytest.mark.slow
def test_a_cell_gpaw_calls_weird_is_calculated_as_its_niggli_cell_in_the_same_order():
    """Generated cells near 120° (here γ = 123.4°, three candidates of the truth bench) pass the
    angle check, yet GPAW's finite-difference stencil refuses them ("weird unit cell"). The
    labeller then calculates the Niggli cell: same sites, same order, so rows still match."""
    s = Structure(Lattice.from_parameters(3.10, 3.17, 5.0, 90.67, 90.04, 123.38), ["Na", "Li"],
                  [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(ValueError, match="weird unit cell"):
        labelling.gpaw_site_dos(labelling.to_atoms(s), labelling.FAST_RECIPE)
    line = labelling.label_structure("gen:weird", runs.to_cif(s), labelling.FAST_RECIPE, keep_cell=True)
    assert "failed" not in line, line.get("failed")
    assert atoms_from_cif(line["cif"]).get_chemical_symbols() == ["Na", "Li"]
    electrons = [dos.integrate(np.asarray(r), upto=0.0) for r in line["site_dos"]]
    assert all(0.0 < e < 3.0 for e in electrons), electrons       # one valence s electron each, shared


@pytest.mark.needs_mp
@pytest.mark.slow
def test_a_cell_whose_symmetry_gpaw_gets_wrong_is_calculated_without_symmetry():
    """NbPt2 (mp-11514, body-centred, 3 atoms): GPAW's symmetry analysis raises
    SymmetryAnalysisBug on its Niggli cell, which lost 24 MP structures to the labeller. The
    same cell is then calculated without symmetry reduction: same sites, same order."""
    cif = next(r["cif"] for f in MP_CSVS for r in iter_mp_csv(f) if r["material_id"] == "mp-11514")
    cell = atoms_from_cif(atoms_to_cif(niggli_atoms(read_structure(cif, "cif"))))
    with pytest.raises(Exception, match="standardize_cell") as exc:
        labelling.gpaw_site_dos(cell, labelling.FAST_RECIPE)
    assert type(exc.value).__name__ == "SymmetryAnalysisBug"
    line = labelling.label_structure("mp-11514", cif, labelling.FAST_RECIPE)
    assert "failed" not in line, line.get("failed")
    assert atoms_from_cif(line["cif"]).get_chemical_symbols() == cell.get_chemical_symbols()
    electrons = [dos.integrate(np.asarray(r), upto=0.0) for r in line["site_dos"]]
    # from -10 eV up: about 5 electrons on Nb (4d, 5s), about 10 on each Pt (5d, 6s)
    assert len(electrons) == 3 and all(2.5 < e < 13.0 for e in electrons), electrons


def test_a_file_whose_readers_disagree_is_refused_where_its_order_must_hold():
    """in_file_order permutes pymatgen's reading into the file's (ASE's) order. Where the two
    readings do not hold the same atoms there is no file order to keep: a file someone gives is
    refused (strict), a stored one keeps pymatgen's reading."""
    from dosmatgen_core.structures import StructureError, in_file_order
    cif = runs.to_cif(SN_NI_AU_NI)
    fewer = Structure(SN_NI_AU_NI.lattice, ["Sn", "Ni", "Au"], SN_NI_AU_NI.frac_coords[:3])
    moved = SN_NI_AU_NI.copy()
    moved.translate_sites([0], [0.1, 0, 0])
    for other, words in ((fewer, "ASE reads 4 atoms, pymatgen 3"), (moved, "place them differently")):
        with pytest.raises(StructureError, match=words):
            in_file_order(other, cif, strict=True)
        assert in_file_order(other, cif) is other
    assert [x.specie.symbol for x in in_file_order(SN_NI_AU_NI.get_sorted_structure(), cif, strict=True)] == \
        ["Sn", "Ni", "Au", "Ni"]
