"""The pool bench's parts, on small real data: the pool is the unlabelled, calculable MP rows; a
copy of the target under another id is never wanted; a labelled structure's site is found again
by element in its own row order; and only structures that beat the best check become seeds."""
import csv
import gzip

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from benchmarks import pool
from benchmarks.tests.cells import cubic_cif as _cif, curve as _curve
from dosmatgen_core import dos
from dosmatgen_core.labels.labeller import supported_elements
from dosmatgen_core.paths import MP_CSVS
from dosmatgen_core.scoring.search import SiteIndex
from dosmatgen_core.structures import atoms_from_cif



@pytest.mark.skipif(not MP_CSVS[0].exists(), reason="needs the shared MP table")
def test_the_pool_is_the_unlabelled_calculable_small_rows(tmp_path):
    with gzip.open(MP_CSVS[0], "rt", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [next(reader) for _ in range(40)]
    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=reader.fieldnames)
        w.writeheader()
        w.writerows(rows)
    labelled = {rows[0]["material_id"]}
    got = dict(pool.pool_rows(labelled, max_atoms=6, csvs=[path]))
    ok = supported_elements()
    for r in rows:
        els = set(Structure.from_str(r["cif"], fmt="cif").symbol_set)
        expect = r["material_id"] not in labelled and int(r["nsites"]) <= 6 and els <= ok
        assert (r["material_id"] in got) == expect, r["material_id"]
    assert 0 < len(got) < len(rows)


def test_a_copy_of_the_target_is_never_wanted():
    target_cif = _cif(["Au", "Ni", "Au", "Au"])
    other_cif = _cif(["Ag", "Ni", "Ag", "Ag"])
    g = _curve(-1.0)
    curves = np.stack([_curve(3.0), g, _curve(3.0), _curve(3.0)])
    index = SiteIndex.from_rows([("mp-copy", "Au3Ni", ["Au", "Ni", "Au", "Au"], curves),         # the target again
                                 ("mp-other", "Ag3Ni", ["Ag", "Ni", "Ag", "Ag"], 0.9 * curves)])
    site = {"material_id": "mp-target", "site": 1, "target": g}
    got = pool.wanted(site, index, {"mp-copy": target_cif, "mp-other": other_cif}, {"mp-target": target_cif})
    for by in ("mae", "cosine"):
        assert [h["material_id"] for h in got[by]] == ["mp-other"]
        assert got[by][0]["site"] == 1


def test_the_labelled_site_is_found_again_in_the_labels_own_order():
    g = _curve(-1.0)
    rows = np.stack([_curve(2.0), _curve(-3.0), _curve(-1.1), _curve(-1.0, 3.0)])
    i, cos, mae = pool.best_site(g, ["Ni", "Au", "Ni", "Au"], rows, "Ni")
    assert i == 2 and cos > 0.99 and mae == pytest.approx(dos.mae(g, rows[2]))
    assert pool.best_site(g, ["Ni", "Au", "Ni", "Au"], rows, "Cu")[0] == 2     # element absent: any site


def test_only_structures_that_beat_the_best_check_seed_the_round():
    cifs = {"mp-a": _cif(["Au", "Ni", "Au", "Au"]), "mp-b": _cif(["Ag", "Ni", "Ag", "Ag"]),
            "mp-c": _cif(["Cu", "Ni", "Cu", "Cu"])}
    row = {"best_check_cosine": 0.85, "pool": [
        {"material_id": "mp-a", "labelled": True, "dft_site": 1, "dft_cosine": 0.88, "dft_mae": 0.2},
        {"material_id": "mp-b", "labelled": True, "dft_site": 3, "dft_cosine": 0.93, "dft_mae": 0.1},
        {"material_id": "mp-c", "labelled": True, "dft_site": 1, "dft_cosine": 0.80, "dft_mae": 0.3},
        {"material_id": "mp-a", "labelled": True, "dft_site": 1, "dft_cosine": 0.88, "dft_mae": 0.2},   # found twice
        {"material_id": "mp-d", "labelled": False}]}
    seeds = pool.pool_seeds(row, cifs)
    assert [s.hit.material_id for s in seeds] == ["mp-b", "mp-a"]
    assert (seeds[0].hit.site, seeds[0].hit.element, seeds[0].hit.cosine) == (3, "Ag", 0.93)
    assert seeds[0].crystal.numbers.tolist() == atoms_from_cif(cifs["mp-b"]).numbers.tolist()
    assert pool.pool_seeds({**row, "best_check_cosine": 0.95}, cifs) == []


