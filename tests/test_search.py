"""Site-DOS search over labelled sites: exact hits, exclusion, shift alignment, bad curves, the CLI."""
import json

import numpy as np
import pytest
from pymatgen.core import Composition

from dosmatgen_core import dos
from dosmatgen_core.cli import main as cli_main
from dosmatgen_core.paths import DB_URL
from dosmatgen_core.scoring import search as search_mod
from dosmatgen_core.scoring.search import SiteIndex, site_index
from dosmatgen_core.structures import atoms_from_cif


@pytest.fixture(scope="module")
def seed_index(seed_lines):
    rows = [(mid, d["formula"], atoms_from_cif(d["cif"]).get_chemical_symbols(), np.asarray(d["site_dos"]))
            for mid, d in sorted(seed_lines.items())]
    return SiteIndex.from_rows(rows)


def test_every_site_finds_itself_first(seed_index):
    for k in range(0, len(seed_index), 7):
        hit = seed_index.search(seed_index.curves[k], top=1)[0]
        assert hit.mae == pytest.approx(0.0, abs=1e-6) and hit.cosine == pytest.approx(1.0, abs=1e-6)
        # the hit is this site or one with the very same curve (a symmetry-equal site)
        same = np.flatnonzero(np.abs(seed_index.curves - seed_index.curves[k]).max(1) < 1e-6)
        assert any(seed_index.material_ids[j] == hit.material_id and seed_index.sites[j] == hit.site for j in same)


def test_ranking_is_by_the_asked_metric(seed_index):
    g = seed_index.curves[3]
    by_mae = seed_index.search(g, top=20)
    by_cos = seed_index.search(g, top=20, by="cosine")
    assert [h.mae for h in by_mae] == sorted(h.mae for h in by_mae)
    assert [h.cosine for h in by_cos] == sorted((h.cosine for h in by_cos), reverse=True)
    # each hit's numbers are the plain metrics of its own curve
    for h in by_mae[:5] + by_cos[:5]:
        j = np.flatnonzero((seed_index.material_ids == h.material_id) & (seed_index.sites == h.site))[0]
        assert h.mae == pytest.approx(dos.mae(g, seed_index.curves[j]), abs=1e-5)
        assert h.cosine == pytest.approx(dos.cosine(g, seed_index.curves[j]), abs=1e-5)


def test_excluded_material_never_appears(seed_index):
    k = 10
    own = seed_index.material_ids[k]
    hits = seed_index.search(seed_index.curves[k], top=len(seed_index), exclude={own})
    assert hits and own not in {h.material_id for h in hits}
    assert len(hits) == int(np.sum(seed_index.material_ids != own))
    assert seed_index.search(seed_index.curves[k], top=5, element="Ni", exclude={own})[0].element == "Ni"


def test_a_window_compares_the_known_part_alone(seed_index):
    """A curve known on a window only (photoemission: the occupied states) is matched there: the
    site it was cut from is found first at MAE 0, as it is not when the cut is read as zeros; and
    moved along energy, the shift is recovered with the site's own states brought into the window."""
    k = 11
    w = (-8.0, 0.0)
    sl = dos.window_slice(w)
    cut = np.zeros(dos.NPTS)
    cut[sl] = seed_index.curves[k][sl]
    same = lambda h: np.abs(seed_index.curves[seed_index.row_of[h.material_id, h.site]] - seed_index.curves[k])[sl].max() < 1e-6
    hit = seed_index.search(cut, top=1, window=w)[0]
    assert same(hit) and hit.mae == pytest.approx(0.0, abs=1e-6) and hit.cosine == pytest.approx(1.0, abs=1e-6)
    whole = seed_index.search(cut, top=1)[0]
    assert whole.mae > 0.01          # the states above E_F counted against every site
    for h in seed_index.search(cut, top=10, window=w):
        j = seed_index.row_of[h.material_id, h.site]
        assert h.mae == pytest.approx(dos.mae(cut, seed_index.curves[j], w), abs=1e-5)
        assert h.cosine == pytest.approx(dos.cosine(cut, seed_index.curves[j], w), abs=1e-5)
    # moved up by 0.5 eV: the aligned search moves the site back, bringing in its own states from below −8 eV
    moved = np.zeros(dos.NPTS)
    moved[sl] = dos.shift(seed_index.curves[k], 0.5)[sl]
    hit = seed_index.search(moved, top=1, window=w, align_shift=True, by="cosine")[0]
    assert same(hit) and hit.shift_ev == pytest.approx(0.5, abs=0.06) and hit.cosine > 0.999
    with pytest.raises(ValueError, match="at least 2 eV"):
        seed_index.search(cut, window=(0.0, 1.0))


