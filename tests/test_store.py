import gzip
import json
import sqlite3

import numpy as np
import pytest

from dosmatgen_core.labels.reference_db import ReferenceDB, build_db

IDS = ["mp-22905", "mp-522", "L12-Au3Ni-chgnet", "mp-1941"]


@pytest.fixture()
def small_shard(tmp_path, seed_lines):
    path = tmp_path / "shards" / "labels-0000.jsonl.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt") as fh:
        for mid in IDS:
            fh.write(json.dumps(seed_lines[mid]) + "\n")
        fh.write(json.dumps({"material_id": "mp-x", "failed": "ValueError: whatever"}) + "\n")
    return path


def test_round_trip_gives_identical_arrays(tmp_path, small_shard, seed_lines):
    info = build_db([small_shard.parent], tmp_path / "ref.db")
    assert info == {"rows": 4, "failed_lines_skipped": 1, "db": str(tmp_path / "ref.db")}
    db = ReferenceDB(tmp_path / "ref.db")
    for mid in IDS:
        ref = db.get(mid)
        assert np.array_equal(ref.site_dos, np.array(seed_lines[mid]["site_dos"]))
        assert ref.e_fermi == seed_lines[mid]["e_fermi_eV"]
    au3ni = db.get("L12-Au3Ni-chgnet")
    assert au3ni.spacegroup == "Pm-3m" and sorted(au3ni.symbols) == ["Au", "Au", "Au", "Ni"]
    # each row carries its CHGNet energy, computed once here for the stability hull
    from dosmatgen_core.scoring.stability import static_energy
    from dosmatgen_core.structures import to_structure
    row = next(db.db.select(material_id="L12-Au3Ni-chgnet"))
    assert row.chgnet_energy == pytest.approx(static_energy(to_structure(au3ni.atoms), "chgnet"), abs=1e-4)
    assert -6.0 < row.chgnet_energy < -2.0        # a bound intermetallic, eV/atom


def test_each_material_is_listed_with_its_structure_type(tmp_path, small_shard):
    """Walk 13: two TiO2 entries told apart by space group alone; the AFLOW type names them."""
    from studio.catalogue import option_text, reference_rows, search
    build_db([small_shard], tmp_path / "ref.db", chgnet=False)
    rows = {r["material_id"]: r for r in reference_rows(ReferenceDB(tmp_path / "ref.db"))}
    assert rows["mp-522"]["structure_type"]["strukturbericht"] == "L1_0"
    assert option_text(rows["mp-522"]) == "AuCu · mp-522 · tetraauricupride (L1₀) · P4/mmm · 2 atoms · DFT label"
    # the preset's name says L1₂ already
    assert option_text(rows["L12-Au3Ni-chgnet"]).count("L1₂") == 1
    # a type is found by its name or symbol, in the library (the CLI) and on the page alike
    db = ReferenceDB(tmp_path / "ref.db")
    assert [r["material_id"] for r in db.search(text="Tetraauricupride")] == ["mp-522"]
    assert [r["material_id"] for r in db.search(text="L1_0")] == ["mp-522"]
    assert [r["material_id"] for r in db.search(text="L10")] == ["mp-522"]           # read as no formula
    # a type found by an earlier rule is found again by today's at the next build (prototypes.RULE)
    from ase.db import connect
    with connect(tmp_path / "ref.db") as con:
        row = con.get(material_id="mp-522")
        con.update(row.id, structure_type='""', type_rule="matcher")
    with pytest.raises(ValueError, match="nor the structure type of any labelled material"):
        ReferenceDB(tmp_path / "ref.db").search(text="L10")
    build_db([small_shard], tmp_path / "ref.db", chgnet=False)
    assert [r["material_id"] for r in ReferenceDB(tmp_path / "ref.db").search(text="L10")] == ["mp-522"]
    assert "L12-Au3Ni-chgnet" in [r["material_id"] for r in db.search(text="L12")]
    assert db.search(text="tetraauricupride", max_atoms=1) == []                   # a type, too large: none, no error
    assert [r["material_id"] for r in search("tetraauricupride", list(rows.values()))["labelled"]] == ["mp-522"]
    for typo in ("zz", "perovskitx", "Qz", "Au Qq"):       # 'Qz': pymatgen's dummy species, no formula
        with pytest.raises(ValueError, match="neither"):
            db.search(text=typo)
        with pytest.raises(ValueError, match="neither"):
            search(typo, list(rows.values()))
    # an id the way it is stored, any case for an MP id, in both
    for text in ("MP-522", "L12-Au3Ni-chgnet"):
        assert [r["material_id"] for r in db.search(text=text)] == [r["material_id"] for r in search(text, list(rows.values()))["labelled"]] != []


def test_a_formula_in_the_wrong_case_is_named_as_written():
    """Walk 15 typed 'nacl' and was told it is no formula, with no word of the capitals."""
    from dosmatgen_core.labels.material_query import not_found, written_as_formula
    assert written_as_formula("nacl") == ["NaCl"] and written_as_formula("GAAS") == ["GaAs"]
    assert written_as_formula("co") == ["Co", "CO"] and written_as_formula("tio2") == ["TiO2"]
    assert written_as_formula("perovskit") == written_as_formula("spinel") == written_as_formula("Qz") == []
    assert not_found("nacl").endswith("formulas are written with capitals: did you mean NaCl?")
    assert "did you mean" not in not_found("spinel")