def test_each_targets_best_chance_is_labelled_first():
    def hit(m, cos):
        return {"material_id": m, "cosine": cos}
    plan = {"targets": {"t1": {"mae": [hit("a", 0.80), hit("b", 0.70)], "cosine": [hit("c", 0.85), hit("a", 0.80)]},
                        "t2": {"mae": [hit("d", 0.90), hit("e", 0.60)], "cosine": [hit("d", 0.90), hit("f", 0.88)]}}}
    assert pool.wanted_order(plan) == ["d", "c", "a", "b", "e", "f"]


def test_shape_seeds_are_the_best_shaped_labelled_sites_above_the_best_check():
    g = _curve(-1.0)
    au3ni = _cif(["Au", "Ni", "Au", "Au"])
    big = Structure(Lattice.cubic(8.0), ["Cu"] * 9, [[i / 9, 0, 0] for i in range(9)]).to(fmt="cif")
    cifs = {"mp-target": au3ni, "mp-copy": au3ni, "mp-good": _cif(["Ag", "Ni", "Ag", "Ag"]),
            "mp-fair": _cif(["Cu", "Cu", "Ni", "Cu"]), "mp-poor": _cif(["Pt", "Ni", "Pt", "Pt"]), "mp-big": big}
    flat = np.stack([_curve(4.0)] * 4)

    def rows(site, curve):
        r = flat.copy()
        r[site] = curve
        return r
    index = SiteIndex.from_rows([
        ("mp-target", "Au3Ni", ["Au", "Ni", "Au", "Au"], rows(1, g)),
        ("mp-copy", "Au3Ni", ["Au", "Ni", "Au", "Au"], rows(1, g)),                 # the target under another id
        ("mp-good", "Ag3Ni", ["Ag", "Ni", "Ag", "Ag"], rows(1, _curve(-1.1))),
        ("mp-fair", "Cu3Ni", ["Cu", "Cu", "Ni", "Cu"], rows(2, _curve(-1.6))),      # its best site is site 2
        ("mp-poor", "Pt3Ni", ["Pt", "Ni", "Pt", "Pt"], rows(1, _curve(-3.0))),
        ("mp-big", "Cu", ["Cu"] * 9, np.stack([g] * 9))])                           # too large to seed
    site = {"material_id": "mp-target", "site": 1, "target": g}
    fair = dos.cosine(g, _curve(-1.6))
    seeds = pool.shape_seeds(site, index, cifs, above=fair - 0.01)
    assert [(s.hit.material_id, s.hit.site) for s in seeds] == [("mp-good", 1), ("mp-fair", 2)]
    assert seeds[1].crystal.numbers.tolist() == atoms_from_cif(cifs["mp-fair"]).numbers.tolist()
    assert [s.hit.material_id for s in pool.shape_seeds(site, index, cifs, above=fair)] == ["mp-good"]


def test_the_guard_reads_the_shape_rounds_under_the_apps_rule():
    """seed_guard: a seed counts as kept only when its DFT cosine beats the best check's and its MAE
    is no larger (seeding.beats, as the app's rounds take known sites); children are told apart by
    the seed they came from, and the gains are against the best check."""
    seed = lambda mid, cos, mae: {"material_id": mid, "formula": "X", "site": 0, "element": "Ni",   # noqa: E731
                                  "mae": mae, "cosine": cos}
    kid = lambda mid, cos: {"seed": {"material_id": mid}, "dft_cosine": cos}                       # noqa: E731
    rows = [{"site": "mp-1#0", "best_check_cosine": 0.85, "best_check_mae": 0.20,
             "grown": {"shape": {"seeds": [seed("a", 0.90, 0.15), seed("b", 0.95, 0.40), seed("c", 0.84, 0.10)],
                                 "children": [kid("a", 0.91), kid("b", 0.80), kid("b", 0.86)]}}},
            {"site": "mp-2#0", "best_check_cosine": 0.80, "best_check_mae": 0.10,
             "grown": {"shape": {"seeds": [seed("d", 0.82, 0.11)], "children": [kid("d", 0.79)]}}},
            {"site": "mp-3#0", "best_check_cosine": 0.70, "best_check_mae": 0.30}]       # no shape round
    got = pool.seed_guard(rows, 0.9)
    assert got["targets_with_shape_round"] == 2 and got["rounds_kept"] == 1
    assert [r["seeds_kept"] for r in got["per_target"]] == [1, 0]      # c is shaped worse, b and d too far off
    assert got["from_kept_seeds"] == {"checks": 1, "children_beat_check": 1, "children_reach_bar": 1,
                                      "best_gain": pytest.approx(0.06)}
    kept_not = got["from_dropped_seeds"]
    assert kept_not["checks"] == 3 and kept_not["children_beat_check"] == 1 and kept_not["children_reach_bar"] == 0
    assert kept_not["best_gain"] == pytest.approx(0.01)