def test_a_windowed_target_is_completed_by_the_closest_known_site_but_its_own(seed_index):
    """Outside the window the generator is given the closest known site on the window; the site the
    cut came from is that site, unless its material is excluded (a benchmark's answer)."""
    k, w = 11, (-8.0, 0.0)
    known = dos.window_mask(w)
    cut = np.where(known, seed_index.curves[k], 0.0)
    own = str(seed_index.material_ids[k])
    full = seed_index.completed(cut, w)
    assert np.allclose(full, seed_index.curves[k], atol=1e-5)      # itself, found at MAE 0 on the window
    other = seed_index.completed(cut, w, exclude={own})
    assert np.allclose(other[known], cut[known]) and not np.allclose(other[~known], seed_index.curves[k][~known])
    h = seed_index.search(cut, top=1, exclude={own}, window=w)[0]
    j = seed_index.row_of[h.material_id, h.site]
    assert np.allclose(other, dos.complete(cut, w, seed_index.curves[j]))
    assert np.array_equal(seed_index.completed(cut, None), cut)       # the whole grid is known: as given


def test_one_hit_per_structure(seed_index):
    hits = seed_index.search(seed_index.curves[0], top=8, per_structure=True)
    assert len({h.material_id for h in hits}) == len(hits) == 8


def test_a_structure_labelled_twice_is_one_hit():
    """Two DFT checks of one candidate (two draws that relaxed alike) are two labels, one structure:
    per structure it shows once; the same curve in another compound, or a distinct polymorph, stays."""
    g = np.exp(-((dos.GRID + 1.0) / 0.5) ** 2) * 4
    other = np.exp(-((dos.GRID - 2.0) / 0.5) ** 2) * 4
    rows = [("gen:a", "Ag3Ni", ["Ni", "Ag", "Ag", "Ag"], np.stack([g, other, other, other])),
            ("gen:b", "Ag3Ni", ["Ni", "Ag", "Ag", "Ag"], np.stack([g * 1.001, other, other, other])),   # a, again
            ("gen:c", "Ag3Ni", ["Ni", "Ag", "Ag", "Ag"], np.stack([g * 0.8, other, other, other])),     # a polymorph
            ("gen:d", "Cu3Ni", ["Ni", "Cu", "Cu", "Cu"], np.stack([g, other, other, other]))]           # another compound
    index = SiteIndex.from_rows(rows)
    hits = index.search(g, top=4, per_structure=True)
    assert [h.material_id for h in hits] == ["gen:a", "gen:d", "gen:c"]
    assert len(index.search(g, top=4)) == 4                    # every site, without per_structure


def test_shift_alignment_recovers_a_rigid_shift(seed_index):
    k = int(np.argmax(seed_index.curves.max(1)))         # a sharp curve: its shift is unambiguous
    moved = dos.shift(seed_index.curves[k], 0.6)
    plain = seed_index.search(moved, top=1)[0]
    aligned = seed_index.search(moved, top=1, align_shift=True, exclude={})[0]
    assert aligned.material_id == seed_index.material_ids[k] or aligned.mae < 0.02
    assert aligned.shift_ev == pytest.approx(0.6, abs=0.06)
    assert aligned.mae < plain.mae


@pytest.mark.parametrize("bad,why", [
    (np.full(400, np.nan), "NaN"), (np.ones(399), "400 values"), (-np.ones(400), "negative"),
    ("not a curve", "400 values"),
])
def test_bad_target_curves_get_one_clear_error(seed_index, bad, why):
    with pytest.raises(ValueError, match=why):
        seed_index.search(bad)


def test_bad_query_options(seed_index):
    with pytest.raises(ValueError, match="mae' or 'cosine"):
        seed_index.search(seed_index.curves[0], by="rmse")
    with pytest.raises(ValueError, match="top"):
        seed_index.search(seed_index.curves[0], top=0)


