"""Energy above hull on a hand-made hull; real SevenNet-l3i5 and CHGNet relaxations and hulls,
each potential with its own cache."""
import shutil

import pytest
from pymatgen.analysis.phase_diagram import PDEntry
from pymatgen.core import Composition, Lattice, Structure

from dosmatgen_core.scoring.stability import (DEFAULT_POTENTIAL, Hull, assess, energy_above_hull, relax,
                                              static_energy)


def test_three_entry_hull_gives_the_right_energy_above_hull():
    entries = [PDEntry(Composition("Cu"), 0.0), PDEntry(Composition("Zn"), 0.0),
               PDEntry(Composition("CuZn"), -2.0)]          # -1 eV/atom at x = 1/2
    # Cu2Zn sits at x_Zn = 1/3; the hull there is the Cu–CuZn tie line: -2/3 eV/atom
    assert energy_above_hull(entries, Composition("Cu2Zn"), -0.5) == pytest.approx(1 / 6, abs=1e-9)
    assert energy_above_hull(entries, Composition("CuZn"), -1.0) == pytest.approx(0.0, abs=1e-9)
    assert energy_above_hull(entries, Composition("CuZn"), -1.2) == pytest.approx(-0.2, abs=1e-9)


def test_sevennet_is_the_default():
    assert DEFAULT_POTENTIAL == "sevennet"
    assert Hull.__init__.__defaults__[-1] == "sevennet" and relax.__defaults__[-1] == "sevennet"


@pytest.mark.parametrize("potential, a_range", [("sevennet", (3.57, 3.68)), ("chgnet", (3.57, 3.68))])
def test_relaxation_takes_strained_fcc_cu_to_its_lattice_constant(potential, a_range):
    """fcc Cu built 7 % too large (a = 3.85 Å; experiment 3.615, PBE 3.63) relaxes downhill to it."""
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.85), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    e0 = static_energy(s, potential)
    r = relax(s, steps=60, potential=potential)
    a_cubic = (4 * r["structure"].volume) ** (1 / 3)       # the primitive cell holds 1 of the cube's 4 atoms
    assert a_range[0] < a_cubic < a_range[1]
    assert r["energy_per_atom"] < e0 - 0.05
    assert -4.3 < r["energy_per_atom"] < -3.9               # Cu's PBE energy is about -4.1 eV/atom
    assert r["steps"] <= 60 and r["converged"] and r["potential"] == potential


def test_unknown_potential_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mace"):
        Hull(tmp_path / "hull.db", potential="mace")
    s = Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])
    with pytest.raises(ValueError, match="mace"):
        relax(s, potential="mace")


@pytest.mark.needs_mp
@pytest.mark.parametrize("potential", ["sevennet", "chgnet"])
def test_rock_salt_lif_lands_on_the_li_f_hull(tmp_path, potential):
    """The Li–F hull (MP's LiF and Li, relaxed bcc Li, an F2 molecule) built with each potential
    puts relaxed rock-salt LiF, the known ground state, on the hull, far below the elements."""
    h = Hull(tmp_path / "hull.db", potential=potential)
    lif = Structure.from_spacegroup("Fm-3m", Lattice.cubic(4.30), ["Li", "F"],     # 6 % too large
                                    [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()
    rec = assess(lif, h)
    assert rec["potential"] == potential and h.label in rec["hull_note"] and rec["relax_steps"] > 0
    assert rec["e_above_hull"] == pytest.approx(0.0, abs=0.03) and rec["stable_0.1"]
    # measured against the elements alone (MP's LiF left out), it is far below them
    e_form, _ = h.e_above_hull(Composition("LiF"), rec["energy_per_atom"], exclude=("mp-1138",))
    assert e_form < -2.0


@pytest.mark.needs_mp
def test_the_two_potentials_never_share_a_cache(tmp_path):
    hs, hc = Hull(tmp_path / "hull.db", potential="sevennet"), Hull(tmp_path / "hull.db", potential="chgnet")
    assert hs.cache_path.name == "hull-sevennet.db" and hc.cache_path.name == "hull-chgnet.db"
    es, ec = (h.entries({"Cu"})[0] for h in (hs, hc))         # relaxed fcc Cu, computed and cached by each
    assert es.name == "Cu (reference state, SevenNet-l3i5-relaxed)" and es.energy_per_atom != ec.energy_per_atom
    assert hs.db.count() == hc.db.count() and hs.db.metadata["potential"] == "sevennet"
    # a SevenNet cache put where a CHGNet one belongs is refused, not read
    shutil.copy(hs.cache_path, tmp_path / "moved-chgnet.db")
    with pytest.raises(ValueError, match="sevennet"):
        Hull(tmp_path / "moved.db", potential="chgnet")


@pytest.mark.needs_mp
def test_hull_says_why_when_an_element_has_no_reference(tmp_path):
    h = Hull(tmp_path / "hull.db")
    e, note = h.e_above_hull(Composition("Fr2Cu"), -1.0)    # no reference state for Fr in ASE or the tables
    assert e is None and "Fr" in note


@pytest.mark.parametrize("el, n, relax_cell", [("Ga", 4, True), ("Se", 3, True), ("O", 2, False), ("Cu", 1, True)])
def test_every_element_has_a_reference_state(el, n, relax_cell):
    from dosmatgen_core.scoring.elements import elemental_reference
    s, cell = elemental_reference(el)
    assert len(s) == n and cell == relax_cell and [e.symbol for e in s.composition.elements] == [el]
    if n > 1:      # no overlapping atoms: the nearest neighbour is a real bond
        d = s.distance_matrix
        assert d[d > 0].min() > 1.0


@pytest.mark.needs_mp
def test_only_the_chgnet_hull_reads_energies_stored_in_the_reference_db(tmp_path, seed_lines):
    """The Ni-Au CHGNet hull reads the db row's stored CHGNet energy; the SevenNet hull computes
    its own for the same row (the stored value is CHGNet's), and each relaxes its own elements."""
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
    ents = Hull(tmp_path / "hull.db", str(tmp_path / "ref.db"), potential="chgnet").entries({"Au", "Ni"})
    ents = {e.name: e for e in ents}
    assert ents["L12-Au3Ni-chgnet"].energy_per_atom == pytest.approx(-9.0)
    assert "Au (reference state, CHGNet-relaxed)" in ents and "Ni (reference state, CHGNet-relaxed)" in ents
    ents = {e.name: e for e in Hull(tmp_path / "hull.db", str(tmp_path / "ref.db")).entries({"Au", "Ni"})}
    assert -6.0 < ents["L12-Au3Ni-chgnet"].energy_per_atom < -3.0         # SevenNet's own, not the -9
    assert "Ni (reference state, SevenNet-l3i5-relaxed)" in ents
