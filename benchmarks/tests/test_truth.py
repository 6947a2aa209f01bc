"""The truth bench's parts: the lookup leaves the target's material out, a DFT result is read on the
candidate's own conditioned site, cached by candidate (a rerun calculates nothing), kept as a
label, and summarised in the record's documented shape."""
import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from benchmarks import truth, truth_dft, truth_replacements
from benchmarks.common import read_jsonl
from benchmarks.relax_effect import relaxed_cifs
from dosmatgen_core import dos
from dosmatgen_core.labels.labeller import ShardWriter
from dosmatgen_core.scoring import verify
from dosmatgen_core.scoring.search import SiteIndex
from dosmatgen_core.structures import atoms_from_cif


@pytest.fixture
def seed_index(seed_lines):
    rows = [(m, d["formula"], atoms_from_cif(d["cif"]).get_chemical_symbols(), np.asarray(d["site_dos"]))
            for m, d in sorted(seed_lines.items())]
    return SiteIndex.from_rows(rows)


def test_lookup_never_returns_the_target_material(seed_index):
    site = {"material_id": str(seed_index.material_ids[0]), "site": 0, "target": seed_index.curves[0]}
    got = truth.lookup(seed_index, site)["candidates"]
    assert len(got) == truth.TOP and site["material_id"] not in {c["material_id"] for c in got}
    assert got[0]["dft_mae"] <= got[-1]["dft_mae"] and got[0]["novel"] is False


