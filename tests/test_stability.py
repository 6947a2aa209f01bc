"""Energy above hull on a hand-made hull, and a real CHGNet relaxation."""
import pytest
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Composition, Lattice, Structure

from dosmatgen_core.stability import Hull, energy_above_hull, relax


def test_three_entry_hull_gives_the_right_energy_above_hull():
    entries = [PDEntry(Composition("Cu"), 0.0), PDEntry(Composition("Zn"), 0.0),
               PDEntry(Composition("CuZn"), -2.0)]          # -1 eV/atom at x = 1/2
    # Cu2Zn sits at x_Zn = 1/3; the hull there is the Cu–CuZn tie line: -2/3 eV/atom
    assert energy_above_hull(entries, Composition("Cu2Zn"), -0.5) == pytest.approx(1 / 6, abs=1e-9)
    assert energy_above_hull(entries, Composition("CuZn"), -1.0) == pytest.approx(0.0, abs=1e-9)
    assert energy_above_hull(entries, Composition("CuZn"), -1.2) == pytest.approx(-0.2, abs=1e-9)


def test_chgnet_relaxes_a_strained_cell_downhill():
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.85), ["Cu"], [[0, 0, 0]])   # 7 % too large
    from dosmatgen_core.stability import static_energy
    e0 = static_energy(s)
    r = relax(s, steps=60)
    assert r["energy_per_atom"] < e0
    assert r["structure"].lattice.a < 3.85
    assert r["steps"] <= 60


def test_hull_says_why_when_an_element_has_no_reference(tmp_path):
    h = Hull(tmp_path / "hull.db")
    e, note = h.e_above_hull(Composition("Fr2Cu"), -1.0)    # no reference state for Fr in ASE or the tables
    assert e is None and "Fr" in note