def test_typed_text_is_read_one_way():
    """material_query, which the CLI and the app both read a search with."""
    from dosmatgen_core.labels.material_query import find, parse
    assert parse("") == {} and parse("  ") == {}
    assert parse("MP-22862") == {"id": "mp-22862"} and parse("mvc-1") == {"id": "mvc-1"}
    assert parse("gen:0a1b", ids={"gen:0a1b"}) == {"id": "gen:0a1b"} and parse("gen:0a1b") == {"type": "gen:0a1b"}
    assert parse("Au-Ni-Cu") == {"elements": ["Au", "Ni", "Cu"]}           # two dashes: elements, not an id
    assert parse("ClNa") == {"formula": "NaCl", "elements": ["Cl", "Na"]}
    assert parse("B2") == {"formula": "B", "elements": ["B"]}
    for word in ("A15", "L12", "L1_2", "Qz", "xx", "Perovskite"):
        assert parse(word) == {"type": word.lower()}
    b2 = {"material_id": "x", "formula": "ClCs", "elements": ["Cl", "Cs"],
          "structure_type": {"mineral": "", "strukturbericht": "B2", "aflow": "AB_cP2_221_a_b"}}
    boron = {"material_id": "b", "formula": "B12", "elements": ["B"], "structure_type": None}
    assert find("B2", parse("B2"), [b2]) == ({"type": "b2"}, [b2])          # no boron: the CsCl type
    assert find("B2", parse("B2"), [b2, boron]) == (parse("B2"), [boron])  # boron first
    assert find("B27", parse("B27"), [b2]) == (parse("B27"), [])            # neither: nothing, no error
    with pytest.raises(ValueError, match="neither a formula"):
        find("A15", parse("A15"), [b2])


def test_queries(tmp_path, small_shard):
    build_db([small_shard], tmp_path / "ref.db")
    db = ReferenceDB(tmp_path / "ref.db")
    ids = lambda rows: [r["material_id"] for r in rows]
    assert ids(db.search(text="mp-522")) == ["mp-522"]
    assert ids(db.search(text="Au3Ni")) == ["L12-Au3Ni-chgnet"]
    assert ids(db.search(text="Ni")) == ["mp-1941", "L12-Au3Ni-chgnet"]      # the fewest elements first
    assert ids(db.search(elements=["Au", "Ni"])) == ["L12-Au3Ni-chgnet"]
    assert ids(db.search(natoms=4)) == ["L12-Au3Ni-chgnet"]
    assert ids(db.search(max_atoms=2, elements=["Cu"])) == ["mp-522"]
    with pytest.raises(ValueError, match="unknown element"):
        db.search(elements=["Qq"])
    with pytest.raises(KeyError):
        db.get("mp-0")


def test_build_is_deterministic(tmp_path, small_shard):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    build_db([small_shard], a)
    build_db([small_shard], b)
    assert a.read_bytes() == b.read_bytes()


def test_bad_shard_line_leaves_no_partial_database(tmp_path, small_shard, seed_lines):
    good = tmp_path / "ref.db"
    build_db([small_shard], good)
    before = good.read_bytes()
    broken = tmp_path / "broken.jsonl.gz"
    bad = dict(seed_lines["mp-522"], material_id="mp-bad", site_dos=[[float("nan")] * 400] * 2)
    with gzip.open(broken, "wt") as fh:
        fh.write(json.dumps(seed_lines["mp-22905"]) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ValueError, match="NaN"):
        build_db([broken], good)
    assert good.read_bytes() == before
    assert not list(tmp_path.glob("*.building*"))


def test_a_rebuild_reuses_the_energy_of_an_unchanged_cell_only(tmp_path, small_shard, seed_lines, monkeypatch):
    # a rebuild over thousands of labels must not run CHGNet on each again; a changed cell must
    db_path = tmp_path / "ref.db"
    build_db([small_shard], db_path)
    first = {r.material_id: r.chgnet_energy for r in ReferenceDB(db_path).db.select()}
    moved = dict(seed_lines["mp-22905"], material_id="mp-22905")
    from dosmatgen_core.structures import atoms_from_cif, atoms_to_cif
    atoms = atoms_from_cif(moved["cif"])
    atoms.set_cell(atoms.cell[:] * 1.02, scale_atoms=True)      # same id, a different cell
    moved["cif"] = atoms_to_cif(atoms)
    later = tmp_path / "shards" / "labels-0001.jsonl.gz"
    with gzip.open(later, "wt") as fh:
        fh.write(json.dumps(moved) + "\n")
    calls, typed = [], []
    import dosmatgen_core.labels.reference_db as reference_db
    real_type = reference_db.structure_type
    monkeypatch.setattr(reference_db, "structure_type", lambda s: typed.append(s.composition.reduced_formula) or real_type(s))
    import dosmatgen_core.scoring.stability as stability
    real = stability.static_energy
    monkeypatch.setattr(stability, "static_energy", lambda s, p: calls.append(s.composition.reduced_formula) or real(s, p))
    build_db([small_shard.parent], db_path)
    again = {r.material_id: r.chgnet_energy for r in ReferenceDB(db_path).db.select()}
    assert len(calls) == 1 and len(typed) == 1                    # only the changed cell
    assert {k: again[k] for k in again if k != "mp-22905"} == {k: first[k] for k in first if k != "mp-22905"}
    assert again["mp-22905"] != first["mp-22905"]