def _z_rows_dft(monkeypatch):
    """A Sn-Ni-Au-Ni cell, and a GPAW stand-in whose row i holds atom i's atomic number (so the
    order shows); the tasks it got are in the returned list."""
    cell = Structure(Lattice.cubic(4.0), ["Sn", "Ni", "Au", "Ni"], [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    calls = []

    def fake_dft(task, recipe, timeout, cpu=False):
        assert cpu, "a bench's check counts CPU time: a pause or load beside it is no timeout"
        calls.append(task)
        atoms = atoms_from_cif(task["cif"])
        return {"material_id": task["material_id"], "cif": task["cif"], "seconds": 1.0, "formula": "x",
                "site_dos": np.repeat(atoms.numbers[:, None].astype(float), dos.NPTS, axis=1).tolist()}
    monkeypatch.setattr(verify, "label_isolated", fake_dft)
    return cell, cell.to(fmt="cif"), calls


def test_dft_is_cached_by_candidate_read_on_its_site_and_kept_as_a_label(tmp_path, monkeypatch):
    monkeypatch.setattr(truth_dft, "CACHE", tmp_path / "cache")
    cell, cif, calls = _z_rows_dft(monkeypatch)
    writer = ShardWriter(tmp_path / "labels", prefix="generated")
    cand = {"cif": cif, "site": 2, "predicted_mae": 0.3, "novel": True}
    target = np.full(dos.NPTS, 79.0)
    calc = truth.calculate(cand, {}, writer, {"bench": "truth"})
    scored = truth.score_candidate(cand, target, calc)
    assert scored["dft_mae"] == pytest.approx(0.0)           # site 2 is Au (Z = 79)
    # a fresh process reads the cache file and calculates nothing
    cache = {r["key"]: r for r in read_jsonl(tmp_path / "cache" / "dft.jsonl")}
    truth.calculate(cand, cache, writer, {"bench": "truth"})
    assert len(calls) == 1
    label = json.loads((tmp_path / "labels" / "generated.pending.jsonl").read_text().splitlines()[0])
    assert label["source"] == {"bench": "truth"} and len(label["site_dos"]) == 4


def test_summary_has_the_documented_shape():
    target = np.ones(dos.NPTS)
    sites = [{"material_id": "a", "site": 0, "element": "Ni", "n_atoms": 4, "target": target}]
    cands = [{"cif": f"c{k}", "site": 0, "predicted_mae": 0.1 * k, "novel": True} for k in range(3)]
    dft = {truth.cif_key(f"c{k}"): {"site_dos": [list(target * (1 + 0.5 * k))]} for k in range(3)}
    per = {"lookup": {"a#0": {"candidates": [{"dft_mae": 0.2, "dft_cosine": 0.95, "novel": False}]}},
           "seeded": {"a#0": {"candidates": cands, "seconds": 12.0, "drawn": 8}}}
    out = truth.summarise(sites, per, dft)
    assert out["sites"] == 1 and out["app_default"] == truth.APP_DEFAULT
    m = out["methods"]["seeded"]
    assert {"dft_mae_best_of_3", "share_cosine_0.9", "share_novel", "seconds_per_site"} <= set(m)
    assert m["dft_mae_best_of_3"] == pytest.approx(0.0) and m["share_cosine_0.9"] == 1.0 and m["share_novel"] == 1.0
    assert m["lookup_dft_mae_same_sites"] == pytest.approx(0.2)


def test_the_site_choice_is_pinned_so_new_labels_do_not_shift_it(tmp_path):
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    db = open_db(DB_URL)
    pin = tmp_path / "sites.json"
    first = truth.truth_sites(db, 5, 5, pinned=pin)
    assert pin.exists() and len(json.loads(pin.read_text())) == 5
    pin.write_text(json.dumps(json.loads(pin.read_text())[::-1]))     # the pin, not the db, decides now
    again = truth.truth_sites(db, 5, 5, pinned=pin)
    assert [(s["material_id"], s["site"]) for s in again[:5]] == [(s["material_id"], s["site"]) for s in first[:5]][::-1]
    for a, b in zip(again[:5], first[:5][::-1]):
        assert a["element"] == b["element"] and np.array_equal(a["target"], b["target"])
    assert again[-1]["material_id"] == first[-1]["material_id"] == truth.PRESET_ID


def test_a_fresh_site_set_shares_no_structure_with_the_first(tmp_path, monkeypatch):
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    db = open_db(DB_URL)
    monkeypatch.setattr(truth, "CACHE", tmp_path)
    monkeypatch.setattr(truth, "SITES", tmp_path / "sites.json")
    a = truth.set_sites(db, 5, 5, "a")
    b = truth.set_sites(db, 5, 5, "b")
    assert (tmp_path / "sites-b.json").exists() and len(b) == 5          # pinned, and no preset
    assert not {s["material_id"] for s in a} & {s["material_id"] for s in b}
    assert all(s["n_atoms"] <= 5 for s in b) and truth.PRESET_ID not in {s["material_id"] for s in b}
    assert [s["site"] for s in truth.set_sites(db, 5, 5, "b")] == [s["site"] for s in b]
    with pytest.raises(ValueError, match="unknown site set"):
        truth.sites_file("z")


def test_the_app_default_method_samples_as_the_app_does(seed_index, seed_lines, monkeypatch):
    """The record's app_default is the flow a new user gets: seeded, steered with the shipped
    particles when the shipped settings steer (Request's defaults, the Generate page's too)."""
    from dosmatgen_core.candidates.pipeline import Request
    from dosmatgen_core.settings import SHIPPED
    req = Request(mode=SHIPPED.mode, n_atoms=SHIPPED.n_atoms, targets=[seed_index.curves[0].tolist()])
    assert truth.APP_DRAWN == ("seeded_steered" if req.particles > 1 else "seeded")
    assert truth.APP_DEFAULT == truth.APP_DRAWN + ("_subs" + "_deep" * SHIPPED.dft_per_source if req.substitutions else "")
    if req.substitutions:       # the generator's draws and the seeds' swaps, ranked together
        assert truth.MIXED[truth.APP_DEFAULT] == (truth.APP_DRAWN, "substituted")
    seen = {}

    class Stop(Exception):
        pass

    def fake_sample(model, specs, **kw):
        seen.update(kw, specs=specs)
        raise Stop
    monkeypatch.setattr(truth.sampler, "sample", fake_sample)
    site = {"material_id": "nothing-excluded", "site": 0, "n_atoms": 4, "target": seed_index.curves[0]}
    res = {"model": None, "guide": object(), "strength": SHIPPED.strength, "index": seed_index,
           "cifs": {m: d["cif"] for m, d in seed_lines.items()}}
    with pytest.raises(Stop):
        truth.generate(truth.APP_DRAWN, site, res, seed=0, n_draw=4)
    assert seen["specs"][0].tag["mode"] == "seeded" and len(seen["specs"]) == 4
    assert seen.get("particles", 1) == req.particles
    if req.particles > 1:
        assert seen["guide"] is res["guide"] and seen["steer"] == req.steer


def test_a_new_predictor_ranks_afresh_and_the_old_records_keep_their_tag():
    """Cached candidates were ranked by a predictor: another one must not reuse them, and the
    records made before the settings named it keep their tag."""
    base = {"candidates": 8, "top": 3, "steps": 100, "strength": 0.5, "seed": 0, "checkpoint": "e7b7868c5d4048e8",
            "recipe": "fast-scf1e-3"}
    old = truth.settings_tag({**base, "predictor": truth.FIRST_PREDICTOR})
    assert old == "ab8b02708183"         # the tag of runs/truth/generated.jsonl's records
    assert truth.settings_tag({**base, "predictor": "0123456789abcdef"}) != old


def test_a_relaxed_check_calculates_the_relaxed_cell_in_the_drawn_order(tmp_path, monkeypatch):
    """--relaxed: the default potential relaxes the candidate (real SevenNet), GPAW (a stand-in
    whose row i holds atom i's Z) gets the relaxed cell, and the result is cached under the
    drawn candidate's key, so a rerun calculates nothing."""
    monkeypatch.setattr(truth_dft, "RELAXED", tmp_path / "relaxed.jsonl")
    cell, cif, calls = _z_rows_dft(monkeypatch)
    writer = ShardWriter(tmp_path / "labels", prefix="generated")
    cand = {"cif": cif, "site": 2, "predicted_mae": 0.3, "novel": True}
    calc = truth.calculate_relaxed(cand, {}, writer, provenance={"bench": "truth", "method": "m"})
    assert "failed" not in calc, calc.get("failed")
    assert truth.score_candidate(cand, np.full(dos.NPTS, 79.0), calc)["dft_mae"] == pytest.approx(0.0)
    relaxed = Structure.from_str(calls[0]["cif"], fmt="cif")
    assert abs(relaxed.volume / cell.volume - calc["volume_ratio"]) < 1e-6 and abs(calc["volume_ratio"] - 1) > 0.01
    cache = {r["key"]: r for r in read_jsonl(tmp_path / "relaxed.jsonl")}
    assert set(cache) == {truth.cif_key(cif)}
    assert relaxed_cifs(cache) == {truth.cif_key(cif): calls[0]["cif"]}      # the relaxed cell is kept
    truth.calculate_relaxed(cand, cache, writer)
    assert len(calls) == 1
    label = json.loads((tmp_path / "labels" / "generated.pending.jsonl").read_text().splitlines()[0])
    assert label["source"]["method"] == "m" and label["source"]["relaxed_from"] == truth.cif_key(cif)


def test_a_mixed_method_ranks_its_parts_picks_together():
    a = {"seconds": 10.0, "drawn": 8, "valid": 8, "novel": 6, "seeds": [{"material_id": "mp-1"}],
         "candidates": [{"cif": "a1", "predicted_mae": 0.10}, {"cif": "a2", "predicted_mae": 0.30},
                        {"cif": "a3", "predicted_mae": 0.50}]}
    b = {"seconds": 0.5, "drawn": 5, "valid": 5, "novel": 4,
         "candidates": [{"cif": "b1", "predicted_mae": 0.20}, {"cif": "b2", "predicted_mae": 0.40}]}
    m = truth.merge_picks([a, b])
    assert [c["cif"] for c in m["candidates"]] == ["a1", "b1", "a2"]
    assert (m["drawn"], m["novel"], m["seconds"], m["seeds"]) == (13, 10, 10.5, a["seeds"])
    assert truth.MIXED["seeded_steered_subs"] == ("seeded_steered", "substituted")


def test_the_deep_method_keeps_every_pick_of_both_parts_for_dft():
    a = {"seconds": 1.0, "drawn": 8, "valid": 8, "novel": 6,
         "candidates": [{"cif": f"a{k}", "predicted_mae": 0.1 * k} for k in (1, 2, 3)]}
    b = {"seconds": 1.0, "drawn": 8, "valid": 8, "novel": 6,
         "candidates": [{"cif": f"b{k}", "predicted_mae": 0.1 * k + 0.05} for k in (1, 2, 3)]}
    deep = truth.MIXED["seeded_steered_subs_deep"]
    assert deep == truth.MIXED["seeded_steered_subs"]           # the same pool as the app default ...
    top = truth.DEPTH["seeded_steered_subs_deep"]
    picks = [c["cif"] for c in truth.merge_picks([a, b], top)["candidates"]]
    assert picks == ["a1", "b1", "a2", "b2", "a3", "b3"]          # ... every part's top 3 checked
    assert picks[:truth.TOP] == [c["cif"] for c in truth.merge_picks([a, b])["candidates"]]


def test_cosine_seeded_methods_search_their_seeds_by_shape_and_mix_like_the_others():
    assert truth.seed_order("seeded_steered_cos") == ("seeded_steered", "cosine")
    assert truth.seed_order("substituted_cos") == ("substituted", "cosine")
    assert truth.seed_order("seeded_steered") == ("seeded_steered", "mae")
    assert truth.seed_order("masked_cos") == ("masked_cos", "mae")      # no seeds: not a seeded method
    assert truth.MIXED["seeded_steered_subs_deep_cos"] == ("seeded_steered_cos", "substituted_cos")
    assert truth.DEPTH["seeded_steered_subs_deep_cos"] == truth.DEPTH["seeded_steered_subs_deep"] == 2 * truth.TOP
    assert "seeded_steered_subs_cos" not in truth.DEPTH


@pytest.mark.skipif(not __import__("dosmatgen_core.paths", fromlist=["MP_CSVS"]).MP_CSVS[0].exists(),
                    reason="needs the shared MP tables")
def test_a_check_whose_relaxed_cell_is_a_known_compound_is_no_novel_match():
    """Novelty is judged on the drawn cell, DFT on the relaxed one: a candidate that relaxed into
    rock-salt NaCl (a = 5.69 Å, slightly off) is named by its MP id and drops out of the strict
    best-of (the site then counts below the bar), while the as-recorded numbers keep it."""
    from benchmarks.relaxed_novelty import best_of
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.69), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    odd = Structure(Lattice.cubic(3.3), ["Au", "Ga", "Ni", "Sn"], [[0, 0, 0], [.5, .5, 0], [.5, 0, .5], [.1, .5, .5]])
    assert truth.relaxed_known({"cif": nacl.to(fmt="cif")}) == "mp-22862"
    assert truth.relaxed_known({"cif": odd.to(fmt="cif")}) is None and truth.relaxed_known({}) is None
    target = np.ones(dos.NPTS)
    sites = [{"material_id": "a", "site": 0, "element": "Na", "n_atoms": 2, "target": target}]
    cands = [{"cif": "c0", "site": 0, "predicted_mae": 0.1, "novel": True}]
    dft = {truth.cif_key("c0"): {"site_dos": [list(target)], "cif": nacl.to(fmt="cif")}}
    m = truth.summarise(sites, {"seeded": {"a#0": {"candidates": cands}}}, dft)["methods"]["seeded"]
    assert m["share_cosine_0.9"] == 1.0 and m["checked_relaxed_into_known"] == 1
    assert m["share_cosine_0.9_novel_after_relaxation"] == 0.0 and m["sites_without_novel_after_relaxation"] == ["a#0"]
    checks = {"a#0": [{"dft_cosine": 0.95, "dft_mae": 0.1, "relaxed_into": "mp-22862"},
                      {"dft_cosine": 0.85, "dft_mae": 0.2}], "b#0": [{"dft_cosine": 0.92, "dft_mae": 0.15}]}
    loose, strict = best_of(checks, ["a#0", "b#0"], 0.9, False), best_of(checks, ["a#0", "b#0"], 0.9, True)
    assert loose["share_cosine_0.9"] == 1.0 and loose["dft_mae_best"] == pytest.approx(0.125)
    assert strict["share_cosine_0.9"] == 0.5 and strict["dft_mae_best"] == pytest.approx(0.175)


def test_a_windowed_target_is_searched_seeded_and_scored_on_its_window(seed_index, seed_lines, monkeypatch):
    """--window: the lookup and the DFT scores compare on the window (and say the whole grid's
    match beside it), the generator gets the target completed by another material's site, and the
    seeds are searched on the window."""
    window = (-10.0, 0.5)
    known = dos.window_mask(window)
    mid = str(seed_index.material_ids[0])
    site = {"material_id": mid, "site": 0, "n_atoms": 4, "element": "X", "target": seed_index.curves[0]}
    (w,) = truth.windowed([site], seed_index, window)
    assert np.allclose(w["model_target"][known], site["target"][known])
    # the completion outside the window is not the target's own curve (its material is left out)
    assert not np.allclose(w["model_target"][~known], site["target"][~known])
    look = truth.lookup(seed_index, w)["candidates"]
    h = seed_index.search(site["target"], top=1, exclude={mid}, per_structure=True, window=window)[0]
    assert look[0]["material_id"] == h.material_id and look[0]["dft_mae"] == pytest.approx(h.mae)
    row = seed_index.curves[seed_index.row_of[h.material_id, h.site]]
    assert look[0]["dft_mae_whole"] == pytest.approx(dos.mae(site["target"], row))
    # a candidate whose DFT row equals the target on the window only scores 0 there
    off = np.where(known, site["target"], site["target"] + 1.0)
    sc = truth.score_candidate({"site": 0, "novel": True}, site["target"], {"site_dos": [off.tolist()]}, window)
    assert sc["dft_mae"] == pytest.approx(0.0) and sc["dft_mae_whole"] == pytest.approx((~known).mean())
    seen = {}

    class Stop(Exception):
        pass

    def fake_sample(model, specs, **kw):
        seen["specs"] = specs
        raise Stop
    monkeypatch.setattr(truth.sampler, "sample", fake_sample)
    real = truth.find_seeds

    def spy(*a, **kw):
        seen["seeds"] = kw
        return real(*a, **kw)
    monkeypatch.setattr(truth, "find_seeds", spy)
    res = {"model": None, "guide": object(), "strength": 0.5, "index": seed_index,
           "cifs": {m: d["cif"] for m, d in seed_lines.items()}}
    with pytest.raises(Stop):
        truth.generate("seeded", w, res, seed=0, n_draw=2)
    assert seen["seeds"]["window"] == window
    sp = seen["specs"][0]
    s = next(iter(sp.tag["site_to_target"]))
    assert sp.cond_mask[s] and np.allclose(sp.cond_dos[s], w["model_target"])        # the generator is given the completed curve


# ---- the app's replacements (scoring/certify.py): a check that relaxed into a known compound ----

def _cell(a: float, *els: str) -> str:
    """A small cubic cell's CIF (rock salt's two sites, or CsCl-like), different per elements."""
    return Structure(Lattice.cubic(a), list(els), [[0, 0, 0], [0.5, 0.5, 0.5]][:len(els)]).to(fmt="cif")


def _replacement_case(monkeypatch, spare_known: bool = True):
    """One site (target: ones), three picks and four spares by predicted MAE; pick #1 relaxed into
    a known compound, and so (spare_known) does the first spare checked in its place; the spare
    ranked between the picks' is a swap, and one spare copies pick #1's crystal (a copy's check
    would be its better-ranked twin's). DFT rows: a known compound's row is far from the target,
    the picks' rows off by 0.5, the second spare's exactly the target."""
    target = np.ones(dos.NPTS)
    picks = [{"cif": _cell(4.0, "Na", "Cl"), "formula": "NaCl", "site": 0, "predicted_mae": 0.10, "novel": True},
             {"cif": _cell(4.2, "K", "Cl"), "formula": "KCl", "site": 0, "predicted_mae": 0.20, "novel": True},
             {"cif": _cell(4.4, "Rb", "Br"), "formula": "RbBr", "site": 0, "predicted_mae": 0.30, "novel": True}]
    spares = [{"cif": _cell(4.1, "Li", "F"), "formula": "LiF", "site": 0, "predicted_mae": 0.25, "novel": True,
               "seed": {"material_id": "mp-1", "substitution": {"kind": "element"}}},
              {"cif": _cell(4.0001, "Na", "Cl"), "formula": "NaCl", "site": 0, "predicted_mae": 0.35, "novel": True},
              {"cif": _cell(3.5, "Cs", "I"), "formula": "CsI", "site": 0, "predicted_mae": 0.40, "novel": True},
              {"cif": _cell(3.6, "Ag", "Au"), "formula": "AgAu", "site": 0, "predicted_mae": 0.45, "novel": True}]
    known = {picks[0]["cif"]} | ({spares[0]["cif"]} if spare_known else set())

    def fake_known(calc):
        return "mp-known" if calc and calc.get("cif") in known else None
    # both modules that call it: the scores (truth_dft) and the checks (truth_replacements)
    for module in (truth_dft, truth_replacements):
        monkeypatch.setattr(module, "relaxed_known", fake_known)

    def result(c, off):
        return {"site_dos": [list(target * (1 + off)), list(target)], "cif": c["cif"]}
    cache = {truth.cif_key(c["cif"]): result(c, 5.0 if c["cif"] in known else 0.5) for c in picks}
    done = {truth.cif_key(c["cif"]): result(c, 5.0 if c["cif"] in known else 0.0) for c in spares}
    sites = [{"material_id": "a", "site": 0, "element": "Na", "n_atoms": 2, "target": target}]
    return sites, picks, spares, cache, done


def test_a_check_that_relaxed_into_a_known_compound_hands_its_place_to_the_next_in_line(monkeypatch):
    """As the app's certifier (certify.check_in_turn): the next candidate worth a check of the
    site's ranking (a copy of a better-ranked one is not) is checked in place of each check whose
    relaxed cell is a known compound, a replacement that relaxes into one hands its place on too;
    the summary keeps its as-picked numbers and adds the replaced ones, with the count."""
    sites, picks, spares, cache, done = _replacement_case(monkeypatch)
    got = truth.checks_with_replacements(picks, spares, cache, name="a#0")
    by_rank = got["by_rank"]
    assert [by_rank[r]["formula"] for r in got["ranks"]] == ["NaCl", "KCl", "RbBr"]      # the picks, best first
    # from the cache alone: the replacement has no check yet
    assert got["pending"] == [r for r, c in by_rank.items() if c["formula"] == "LiF"]
    asked = []

    def calc(c):
        asked.append(c["formula"])
        cache[truth.cif_key(c["cif"])] = done[truth.cif_key(c["cif"])]
    got = truth.checks_with_replacements(picks, spares, cache, calc=calc, name="a#0")
    assert asked == ["LiF", "CsI"]          # the copy of NaCl is passed over; nothing is checked twice
    assert {by_rank[o]["formula"]: by_rank[n]["formula"] for o, n in got["replaced"].items()} == \
        {"NaCl": "LiF", "LiF": "CsI"} and not got["pending"] and not got["unreplaced"]
    per = {"seeded": {"a#0": {"candidates": picks, "seconds": 1.0, "drawn": 8}},
           "lookup": {"a#0": {"candidates": [{"dft_mae": 0.2, "dft_cosine": 0.95, "novel": False}]}}}
    out = truth.summarise(sites, per, cache, {"seeded": {"a#0": spares}})
    m = out["methods"]["seeded"]
    off = dos.mae(np.ones(dos.NPTS), np.full(dos.NPTS, 1.5))
    assert m["dft_mae_best_of_3_novel_after_relaxation"] == pytest.approx(off) and off > 0.1      # as picked: unchanged
    assert m["dft_mae_best_of_3_novel_after_relaxation_with_replacements"] == pytest.approx(0.0)     # CsI
    assert m["share_cosine_0.9_novel_after_relaxation_with_replacements"] == 1.0
    assert (m["replacement_checks"], m["replacement_checks_relaxed_into_known"], m["checks_relaxed_into_known_unreplaced"]) \
        == (2, 1, 0)
    assert m["sites_complete_with_replacements"] == 1 and m["lookup_dft_mae_same_sites_with_replacements"] == pytest.approx(0.2)
    reps = out["per_site"][0]["methods"]["seeded"]["replacements"]
    assert [(r["in_place_of"], r.get("in_place_of_pick"), r["formula"]) for r in reps] == [("NaCl", 1, "LiF"), ("LiF", None, "CsI")]
    assert reps[0]["in_place_of_relaxed_into"] == "mp-known" and reps[0]["relaxed_into"] == "mp-known"
    # without the spares (none cached) the site is left out of the replaced numbers, not counted as it was
    m = truth.summarise(sites, per, cache, {"seeded": {"a#0": None}})["methods"]["seeded"]
    assert m["sites_complete_with_replacements"] == 0 and list(m["sites_with_replacements_pending"]) == ["a#0"]
    assert m["dft_mae_best_of_3_novel_after_relaxation_with_replacements"] is None


def test_a_replacement_waits_for_its_check_and_there_are_no_more_than_were_picked(monkeypatch):
    sites, picks, spares, cache, done = _replacement_case(monkeypatch, spare_known=True)
    per = {"seeded": {"a#0": {"candidates": picks, "seconds": 1.0, "drawn": 8}}}
    m = truth.summarise(sites, per, cache, {"seeded": {"a#0": spares}})["methods"]["seeded"]
    assert m["sites_complete_with_replacements"] == 0 and "a#0" in m["sites_with_replacements_pending"]
    assert m["sites_complete"] == 1          # the as-picked numbers do not wait for it
    # one pick: at most one replacement, whatever it relaxed into
    cache.update(done)
    got = truth.checks_with_replacements(picks[:1], spares, cache, name="a#0")
    assert [got["by_rank"][n]["formula"] for n in got["replaced"].values()] == ["LiF"]
    assert list(got["unreplaced"].values()) == ["at most"]
    # a site none of whose checks relaxed into a known compound needs no spares at all
    clean = {k: {**v, "cif": "unknown"} for k, v in cache.items()}
    m = truth.summarise(sites, per, clean, {"seeded": {"a#0": None}})["methods"]["seeded"]
    assert m["sites_complete_with_replacements"] == 1 and m["replacement_checks"] == 0
    assert m["dft_mae_best_of_3_novel_after_relaxation_with_replacements"] == m["dft_mae_best_of_3_novel_after_relaxation"]


def test_a_record_without_spares_is_redrawn_and_keeps_its_key(monkeypatch):
    """An old record kept its top 3 only: the same draws again give its spares, provided each of
    its candidates is among them (a redraw differs in the CIF's last digits); else none. The
    record, and so its cache key, is left as it was."""
    rec = {"key": "tag/seeded_steered/a#0", "novel": 5,
           "candidates": [{"cif": _cell(4.0, "Na", "Cl"), "formula": "NaCl", "predicted_mae": 0.1}]}
    redrawn = [{"cif": _cell(4.0000001, "Na", "Cl"), "formula": "NaCl", "predicted_mae": 0.1000001},
               {"cif": _cell(3.5, "Cs", "I"), "formula": "CsI", "predicted_mae": 0.4}]
    seen = {}

    def fake_generate(method, site, res, seed, n_draw, seeds=None, top=3, novel_of=None):
        seen.update(method=method, seed=seed, top=top)
        assert novel_of is not None         # not today's db: it holds the bench's own checks of these draws
        return {"spares": redrawn[top:], "novel": 2, "candidates": redrawn[:top]}
    monkeypatch.setattr(truth, "generate", fake_generate)
    monkeypatch.setattr(truth, "checked_candidates_in_db", lambda: frozenset())
    monkeypatch.setattr(truth, "known_match", lambda s, db_url=None, skip=(), relaxed=False: None)
    got = truth.redraw_spares("seeded_steered", 2, {"material_id": "a", "site": 0}, rec, {"cifs": {}})
    assert seen == {"method": "seeded_steered", "seed": 2000, "top": 0}        # run()'s seed for site 2
    assert rec["key"] == "tag/seeded_steered/a#0" and "spares" not in rec
    assert got["key"] == rec["key"] and got["reproduced"] and [c["formula"] for c in got["spares"]] == ["CsI"]
    redrawn[0]["predicted_mae"] = 0.2          # another crystal: the draws are not the record's
    got = truth.redraw_spares("seeded_steered", 2, {"material_id": "a", "site": 0}, rec, {"cifs": {}})
    assert not got["reproduced"] and got["spares"] == []
