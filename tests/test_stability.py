"""Energy above hull on a hand-made hull, and a real CHGNet relaxation."""
import pytest
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Composition, Lattice, Structure

from dosmatgen_core.scoring.stability import Hull, energy_above_hull, relax


def test_three_entry_hull_gives_the_right_energy_above_hull():
    entries = [PDEntry(Composition("Cu"), 0.0), PDEntry(Composition("Zn"), 0.0),
               PDEntry(Composition("CuZn"), -2.0)]          # -1 eV/atom at x = 1/2
    # Cu2Zn sits at x_Zn = 1/3; the hull there is the Cu–CuZn tie line: -2/3 eV/atom
    assert energy_above_hull(entries, Composition("Cu2Zn"), -0.5) == pytest.approx(1 / 6, abs=1e-9)
    assert energy_above_hull(entries, Composition("CuZn"), -1.0) == pytest.approx(0.0, abs=1e-9)
    assert energy_above_hull(entries, Composition("CuZn"), -1.2) == pytest.approx(-0.2, abs=1e-9)


def test_chgnet_relaxes_a_strained_cell_downhill():
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.85), ["Cu"], [[0, 0, 0]])   # 7 % too large
    from dosmatgen_core.scoring.stability import static_energy
    e0 = static_energy(s)
    r = relax(s, steps=60)
    assert r["energy_per_atom"] < e0
    assert r["structure"].lattice.a < 3.85
    assert r["steps"] <= 60


def test_hull_says_why_when_an_element_has_no_reference(tmp_path):
    h = Hull(tmp_path / "hull.db")
    e, note = h.e_above_hull(Composition("Fr2Cu"), -1.0)    # no reference state for Fr in ASE or the tables
    assert e is None and "Fr" in note


@pytest.mark.parametrize("el, n, relax_cell", [("Ga", 4, True), ("Se", 3, True), ("O", 2, False), ("Cu", 1, True)])
def test_every_element_has_a_reference_state(el, n, relax_cell):
    from dosmatgen_core.scoring.stability import elemental_reference
    s, cell = elemental_reference(el)
    assert len(s) == n and cell == relax_cell and [e.symbol for e in s.composition.elements] == [el]
    if n > 1:      # no overlapping atoms: the nearest neighbour is a real bond
        d = s.distance_matrix
        assert d[d > 0].min() > 1.0


def test_hull_uses_energies_stored_in_the_reference_db(tmp_path, seed_lines):
    """The Ni-Au hull reads the db row's stored CHGNet energy; an entry for Au3Ni appears once
    per known structure, and the elemental references come relaxed from the cache."""
    import gzip
    import json
    from dosmatgen_core.labels.reference_db import build_db
    shard = tmp_path / "s" / "labels-0000.jsonl.gz"
    shard.parent.mkdir()
    with gzip.open(shard, "wt") as fh:
        fh.write(json.dumps(seed_lines["L12-Au3Ni-chgnet"]) + "\n")
    build_db([shard], tmp_path / "ref.db")
    from ase.db import connect
    with connect(tmp_path / "ref.db") as db:      # make the stored value recognisable
        row = next(db.select())
        db.update(row.id, chgnet_energy=-9.0)
    h = Hull(tmp_path / "hull.db", str(tmp_path / "ref.db"))
    ents = {e.name: e for e in h.entries({"Au", "Ni"})}
    assert ents["L12-Au3Ni-chgnet"].energy_per_atom == pytest.approx(-9.0)
    assert "Au (reference state, CHGNet-relaxed)" in ents and "Ni (reference state, CHGNet-relaxed)" in ents