def test_shipped_database_index_and_cli(tmp_path, capsys):
    search_mod._INDEXES.clear()             # built afresh: the .npz cache is written, then read back
    index = site_index(DB_URL, cache_dir=tmp_path)
    search_mod._INDEXES.clear()
    again = site_index(DB_URL, cache_dir=tmp_path)
    assert np.array_equal(again.curves, index.curves) and list(again.material_ids) == list(index.material_ids)
    assert len(index) > 10000 and list(tmp_path.glob("site-index-*.npz"))
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--top", "3", "--all-sites",
                     "--include-ref"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"]["element"] == "Ni" and out["units"]["mae"].startswith("states/eV")
    assert out["hits"][0]["material_id"] == "L12-Au3Ni-chgnet" and out["hits"][0]["mae"] == pytest.approx(0, abs=1e-6)
    # named as `materials` and the app name them (a walk: 'ClNa' here, 'NaCl' there)
    assert out["hits"][0]["formula"] == "Au3Ni" and out["hits"][0]["name"] == "Au3Ni · L1₂ · relaxed"
    assert cli_main(["search", "--ref", "mp-22862", "--site", "0", "--top", "1", "--all-sites", "--include-ref"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["formula"] == "NaCl"
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--exclude-self"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "L12-Au3Ni-chgnet" not in {h["material_id"] for h in out["hits"]} and len(out["hits"]) == 10
    csv = tmp_path / "t.csv"
    csv.write_text("E,DOS\n" + "\n".join(f"{e},{g}" for e, g in zip(dos.GRID, index.curves[5])))
    assert cli_main(["search", "--target-csv", str(csv), "--top", "1", "--all-sites"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["mae"] < 1e-3
    # the same curve written with absolute energies (E_F at 4.5 eV), read with --target-fermi
    absolute = tmp_path / "abs.csv"
    absolute.write_text("E,DOS\n" + "\n".join(f"{e + 4.5},{g}" for e, g in zip(dos.GRID, index.curves[5])))
    assert cli_main(["search", "--target-csv", str(absolute), "--target-fermi", "4.5", "--top", "1", "--all-sites"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["mae"] < 1e-3 and out["target"]["source"] == "uploaded DOS (abs.csv), E_F at 4.5 eV in the file"
    # the same curve 0.5 eV low, moved back by --target-shift as the app's "Shift along energy": the
    # file is moved before it is cut to the grid, so nothing is lost at −10 eV and it matches exactly
    low = tmp_path / "low.csv"
    low.write_text("E,DOS\n" + "\n".join(f"{e - 0.5},{g}" for e, g in zip(dos.GRID, index.curves[5])))
    assert cli_main(["search", "--target-csv", str(low), "--top", "1", "--all-sites"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["mae"] > 0.02
    assert cli_main(["search", "--target-csv", str(low), "--target-shift", "0.5", "--top", "1", "--all-sites"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["mae"] < 1e-3 and out["target"]["window_ev"] is None
    assert out["target"]["adjusted"] == {"shift_ev": 0.5, "scale": 1.0, "smear_ev": 0.0}
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--target-fermi", "4.5"]) == 2
    assert "--target-fermi is the Fermi energy of a --target-csv file's energies" in capsys.readouterr().err
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet"]) == 2      # no --site
    assert "--ref needs --site, the atom whose DOS is the target — give --site 0..3 for L12-Au3Ni-chgnet (0:Ni" in \
        capsys.readouterr().err
    # the walk: one clear line for each, naming what was typed
    for argv, words in ((["--top", "-3"], "error: --top -3 is not a number of hits"),
                        (["--element", "Xx"], "error: --element 'Xx' is not an element symbol")):
        assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", *argv]) == 2
        assert capsys.readouterr().err.startswith(words)
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--element", "au", "--top", "2"]) == 0
    assert {h["element"] for h in json.loads(capsys.readouterr().out)["hits"]} == {"Au"}     # symbols in any case
    # a window short of the grid: said on stderr, as the app says it, and stdout stays JSON
    short = tmp_path / "short.csv"
    keep = np.abs(dos.GRID) <= 5
    short.write_text("E,DOS\n" + "\n".join(f"{e},{g}" for e, g in zip(dos.GRID[keep], index.curves[5][keep])))
    assert cli_main(["search", "--target-csv", str(short), "--top", "1"]) == 0
    said = capsys.readouterr()
    out = json.loads(said.out)
    assert out["target"]["source"] == "uploaded DOS (short.csv)"
    assert said.err.startswith("note: short.csv: the file covers ") and "compared from " in said.err
    # compared on the file's window alone: the site the file was cut from is found exactly, though
    # it has states beyond ±5 eV (as zeros there it scored an MAE of its states outside)
    lo, hi = out["target"]["window_ev"]
    assert (lo, hi) == pytest.approx((dos.GRID[keep][0], dos.GRID[keep][-1]), abs=1e-3)
    assert out["hits"][0]["mae"] == pytest.approx(0.0, abs=1e-4) and "the target's window" in out["units"]["mae"]
    assert (index.material_ids[5], index.sites[5]) == (out["hits"][0]["material_id"], out["hits"][0]["site"]) or \
        np.abs(index.curves[index.row_of[out["hits"][0]["material_id"], out["hits"][0]["site"]]] - index.curves[5])[keep].max() < 1e-4


def test_a_target_from_a_reference_leaves_it_and_its_copies_out_as_the_app_does(capsys):
    """A walk: `dosmatgen search --ref mp-2260 --site 0` ranked FePt itself first at MAE 0, and the
    app's known-sites table never lists it. The reference is left out by default (its DFT-checked
    copy gen:8351… too, as the app's table drops it); --include-ref keeps both; --exclude-self, which
    older scripts pass, is the default."""
    copy = "gen:8351fc56e6a19ecccd39"         # a candidate that relaxed into FePt, labelled under its own id
    assert cli_main(["search", "--ref", "mp-2260", "--site", "0", "--top", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    ids = [h["material_id"] for h in out["hits"]]
    assert out["excluded"] == ["mp-2260"] and out["excluded_copies"] == [copy]
    assert len(ids) == 3 and "mp-2260" not in ids and copy not in ids
    assert "FePt" not in {h["formula"] for h in out["hits"]}
    assert cli_main(["search", "--ref", "mp-2260", "--site", "0", "--top", "3", "--exclude-self"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"] == out["hits"]
    assert cli_main(["search", "--ref", "mp-2260", "--site", "0", "--top", "3", "--include-ref"]) == 0
    kept = json.loads(capsys.readouterr().out)
    assert kept["excluded"] == [] and kept["excluded_copies"] == []
    assert kept["hits"][0]["material_id"] == "mp-2260" and kept["hits"][0]["mae"] == 0
    # every site of the reference, and of its copies, with --all-sites too
    assert cli_main(["search", "--ref", "mp-2260", "--site", "0", "--top", "6", "--all-sites"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["hits"]) == 6 and not {"mp-2260", copy} & {h["material_id"] for h in out["hits"]}
    assert cli_main(["search", "--ref", "mp-2260", "--site", "0", "--top", "6", "--all-sites", "--include-ref"]) == 0
    assert {"mp-2260", copy} <= {h["material_id"] for h in json.loads(capsys.readouterr().out)["hits"]}
    assert cli_main(["search", "--ref", "mp-2260", "--site", "0", "--include-ref", "--exclude-self"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_the_cli_lists_one_crystal_once_as_the_apps_table_does(capsys):
    """Two DFT checks of one crystal are two labels; the app's known-sites table shows it once
    (seeding.drop_twins) and `dosmatgen search` now does too (a review found it listing Au3Ni's
    DFT-checked copies beside the preset). --all-sites still lists every labelled site."""
    from dosmatgen_core.candidates.seeding import is_one_of
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.structures import to_structure
    argv = ["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--include-ref"]
    assert cli_main([*argv, "--top", "6", "--all-sites"]) == 0
    every = json.loads(capsys.readouterr().out)["hits"]
    assert len({h["material_id"] for h in every if h["formula"] == "Au3Ni"}) >= 2     # the preset and a copy
    assert cli_main([*argv, "--top", "6"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert hits[0]["material_id"] == "L12-Au3Ni-chgnet" and len(hits) == 6
    db = open_db(DB_URL)
    cells = [to_structure(db.get(h["material_id"]).atoms) for h in hits]
    assert not any(is_one_of(c, cells[:k]) for k, c in enumerate(cells) if k)


def test_a_window_given_on_the_command_line_narrows_the_comparison(capsys):
    """--window LO HI: a DFT label compared on its occupied states alone; a window beyond a file's
    data, or too narrow, is refused naming what was typed."""
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--top", "3", "--window", "-8", "0"]) == 0
    out = json.loads(capsys.readouterr().out)
    ref = site_index(DB_URL)
    g = ref.curves[ref.row_of["L12-Au3Ni-chgnet", 0]]
    assert out["target"]["window_ev"] == [-8.0, 0.0] and "-8..0 eV" in out["units"]["mae"] and "-8..0 eV" in out["units"]["cosine"]
    for h in out["hits"]:
        assert h["mae"] == pytest.approx(dos.mae(g, ref.curves[ref.row_of[h["material_id"], h["site"]]], (-8, 0)), abs=1e-5)
    assert cli_main(["search", "--ref", "L12-Au3Ni-chgnet", "--site", "0", "--window", "0", "1"]) == 2
    assert "at least 2 eV" in capsys.readouterr().err


def test_materials_lists_the_ids_that_ref_takes(capsys):
    assert cli_main(["materials", "Au", "Ni", "--max-atoms", "4", "--limit", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["shown"] == 2 and out["materials"] >= 2
    assert all({"Au", "Ni"} <= set(Composition(r["formula"]).as_dict()) and r["atoms"] <= 4 for r in out["rows"])
    assert out["rows"][0] == {"id": "L12-Au3Ni-chgnet", "name": "Au3Ni · L1₂ · relaxed", "formula": "Au3Ni",
                              "atoms": 4, "spacegroup": "Pm-3m", "structure_type": "L1₂"}
    assert cli_main(["materials", "perovskite", "--limit", "3"]) == 0       # a structure type
    out = json.loads(capsys.readouterr().out)
    assert out["materials"] >= 3 and all("perovskite" in r["structure_type"] for r in out["rows"])
    assert cli_main(["search", "--ref", "mp-nonexist", "--site", "0"]) == 2
    assert "`dosmatgen materials TEXT` and the app's picker list them" in capsys.readouterr().err


def test_materials_list_known_ones_before_checked_candidates_and_simple_before_complex(capsys):
    """A walk: `materials Ni --max-atoms 4` showed 50 rows, nearly all gen: candidates (by id, 'gen:'
    sorts first), and the app's "Fe" opened on a candidate. Known materials come first, the fewest
    elements and the smallest cells first among them."""
    assert cli_main(["materials", "Ni", "--max-atoms", "4", "--limit", "5000"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    generated = [r["id"].startswith("gen:") for r in rows]
    assert any(generated) and generated == sorted(generated)          # every candidate after every known one
    known = [(len(Composition(r["formula"]).elements), r["atoms"]) for r, g in zip(rows, generated) if not g]
    assert known == sorted(known)


def test_the_near_twin_bands_cover_every_distance_once():
    bands = search_mod.twin_bands()
    assert bands[0][0] == 0.0 and bands[-1][1] == float("inf")
    assert all(a[1] == b[0] for a, b in zip(bands, bands[1:]))
    assert search_mod.twin_band(0.0) == bands[0] and search_mod.twin_band(0.15) == bands[1]
    assert search_mod.twin_band(0.149) == bands[0] and search_mod.twin_band(3.0) == bands[-1]


def test_the_windowed_shift_search_equals_one_pass_per_shift(seed_index):
    """The two matrix products give each site the best shift and cosine that comparing every moved
    curve on the window, one by one, gives (chunked, with a window at the grid's lower end)."""
    g = seed_index.curves[5].astype(float)
    sl = dos.window_slice((-10.0, 0.5))
    ks = np.arange(-20, 21, 4)
    got_k, got_c = search_mod._window_cosines(seed_index.curves, g, sl, ks, chunk=7)
    for j in range(0, len(seed_index), max(1, len(seed_index) // 40)):
        best = (-np.inf, 0)
        for k in ks:
            moved = search_mod._shift_rows(seed_index.curves[j].astype(float), int(k))
            c = dos.cosine(g, moved, (-10.0, 0.5)) if moved[sl].any() else 0.0
            if c > best[0] + 1e-9:
                best = (c, int(k))
        assert got_c[j] == pytest.approx(best[0], abs=1e-4)
        if abs(got_c[j] - best[0]) < 1e-4 and best[0] > 0:
            moved = search_mod._shift_rows(seed_index.curves[j].astype(float), int(got_k[j]))
            assert dos.cosine(g, moved, (-10.0, 0.5)) == pytest.approx(best[0], abs=1e-4)


def test_a_table_of_several_curves_is_searched_by_the_column_named(tmp_path, capsys):
    """--target-column: the app's own DOS CSV (target, predicted, DFT side by side) searched by one
    of its curves; without the option the error names the option and the columns."""
    ref = site_index(DB_URL)
    g = ref.curves[ref.row_of["L12-Au3Ni-chgnet", 0]]
    f = tmp_path / "cand_dos.csv"
    f.write_text("energy_minus_ef_eV,target_site0,dft_site0\n" + "\n".join(f"{e},0.3,{y}" for e, y in zip(dos.GRID, g)))
    assert cli_main(["search", "--target-csv", str(f), "--target-column", "dft_site0", "--top", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["hits"][0]["mae"] == pytest.approx(0.0, abs=1e-4) and out["target"]["source"].endswith("column dft_site0")
    assert cli_main(["search", "--target-csv", str(f), "--top", "1"]) == 2
    assert "--target-column (target_site0, dft_site0)" in capsys.readouterr().err
