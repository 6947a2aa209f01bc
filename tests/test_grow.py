"""Growing from a candidate: the next round around what DFT confirmed. The candidate (its
DFT-checked cell once it has one, read in its own site order) is the only seed of a seeded run,
so the model's draws and the swaps all start from it, as benchmarks.refine measured."""
import argparse
import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from dosmatgen_core import checks
from dosmatgen_core import dos as dosmod
from dosmatgen_core.candidates import pipeline, seeding
from dosmatgen_core.candidates.pipeline import Request, _candidate_record, run_generation
from dosmatgen_core.candidates.runs import RunStore, dumps, structure_of
from dosmatgen_core.candidates.seeding import beats, bound_text, candidate_seed, grow_source, seed_arguments, seeded_specs
from dosmatgen_core.cli import generate as cli_generate
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH
from dosmatgen_core.sampling.sampler import Generated
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.search import site_index
from dosmatgen_core.scoring.verify import Verifier
from dosmatgen_core.settings import PRESET_ID
from dosmatgen_core.structures import Crystal, atoms_from_cif, to_structure
from studio.results import origin_text, seed_rows


def _cif(atoms: Atoms) -> str:
    buf = io.BytesIO()
    atoms.write(buf, format="cif")
    return buf.getvalue().decode()


# Sn first: pymatgen's CIF reader would regroup these sites by element and move the Sn row
SNNIAU = Atoms("SnNiAuNi", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
               cell=np.eye(3) * 4.1, pbc=True)


@pytest.fixture(scope="module")
def ni_target():
    ref = open_db(DB_URL).get(PRESET_ID)
    return ref.site_dos[ref.symbols.index("Ni")]


def test_a_candidate_seed_keeps_the_cifs_site_order_and_says_it_is_no_known_structure():
    seed = candidate_seed(_cif(SNNIAU), 0, 0.21, 0.93, "candidate #2 of run r", source="DFT")
    assert [int(z) for z in seed.crystal.numbers] == SNNIAU.numbers.tolist()
    assert seed.hit.element == "Sn" and seed.hit.site == 0 and seed.hit.n_atoms == 4
    rec = seed.record()
    assert rec["known"] is False and rec["source"] == "DFT" and rec["mae"] == 0.21
    assert "known" not in seeding.Seed(seed.hit, seed.crystal).record()      # a known seed's record is as before
    with pytest.raises(ValueError, match="not one of the candidate's 4 sites"):
        candidate_seed(_cif(SNNIAU), 4, 0.2, 0.9, "x")
    with pytest.raises(ValueError, match="'DFT' or 'predicted'"):
        candidate_seed(_cif(SNNIAU), 0, 0.2, 0.9, "x", source="guess")


def test_grow_source_takes_the_checked_cell_and_its_dft_match_else_the_drawn_one_predicted():
    drawn = _cif(SNNIAU)
    relaxed = SNNIAU.copy()
    relaxed.set_cell(SNNIAU.cell.array * 1.03, scale_atoms=True)
    run = {"id": "r1"}
    c = {"rank": 2, "formula": "SnAuNi2", "cif": drawn, "site_to_target": {"1": 0},
         "dos_match": {"1": {"mae": 0.30, "cosine": 0.80}}}
    dft = {"status": "done", "result": {"cif": _cif(relaxed), "relaxed": True,
                                        "dos_match": {"1": {"mae": 0.234, "cosine": 0.91}}}}
    src = grow_source(run, c, dft)
    assert src["cif"] == dft["result"]["cif"] and src["sites"] == [1] and src["source"] == "DFT"
    assert (src["mae"], src["cosine"]) == (0.234, 0.91) and "relaxed, DFT-checked" in src["name"]
    plain = grow_source(run, c, {"status": "running", "result": None})
    assert plain["cif"] == drawn and plain["source"] == "predicted" and plain["mae"] == 0.30
    assert "as drawn" in plain["name"]
    seed = candidate_seed(**seed_arguments(src))
    assert seed.hit.site == 1 and seed.hit.element == "Ni"
    with pytest.raises(ValueError, match="2 atoms carrying a target; a round grows around one"):
        seed_arguments({**src, "sites": [1, 2]})           # the one place that says so (app, CLI, rounds)
    assert np.allclose(seed.crystal.lattice, relaxed.cell.array, atol=1e-4)       # the checked cell
    with pytest.raises(ValueError, match="no site carrying a target"):
        grow_source(run, {**c, "site_to_target": {}}, None)


def test_a_draw_that_returns_a_candidate_seed_is_marked_and_not_checked_again():
    """A known seed never is a novel draw; a candidate seed can be, so its draws are compared
    with it, and one that is the parent again gets no DFT check of its own."""
    seed = candidate_seed(_cif(SNNIAU), 1, 0.2, 0.9, "candidate #1 of run r")
    spec = seeded_specs(np.ones(400), [seed], 1, 0.3)[0]
    moved = seed.crystal.to_structure()
    moved.translate_sites([0], [0.02, 0, 0])
    ev = {"novel": True, "structurally_valid": True, "n_atoms": 4}
    same = _candidate_record(0, Generated(Crystal.from_structure(moved), 0), spec, ev, [])
    assert same["same_as_template"] is True and same["seed"]["known"] is False
    assert certify.dft_eligibility(same) == "equal to its template"
    known = seeding.Seed(seed.hit, seed.crystal)          # the same cell as a labelled structure
    spec_known = seeded_specs(np.ones(400), [known], 1, 0.3)[0]
    assert "same_as_template" not in _candidate_record(0, Generated(Crystal.from_structure(moved), 0), spec_known, ev, [])


def test_a_run_grown_from_a_candidate_draws_and_swaps_from_it_alone(tmp_path, ni_target, monkeypatch):
    parent = Structure(Lattice.cubic(3.9), ["Au", "Ni", "Au", "Au"],
                       [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])     # Ni second, not first
    cif = _cif(Atoms([s.specie.symbol for s in parent], scaled_positions=parent.frac_coords,
                     cell=parent.lattice.matrix, pbc=True))
    monkeypatch.setattr(pipeline, "find_seeds", lambda *a, **k: pytest.fail("a grown run searches no known sites"))
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=5, particles=1,
                  baseline=False, substitutions=True, distant_swaps=False,
                  grow_from=[{"cif": cif, "site": 1, "mae": 0.12, "cosine": 0.95, "name": "candidate #1 of run p",
                              "source": "DFT"}])
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=False)
    assert run["status"] == "done"
    origins = {c["origin"] for c in run["candidates"]}
    assert origins == {"generator", "substitution"}                   # Au → Ag, Cu: swaps of the parent
    # both kinds of swap, whatever distant_swaps says: the round as benchmarks.refine measured it
    assert {c["seed"]["substitution"]["kind"] for c in run["candidates"] if c["origin"] == "substitution"} == \
        {"element", "distant"}
    for c in run["candidates"]:
        assert c["seed"]["material_id"] == "candidate #1 of run p" and c["seed"]["known"] is False
        assert {int(k): v for k, v in c["site_to_target"].items()} == {1: 0}        # the parent's site
        if c["origin"] == "substitution":
            s = structure_of(c)
            assert s[1].specie.symbol == "Ni" and s.composition != parent.composition
        assert "has DFT MAE 0.120" in origin_text(c)
    (row,) = seed_rows(run)                                           # the parent stands in the DFT table
    assert row["candidate"] == "grown from" and row["DFT MAE"] == 0.12 and "the parent" in row["cell"]
    predicted = {**run, "candidates": [{**c, "seed": {**c["seed"], "source": "predicted"}} for c in run["candidates"]]}
    assert seed_rows(predicted) == []                                 # no DFT check: no DFT row


def _parser():
    p = argparse.ArgumentParser()
    cli_generate.add_parsers(p.add_subparsers())
    return p


def test_the_cli_grows_from_a_stored_candidate_its_checked_cell_first(tmp_path, ni_target):
    store = RunStore(tmp_path / "runs.db")
    req = Request(mode="masked", n_atoms=4, targets=[ni_target.tolist()], cond_sites=[0], n_candidates=1, steps=5,
                  baseline=False, target_element="Ni")
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), store=store,
                         check_novelty=False)
    c = run["candidates"][0]
    runs = str(tmp_path / "runs.db")
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(
        ["generate", "--grow-from", f"{run['id']}:{c['rank']}", "--runs", runs]), DB_URL)
    assert kw["target_element"] == "Ni"          # kept, as the app's rounds keep it (a card's carrier note)
    (g,) = kw["grow_from"]
    assert g["cif"] == c["cif"] and g["site"] == 0 and g["source"] == "predicted"
    # no target given: the round aims at its run's target, not the example's (a VO run's round aimed at Au3Ni)
    assert np.allclose(kw["targets"][0], ni_target) and kw.get("reference_id") is None
    assert kw["title"] == f"target: the target of run {run['id']} · grown from #{c['rank']} of run {run['id']}"
    named = cli_generate._targets_and_template(_parser().parse_args(          # a target given is the target
        ["generate", "--grow-from", f"{run['id']}:{c['rank']}", "--ref", PRESET_ID, "--site", "1", "--runs", runs]),
        DB_URL)[0]
    assert named["title"] == f"target: DFT label of Au3Ni site 1 (Au) · grown from #{c['rank']} of run {run['id']}"
    checked = atoms_from_cif(c["cif"])
    checked.set_cell(checked.cell.array * 1.02, scale_atoms=True)
    Verifier(store)._set(run["id"], c["rank"], status="done",
                         result=dumps({"cif": _cif(checked), "relaxed": True, "site_dos": np.zeros((4, 400)),
                                       "dos_match": {"0": {"mae": 0.3, "cosine": 0.7}}}))
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(
        ["generate", "--grow-from", f"{run['id']}:{c['rank']}", "--runs", runs]), DB_URL)
    (g,) = kw["grow_from"]
    assert g["source"] == "DFT" and g["mae"] == 0.3 and "relaxed, DFT-checked" in g["name"]
    plain, _ = cli_generate._targets_and_template(_parser().parse_args(       # a run of its own: titled as the
        ["generate", "--mode", "masked", "--site", "1", "--exclude-ref", "--runs", runs]), DB_URL)  # app's are
    # titled as the app titles the same target
    assert plain["title"] == "target: DFT label of Au3Ni site 1 (Au)" and plain["seed_exclude"] == [PRESET_ID]
    assert plain["reference_id"] == PRESET_ID
    seed = Request(mode="seeded", **kw).seeds()[0]
    assert [int(z) for z in seed.crystal.numbers] == checked.numbers.tolist()
    for argv, err in (([f"{run['id']}"], checks.UserError), ([f"{run['id']}:99"], checks.NotFound),
                      (["nosuchrun:1"], checks.NotFound)):
        with pytest.raises(err):
            cli_generate._targets_and_template(_parser().parse_args(
                ["generate", "--grow-from", *argv, "--runs", runs]), DB_URL)
    with pytest.raises(checks.UserError, match="--mode seeded"):
        cli_generate._targets_and_template(_parser().parse_args(
            ["generate", "--mode", "masked", "--grow-from", f"{run['id']}:1", "--runs", runs]), DB_URL)


# a narrow peak 9.5 eV above E_F: no labelled site has its shape (cosine about 0.53), so a round
# for it grows from its best check, never from known sites
SPIKE = np.exp(-((np.linspace(-10, 10, 400) - 9.5) / 0.1) ** 2)


def _checked_run(cosines: dict[int, float], target=SPIKE, exclude=()):
    """A stored-run-like record of masked 4-atom candidates (site 1 conditioned) and DFT checks
    with the given cosines: rank → cosine; a rank absent from cosines is unchecked."""
    from dataclasses import asdict
    settings = asdict(Request(mode="masked", n_atoms=4, targets=[np.asarray(target).tolist()], cond_sites=[1],
                              n_candidates=5, strength=0.4, seed=7, title="target: Ni", seed_exclude=list(exclude)))
    cif = _cif(SNNIAU)
    cands = [{"rank": r, "formula": "SnAuNi2", "cif": cif, "site_to_target": {"1": 0},
              "dos_match": {"1": {"mae": 0.3, "cosine": 0.5}}} for r in (1, 2, 3)]
    dft = {}
    for r, cos in cosines.items():
        cell = SNNIAU.copy()
        cell.set_cell(SNNIAU.cell.array * (1 + 0.01 * r), scale_atoms=True)      # each check its own relaxed cell
        dft[r] = {"status": "done", "result": {"cif": _cif(cell), "relaxed": True,
                                               "dos_match": {"1": {"mae": 0.2, "cosine": cos}}}}
    return {"id": "run1", "settings": settings, "candidates": cands}, dft


def test_the_next_round_grows_from_the_best_shaped_check_until_it_meets_the_bar():
    from dosmatgen_core.candidates import rounds
    run, dft = _checked_run({1: 0.62, 2: 0.87, 3: 0.80})
    dft[3]["status"] = "failed"
    assert rounds.checked_cosines(run, dft) == {1: 0.62, 2: 0.87}
    # a check at the bar whose relaxed cell is a known structure: no new structure meets it, so the
    # rounds go on, grown from it
    run_hi, dft_hi = _checked_run({1: 0.62, 2: 0.93})
    assert rounds.next_round(run_hi, dft_hi) is None
    dft_hi[2]["result"]["relaxed_into"] = "gen:8c1433ce2e6ead6c3d41"
    again_hi = rounds.next_round(run_hi, dft_hi)
    assert again_hi is not None and again_hi.grows()
    note = rounds.outcome(rounds.best_of([(run_hi, dft_hi)]), 2)
    assert "reaches 0.9, but relaxed it is the known structure gen:8c1433ce2e6ead6c3d41" in note
    best, cos = rounds.best_check(run, dft)
    assert best["rank"] == 2 and cos == 0.87
    req = rounds.next_round(run, dft)
    assert req.mode == "seeded" and req.seed == 8 and req.strength == 0.4 and req.n_candidates == 5
    assert req.targets == run["settings"]["targets"] and req.cond_sites == [] and req.template is None
    assert req.title == "target: Ni · grown from #2 of run run1"
    (seed,) = req.seeds()
    assert seed.hit.site == 1 and seed.source == "DFT" and seed.hit.cosine == 0.87
    assert np.allclose(seed.crystal.lattice, SNNIAU.cell.array * 1.02, atol=1e-4)     # #2's checked cell
    req.specs()                                                   # a valid request as it stands
    again = rounds.next_round({**run, "id": "run2", "settings": {**run["settings"], "title": req.title}}, dft)
    assert again.title == "target: Ni · grown from #2 of run run2"          # one link per round, not a pile
    later, dft_later = _checked_run({1: 0.70})                     # a round that did worse than its parent
    later["id"] = "run2"
    base, base_dft, c, cos = rounds.best_of([(run, dft), (later, dft_later)])
    assert base["id"] == "run1" and c["rank"] == 2 and cos == 0.87
    assert rounds.best_of([(later, dft_later)])[0]["id"] == "run2" and rounds.best_of([(run, {})]) is None
    run_ok, dft_ok = _checked_run({1: 0.62, 2: 0.93})
    assert rounds.next_round(run_ok, dft_ok) is None                       # the bar is met
    assert rounds.next_round(*_checked_run({})) is None                    # nothing checked to grow from


def test_a_round_grows_from_known_sites_shaped_better_than_the_best_check_each_only_once(ni_target):
    """Where labelled sites' stored DFT curves have the target's shape more closely than the best
    check (the reference and its copies never), the next round grows from them (up to n_seeds, by
    cosine); a later round takes none of them again, and with none left above the check it grows
    from the check."""
    from dataclasses import asdict
    from dosmatgen_core.candidates import rounds
    from dosmatgen_core.candidates.pipeline import substituted
    run, dft = _checked_run({1: 0.62, 2: 0.87}, ni_target, exclude=[PRESET_ID])
    req = rounds.next_round(run, dft)
    assert req.mode == "seeded" and req.grow_from == [] and req.seed_by == "cosine" and req.seed_above == 0.87
    assert req.seed == 8 and req.grows() and req.seed_exclude == [PRESET_ID]
    assert req.title == "target: Ni · grown from known sites shaped better than #2 of run run1"
    seeds = req.seeds()
    assert req.seed_mae_at_most == 0.2                      # the check's DFT MAE
    assert 1 <= len(seeds) <= req.n_seeds and all(s.known and s.hit.cosine > 0.87 and s.hit.mae <= 0.2 for s in seeds)
    db = open_db(DB_URL)
    au3ni = to_structure(db.get(PRESET_ID).atoms)
    for s in seeds:           # the target's own material under no id; the site's row in the label's order
        row = db.get(s.hit.material_id)
        assert s.hit.material_id != PRESET_ID and not StructureMatcher().fit(to_structure(row.atoms), au3ni)
        assert np.isclose(dosmod.cosine(ni_target, row.site_dos[s.hit.site]), s.hit.cosine, atol=1e-4)
    assert len(req.specs()) == req.n_candidates
    kinds = {spec.tag["seed"]["substitution"]["kind"] for _, spec in substituted(req)}
    assert kinds == {"element", "distant"}                  # both kinds of swap, as a round was measured
    best = rounds.best_of([(run, dft)])
    note = rounds.running(best, 2, 0, req=req)
    assert note.startswith("Round 2 is running, grown from the known sites whose stored DFT curve has the target's "
                           "shape more closely (cosine) than the best GPAW-checked candidate so far, at no larger MAE "
                           "(#2 of run run1, has DFT cosine 0.87")
    assert all(f"{s.hit.formula} site {s.hit.site}" in note for s in seeds)
    # the round as stored: its candidates name their seeds; the next round takes none of them again
    done = {"id": "run2", "settings": asdict(req), "candidates": [{"rank": 1, "seed": s.record()} for s in seeds]}
    used = rounds.tried(done)
    assert used == sorted({PRESET_ID} | {s.hit.material_id for s in seeds})
    again = rounds.next_round(run, dft, exclude=used)
    assert again.seed_exclude == used and not {s.hit.material_id for s in again.seeds()} & set(used)
    # no known site above the check: grown from the check itself, the exclusions carried on
    top = max(s.hit.cosine for s in seeds)
    run_hi, dft_hi = _checked_run({2: top + 0.005}, ni_target, exclude=[PRESET_ID])
    from_check = rounds.next_round(run_hi, dft_hi, bar=2.0, exclude=used)       # a bar no check meets
    assert from_check.seed_above is None and from_check.seed_mae_at_most is None
    assert from_check.grow_from[0]["cosine"] == top + 0.005
    assert from_check.seed_exclude == used and from_check.title.endswith("grown from #2 of run run1")
    assert rounds.tried({"settings": asdict(from_check), "candidates": []}) == used
    with pytest.raises(checks.UserError, match="cosine to beat is 1.5"):
        Request(mode="seeded", targets=[ni_target.tolist()], seed_above=1.5).check()
    for bad, why in ((-0.1, "MAE bound is -0.1"), (float("nan"), "not a finite number"), ("x", "must be a number")):
        with pytest.raises(checks.UserError, match=why):
            Request(mode="seeded", targets=[ni_target.tolist()], seed_mae_at_most=bad).check()


def test_a_rounds_known_seeds_are_no_farther_off_in_size_than_its_check(ni_target):
    """Shape alone would seed a Ni d-band target from sites of another shell whose curve has the
    same shape at twice the height (the walk's Cl7Na: cosine 0.97, MAE 0.49): a round's known
    seeds beat its best check on the cosine and are within its MAE (seeding.beats)."""
    hits = site_index(DB_URL).search(ni_target, top=30, by="cosine", per_structure=True, exclude={PRESET_ID})
    close = [h.material_id for h in hits if h.cosine > 0.97 and h.mae <= 0.3]
    base = dict(mode="seeded", targets=[ni_target.tolist()], seed_by="cosine", seed_above=0.97, n_seeds=3)
    shape_only = Request(**base, seed_exclude=[PRESET_ID, *close]).seeds()
    assert any(s.hit.mae > 0.3 and s.hit.element != "Ni" for s in shape_only)    # shaped like it, far off in size
    with pytest.raises(checks.UserError, match="has a DFT cosine above 0.970 and a DFT MAE of at most 0.300 "
                                               "states/eV to the target"):
        Request(**base, seed_exclude=[PRESET_ID, *close], seed_mae_at_most=0.3).seeds()
    both = Request(**base, seed_exclude=[PRESET_ID], seed_mae_at_most=0.3).seeds()
    assert both and all(s.hit.cosine > 0.97 and s.hit.mae <= 0.3 for s in both)
    assert {s.hit.material_id for s in both} <= set(close)
    h = hits[0]
    assert beats(h, cosine=h.cosine - 0.01, mae=h.mae) and not beats(h, cosine=h.cosine)
    assert not beats(h, mae=h.mae - 0.01) and beats(h, mae=float("nan")) and beats(h)
    assert bound_text(None, None) == "any" and bound_text(0.5, None) == "a DFT cosine above 0.500"


def _chain(store, sent, **kw):
    """A chain whose generations are only recorded (queued jobs that never run)."""
    from dosmatgen_core.candidates.chain import Chain
    from dosmatgen_core.candidates.jobs import Job
    from dosmatgen_core.scoring.certify import Certifier

    def queue(r, then):
        sent.append(r)
        return Job(f"job{len(sent)}", r)
    return Chain(queue, Certifier(Verifier(store), prior_s=60.0), store, **{"top": 3, "relaxed": True,
                                                                           "per_source": False, **kw})


def test_a_chain_starts_the_next_round_when_its_checks_end(tmp_path):
    """Rounds left for a run whose DFT checks have ended: the next round is queued from the checks'
    own thread (no page needs to be open), grown from the best check, and the chain says so; with
    the bar met, or the rounds spent, none is, and the chain says how the rounds ended."""
    from dosmatgen_core.scoring.certify import Batch
    store = RunStore(tmp_path / "runs.db")
    req = Request(mode="masked", n_atoms=4, targets=[SPIKE.tolist()], cond_sites=[0], n_candidates=2, steps=5,
                  baseline=False, title="target: Ni")
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), store=store,
                         check_novelty=False)
    c = run["candidates"][-1]
    for cos, left, submitted in ((0.8, 2, True), (0.95, 2, False), (0.8, 0, False)):
        Verifier(store)._set(run["id"], c["rank"], status="done", result=dumps(
            {"cif": c["cif"], "relaxed": True, "site_dos": np.zeros((c["n_atoms"], 400)),
             "dos_match": {"0": {"mae": 0.2, "cosine": cos}}}))
        sent = []
        chain = _chain(store, sent, left=left, round=1 + (left == 0))
        chain._after(Batch(run["id"], [c["rank"]], 60.0))
        if submitted:
            (r,) = sent
            assert r.mode == "seeded" and r.grow_from[0]["source"] == "DFT"
            assert r.title == f"target: Ni · grown from #{c['rank']} of run {run['id']}"
            assert (chain.left, chain.round, chain.best_run) == (1, 2, run["id"]) and chain.job.request is r
            assert not chain.finished
            assert chain.note.startswith("Round 2 is running, grown from the best GPAW-checked candidate so far: "
                                         f"#{c['rank']} of run {run['id']}, has DFT cosine 0.80")
            assert "up to 1 more round after" in chain.note
        elif cos >= 0.9:
            assert not sent and chain.finished
            assert "at least 0.9: no further round is needed" in chain.note
        else:                                                       # the last round asked for has ended
            assert not sent and chain.finished
            assert chain.note.startswith("The rounds asked for are done: the rounds' best GPAW-checked candidate, "
                                         f"#{c['rank']}") and "still below 0.9" in chain.note
    # stopped checks, a newer Generate, and no rounds asked for: nothing follows
    for kw, stop, note in (({"left": 2}, False, "The DFT checks were stopped"), ({"left": 2}, True, "A newer Generate"),
                           ({"left": 0}, False, None)):
        sent = []
        chain = _chain(store, sent, **kw)
        if stop:
            chain.stop()
        b = Batch(run["id"], [c["rank"]], 60.0)
        if note:
            b.cancel_flag.set()
        chain._after(b)
        assert not sent and chain.finished and (chain.note or None) == (note and rounds_text(note))


def test_a_chain_ends_with_a_note_when_what_follows_its_checks_fails_or_a_newer_generate_takes_over(tmp_path):
    """A review: a run deleted while its checks ran made the next round's decision raise in the
    checks' thread, and the chain stayed "at work" forever (followed, and adopted by new tabs). It
    ends with a note. A newer Generate stops a chain: no round starts after it, one it started and
    still generating is cancelled, and its note says why."""
    from dosmatgen_core.candidates import chain as chainmod
    from dosmatgen_core.candidates.jobs import Job
    from dosmatgen_core.scoring.certify import Batch
    store = RunStore(tmp_path / "runs.db")
    chain = _chain(store, [], left=2)
    chain._after(Batch("deleted-run", [1], 60.0))
    assert chain.finished and chain.note.startswith("No further round was started: KeyError")
    sent = []
    chain = _chain(store, sent, left=2, round=2)
    chain.job = Job("round2", Request(mode="unconditional", n_atoms=4), status="running")
    chain.stop()
    assert chain.job.cancel_flag.is_set() and chain.note == chainmod.STOPPED
    chain._after(Batch("deleted-run", [1], 60.0))          # nothing is read, nothing starts
    assert chain.finished and chain.note == chainmod.STOPPED and not sent
    first = _chain(store, [], left=1)
    first.job = Job("round1", Request(mode="unconditional", n_atoms=4), status="done")
    first.stop()
    assert not first.job.cancel_flag.is_set()           # the user's own round is never cancelled by it


def rounds_text(start: str) -> str:
    from dosmatgen_core.candidates import chain, rounds
    return next(t for t in (rounds.CANCELLED, rounds.NOTHING_CHECKED, chain.STOPPED) if t.startswith(start))


def test_a_chain_runs_its_rounds_in_threads_with_no_page_open(tmp_path, ni_target):
    """Generate with a round asked for, and nothing else: the job checks its top with GPAW (a stub
    here, which gives each round's checks their cosines), the checks' thread starts round 2, and
    round 2's checks end the chain at the bar."""
    import time
    from dosmatgen_core.candidates.chain import Chain
    from dosmatgen_core.candidates.jobs import JobManager
    from dosmatgen_core.scoring.certify import Certifier
    store = RunStore(tmp_path / "runs.db")
    model, predictor, jobs = load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), JobManager()
    stub = _GpawStub(store, [[0.80], [0.95]], mae=0.35)

    def queue(r, then):
        return jobs.submit(r, model, predictor, store, DB_URL, then=then)
    chain = Chain(queue, Certifier(stub, prior_s=1.0, workers=1), store, top=1, per_source=False, left=2)
    notes, check = [], stub.run

    def run(*a, **kw):                  # what the page says while each round's checks run
        notes.append(chain.note)
        return check(*a, **kw)
    stub.run = run
    first = chain.start(Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=5, particles=1,
                                baseline=False, seed_exclude=[PRESET_ID], reference_id=PRESET_ID, title="target: Ni"))
    deadline = time.time() + 600
    while not chain.finished and time.time() < deadline:
        time.sleep(0.2)
    assert chain.finished and chain.round == 2 and chain.job is not first and chain.job.status == "done"
    assert stub.order == [first.run_id, chain.job.run_id]           # both rounds checked, in order
    assert store.get(chain.job.run_id)["title"].startswith("target: Ni · grown from ")
    assert chain.note.startswith("Round 2 ended: the rounds' best GPAW-checked candidate") and "0.95" in chain.note
    assert notes[0] == ("Round 1 of up to 3: once its DFT checks end, a further round starts from the best check if "
                        "its DFT cosine to the target is below 0.9.") and notes[1].startswith("Round 2 is running")


@pytest.fixture
def chains_cleared():
    """A test that leaves a chain in the process's resources takes it away after: a later page's
    new session would take a chain still at work as its own (state.current_chain)."""
    yield
    from studio import state
    state.resources()["chains"].clear()


def test_the_generate_page_follows_the_sessions_chain_and_says_how_its_rounds_stand(tmp_path, monkeypatch,
                                                                                      chains_cleared):
    """The page only follows the chain: a round the checks' thread started is shown as the job in
    progress (in a new tab too: a session with no chain takes the one at work), and once it is
    done its run opens (once) under the chain's note; a cancelled round says no further round
    starts."""
    from streamlit.testing.v1 import AppTest
    from dosmatgen_core.candidates.jobs import Job
    from studio import shared as studio
    from studio import state
    store = RunStore(tmp_path / "runs.db")
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    req = Request(mode="masked", n_atoms=4, targets=[SPIKE.tolist()], cond_sites=[0], n_candidates=1, steps=5,
                  baseline=False, title="target: Ni · grown from #1 of run abc")
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), store=store,
                         check_novelty=False)
    chain = _chain(store, [], left=1, round=2)
    chain.job = Job("round2", req, status="running", message="sampling")
    chain.note = "Round 2 is running, grown from the best GPAW-checked candidate so far: …"
    state.resources()["chains"][chain.id] = chain
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.run()                            # a new session: it follows the chain at work
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["chain"] == chain.id and chain.note in [i.value for i in at.info]
    assert [p.proto.text for p in at.get("progress")] == ["sampling"] and at.button(key="cancel_round2")
    chain.job.status, chain.job.run_id, chain.ended = "done", run["id"], True
    chain.note = "Round 2 ended: the rounds' best GPAW-checked candidate, …, at least 0.9: no further round is needed."
    at.run()
    at.run()          # the page opened the round's run and drew it
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["run"] == run["id"] and chain.note in [i.value for i in at.info]
    assert any(s.value.startswith(f"Showing run `{run['id']}`") for s in at.caption)
    at.query_params["run"] = "elsewhere"          # opened another run since: the done round is not forced back
    at.run()
    assert at.query_params["run"] == "elsewhere"
    chain.job.status, chain.note = "cancelled", "Round 2 is running, grown from …"
    at.run()
    notes = [i.value for i in at.info]
    assert "Round 2 was cancelled, so no further round starts." in notes and chain.note not in notes


def test_the_runs_page_grows_the_next_round_from_a_stored_candidate(tmp_path, monkeypatch, chains_cleared):
    """Runs: "Grow from this candidate" on a stored run starts the round as the Generate page's
    job (grown from that candidate's checked cell, towards the run's own target) and goes there."""
    from streamlit.testing.v1 import AppTest
    from dosmatgen_core.candidates.jobs import Job, JobManager
    from studio import shared as studio
    store = RunStore(tmp_path / "runs.db")
    monkeypatch.setenv("DOSMATGEN_RUNS", str(tmp_path / "runs.db"))
    monkeypatch.setattr(studio, "RUNS_PATH", tmp_path / "runs.db")
    ref = open_db(DB_URL).get(PRESET_ID)
    au = ref.symbols.index("Au")            # not the form's own target (the preset's Ni site)
    target = ref.site_dos[au]
    req = Request(mode="masked", n_atoms=4, targets=[target.tolist()], cond_sites=[0], n_candidates=1, steps=5,
                  baseline=False, title="target: Au")
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), store=store,
                         check_novelty=False)
    c = run["candidates"][0]
    checked = atoms_from_cif(c["cif"])
    checked.set_cell(checked.cell.array * 1.02, scale_atoms=True)
    Verifier(store)._set(run["id"], c["rank"], status="done", result=dumps(
        {"cif": _cif(checked), "relaxed": True, "site_dos": np.zeros((4, 400)),
         "dos_match": {"0": {"mae": 0.25, "cosine": 0.6}}}))
    sent = []

    def capture(self, r, *a, **kw):          # the round as the page submits it; nothing is run
        sent.append(r)
        self.jobs["fake"] = Job("fake", r)     # queued: the Generate page follows it
        return self.jobs["fake"]
    monkeypatch.setattr(JobManager, "submit", capture)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app.py"), default_timeout=180)
    at.switch_page("pages/1_Runs.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    grow = [b for b in at.button if b.key and b.key.startswith(f"grow{run['id']}_{c['rank']}_")]
    assert len(grow) == 1
    grow[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    (r,) = sent
    assert r.mode == "seeded" and np.allclose(r.targets[0], target) and r.seed == req.seed + 1
    assert r.title == f"target: Au · grown from #{c['rank']} of run {run['id']}"
    (seed,) = r.seeds()
    assert seed.source == "DFT" and np.allclose(seed.crystal.lattice, checked.cell.array, atol=1e-4)
    assert at.session_state["chain"]          # the Generate page follows the round's chain
    assert [p.proto.text for p in at.get("progress")] == ["starting"]     # queued: shown as starting
    assert at.button(key="cancel_fake")
    assert "Generate structures for a target DOS" in [t.value for t in at.title]       # on the Generate page now
    # the page names the round's target and draws it: the form's own (the preset's Ni) is another
    assert at.session_state["rounds_note"].startswith(f"Growing from candidate #{c['rank']}") and \
        f"towards the target of run {run['id']} (Au):" in at.session_state["rounds_note"]
    charts = [json.loads(e.proto.spec) for e in at.get("plotly_chart")]
    (mine,) = [f for f in charts if "run in progress" in json.dumps(f["layout"].get("title", ""))]
    y = mine["data"][0]["y"]            # plotly sends arrays as typed base64 buffers
    y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]) if isinstance(y, dict) else np.asarray(y)
    assert np.allclose(y, target, atol=1e-4)
    assert mine["data"][0]["name"] == "this run's target: Au"


def test_a_round_that_did_worse_grows_the_next_from_the_better_earlier_check(tmp_path, ni_target):
    """The next round after a round that did worse: grown around the earlier, better check, here
    from the known sites shaped better than it (the reference left out, as the run says)."""
    from dosmatgen_core.scoring.certify import Batch
    store = RunStore(tmp_path / "runs.db")
    runs = []
    for cos in (0.7, 0.6):                      # round 1, then a round 2 that did worse
        req = Request(mode="masked", n_atoms=4, targets=[ni_target.tolist()], cond_sites=[0], n_candidates=1, steps=5,
                      baseline=False, title="target: Ni", seed_exclude=[PRESET_ID])
        run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), store=store,
                             check_novelty=False)
        c = run["candidates"][0]
        Verifier(store)._set(run["id"], c["rank"], status="done", result=dumps(
            {"cif": c["cif"], "relaxed": True, "site_dos": np.zeros((4, 400)),
             "dos_match": {"0": {"mae": 0.3, "cosine": cos}}}))
        runs.append(run)
    sent = []
    chain = _chain(store, sent, left=1, round=2, best_run=runs[0]["id"])
    chain._after(Batch(runs[1]["id"], [1], 60.0))
    (r,) = sent
    assert r.title.endswith(f"grown from known sites shaped better than #1 of run {runs[0]['id']}")   # the earlier
    assert r.seed_above == 0.7 and r.seed_mae_at_most == 0.3 and r.seed_exclude == [PRESET_ID]
    assert all(s.hit.cosine > 0.7 and s.hit.mae <= 0.3 and s.hit.material_id != PRESET_ID for s in r.seeds())
    assert chain.note.startswith(
        "Round 3 is running, grown from the known sites whose stored DFT curve has the target's shape more closely "
        f"(cosine) than the best GPAW-checked candidate so far, at no larger MAE (#1 of run {runs[0]['id']}, has DFT "
        "cosine 0.70")


class _GpawStub:
    """Stands in for the GPAW check in a test of the rounds' logic only: each run's checks get the
    cosines its round is given (the round's best first), in the candidate's own site rows."""

    def __init__(self, store, per_round, mae=0.2):
        self.store, self.per_round, self.order, self.status_of, self.mae = store, per_round, [], {}, mae

    def run(self, run_id, rank, recipe=None, relaxed=False, cancelled=None):
        if run_id not in self.order:
            self.order.append(run_id)
        cosines = self.per_round[self.order.index(run_id)]
        k = sum(1 for (rid, _) in self.status_of if rid == run_id)
        c = next(x for x in self.store.get(run_id)["candidates"] if x["rank"] == rank)
        (site, _), = c["site_to_target"].items()
        self.status_of[(run_id, rank)] = {"status": "done", "result": {
            "cif": c["cif"], "relaxed": relaxed,
            "dos_match": {str(site): {"mae": self.mae, "cosine": cosines[min(k, len(cosines) - 1)]}}}}

    def status(self, run_id, rank):
        return self.status_of.get((run_id, rank))

    def statuses(self, run):
        return {r: s for (rid, r), s in self.status_of.items() if rid == run["id"]}


def test_blocking_rounds_check_grow_from_the_best_so_far_and_stop_at_the_bar(tmp_path, ni_target):
    from dosmatgen_core.candidates import rounds
    store = RunStore(tmp_path / "runs.db")
    model, predictor = load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH)

    def generate(req):
        return run_generation(req, model, predictor, store=store, db_url=DB_URL, check_novelty=False)
    first = generate(Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=5, particles=1,
                             baseline=False, seed_exclude=[PRESET_ID], reference_id=PRESET_ID, title="target: Ni"))
    # round 2 does worse than round 1; at their MAE, known Ni sites are left for two rounds
    stub = _GpawStub(store, [[0.80, 0.70], [0.75], [0.95]], mae=0.35)
    said = []
    history = rounds.run_rounds(first, stub, generate, rounds=5, top=2, per_source=False, log=said.append)
    assert [h["round"] for h in history] == [1, 2, 3]                   # stopped at the bar, not after 5
    assert said[-1].startswith("Round 3 ended: the rounds' best GPAW-checked candidate") and "0.95" in said[-1]
    assert sum(m.startswith("Round 2 is running") for m in said) == 1
    assert history[0]["best"]["run"] == history[1]["best"]["run"] == first["id"]     # round 2 did worse
    assert history[2]["best"]["dft_cosine"] == 0.95 and history[2]["best"]["run"] == history[2]["run"]
    best_rank = history[0]["best"]["rank"]
    second, third = (store.get(h["run"]) for h in history[1:])
    for r in (second, third):           # both grown around round 1's best: labelled Ni sites shape it better
        assert r["title"] == f"target: Ni · grown from known sites shaped better than #{best_rank} of run {first['id']}"
        assert r["settings"]["seed_above"] == 0.80
    seeds_of = [{c["seed"]["material_id"] for c in r["candidates"]} for r in (second, third)]
    assert seeds_of[0] and seeds_of[1] and not seeds_of[0] & seeds_of[1]      # no known site taken twice
    assert set(third["settings"]["seed_exclude"]) == {PRESET_ID} | seeds_of[0]
    assert third["settings"]["reference_id"] == PRESET_ID      # a round still knows which is the reference
    said = []
    assert len(rounds.run_rounds(first, _GpawStub(store, [[0.5]]), generate, rounds=0, top=1,
                                 per_source=False, log=said.append)) == 1             # 0: check this run only
    assert said[-1].startswith("The rounds asked for are done: its best GPAW-checked candidate")


def test_the_rounds_verb_refuses_bad_input_in_one_line(tmp_path, capsys):
    from dosmatgen_core.cli import main
    assert main(["rounds", "nosuch", "--runs", str(tmp_path / "none.db")]) == 2
    assert main(["rounds", "nosuch", "--rounds", "9"]) == 2
    assert main(["rounds", "nosuch", "--top", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: no run store at {tmp_path / 'none.db'} — generate a run first, or give --runs PATH",
                   "error: --rounds 9 is out of range — give 0 to 5",
                   "error: --top 0 is out of range — give 1 to 10 candidates to check per round"]


FEPT_COPY = "gen:8351fc56e6a19ecccd39"       # a candidate that relaxed into FePt (mp-2260), labelled under its own id


def test_generate_leaves_the_reference_out_of_its_seeds_as_the_app_does():
    """A walk: `dosmatgen generate --ref mp-2260 --site 0` grew from FePt itself ('Substitution of
    FePt · mp-2260, whose Fe site 0 has DFT MAE 0.000'), where the app never seeds from the
    reference nor a copy of it. Left out by default now; --include-ref keeps it; --exclude-ref,
    which older scripts pass, is the default."""
    p = _parser()

    def kw_of(*argv):
        return cli_generate._targets_and_template(p.parse_args(["generate", *argv]), DB_URL)[0]
    kw = kw_of("--ref", "mp-2260", "--site", "0")
    assert kw["seed_exclude"] == ["mp-2260"] and kw["reference_id"] == "mp-2260"
    seeds = [s.hit.material_id for s in Request(mode="seeded", **kw).seeds()]
    assert len(seeds) == cli_generate.SHIPPED.n_seeds and not {"mp-2260", FEPT_COPY} & set(seeds)
    assert kw_of("--ref", "mp-2260", "--site", "0", "--exclude-ref")["seed_exclude"] == ["mp-2260"]
    kept = kw_of("--ref", "mp-2260", "--site", "0", "--include-ref")
    assert not kept.get("seed_exclude") and kept["reference_id"] == "mp-2260"
    assert [s.hit.material_id for s in Request(mode="seeded", **kept).seeds()][0] == "mp-2260"
    # every mode records it, so that later rounds never seed from it (as the app's request does)
    assert kw_of("--mode", "masked", "--ref", "mp-2260", "--site", "0")["seed_exclude"] == ["mp-2260"]
    assert kw_of()["seed_exclude"] == [PRESET_ID]          # the example, as the app's preset
    with pytest.raises(SystemExit):
        p.parse_args(["generate", "--include-ref", "--exclude-ref"])


def test_a_dos_file_names_no_material_to_leave_out(tmp_path):
    curve = open_db(DB_URL).get("mp-2260").site_dos[0]
    f = tmp_path / "fe.csv"
    f.write_text("E,DOS\n" + "\n".join(f"{e},{g}" for e, g in zip(dosmod.GRID, curve)))
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(["generate", "--target-csv", str(f)]), DB_URL)
    assert not kw.get("seed_exclude") and "reference_id" not in kw
    assert "target_element" not in kw          # a curve names no element


def test_the_cli_adjusts_a_target_as_the_app_does(tmp_path):
    """--target-shift/-scale/-smear make the target the app's "Adjust the target" makes
    (dos.adjusted_target): named alike, its window moved with it; a reference's site too."""
    curve = open_db(DB_URL).get("mp-2260").site_dos[0]
    f = tmp_path / "fe.csv"
    f.write_text("E,DOS\n" + "\n".join(f"{e},{g}" for e, g in zip(dosmod.GRID, curve)))
    argv = ["generate", "--mode", "masked", "--target-csv", str(f), "--window", "-8", "0", "--target-shift", "0.5",
            "--target-scale", "1.2", "--target-smear", "0.1"]
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(argv), DB_URL)
    table = dosmod.read_dos_table(f.read_text())
    want, window = dosmod.adjusted_target(dosmod.table_to_grid(*table), 0.5, 1.2, 0.1, (-8.0, 0.0), table)
    assert np.allclose(kw["targets"][0], want) and tuple(kw["window"]) == window == (-7.5, 0.5)
    assert kw["target_source"] == "uploaded DOS (fe.csv), shifted +0.50 eV, ×1.20, smeared 0.10 eV"
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(
        ["generate", "--mode", "masked", "--ref", "mp-2260", "--site", "0", "--target-scale", "2"]), DB_URL)
    assert np.allclose(kw["targets"][0], 2 * np.asarray(curve)) and kw["window"] is None
    assert kw["target_source"].endswith(", shifted +0.00 eV, ×2.00, smeared 0.00 eV")
    # a file reaching below the grid, shifted up: its moved table covers all of it, so no window is left
    # (the file's own window stayed before, where search and the app had none)
    low = tmp_path / "low.csv"
    e = np.linspace(-13.0, 7.0, 401)
    low.write_text("E,DOS\n" + "\n".join(f"{x},{np.exp(-(x + 2) ** 2) + 0.1}" for x in e))
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(
        ["generate", "--mode", "masked", "--target-csv", str(low)]), DB_URL)
    assert tuple(kw["window"]) == (-10.0, 7.0)
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(
        ["generate", "--mode", "masked", "--target-csv", str(low), "--target-shift", "3"]), DB_URL)
    assert kw["window"] is None
    # a scale of 0 is refused, not read as "no scale"
    with pytest.raises(checks.UserError, match="--target-scale 0 is outside 0.2 to 3"):
        cli_generate._targets_and_template(_parser().parse_args(
            ["generate", "--ref", "mp-2260", "--site", "0", "--target-scale", "0"]), DB_URL)
    # a structure file's target is predicted later: a shift that leaves too little of its window is
    # refused now, before any model loads or GPAW runs
    cif = tmp_path / "nacl.cif"
    cif.write_text(to_structure(open_db(DB_URL).get("mp-22862").atoms).to(fmt="cif"))
    with pytest.raises(checks.UserError, match="shifted by \\+1.00 eV, the energies compared"):
        cli_generate._targets_and_template(_parser().parse_args(
            ["generate", "--mode", "masked", "--ref", str(cif), "--site", "0", "--window", "8", "10",
             "--target-shift", "1"]), DB_URL)

def test_the_target_site_s_element_is_recorded_for_the_cards():
    """Walk 17: a card said only in a table header that Zr carried a Ti target; the run now records
    the target site's element, as the app's request does (carrier_text)."""
    kw, _ = cli_generate._targets_and_template(_parser().parse_args(["generate", "--ref", "mp-2260", "--site", "0"]),
                                               DB_URL)
    assert kw["target_element"] == "Fe" and Request(mode="seeded", **kw).target_element == "Fe"


def test_a_run_draws_at_most_the_apps_candidates(tmp_path, capsys, monkeypatch):
    """The app's Candidates box stops at 100; the CLI took 1000. One cap now, said in one line
    before any model loads."""
    import re

    from dosmatgen_core.cli import main
    from dosmatgen_core.model import checkpoint
    from dosmatgen_core.settings import SHIPPED

    def reached(*a, **k):
        raise RuntimeError("reached the model")
    monkeypatch.setattr(checkpoint, "load_model", reached)
    cap = cli_generate.MAX_CANDIDATES
    argv = ["generate", "--mode", "unconditional", "--runs", str(tmp_path / "r.db"), "--no-novelty", "--n"]
    assert main([*argv, str(cap + 1)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: number of candidates is {cap + 1}; a run draws at most {cap} "
                                               f"candidates — give --n {cap} or fewer (or several runs, each with its "
                                               "own --seed)")
    assert main([*argv, "5000"]) == 2 and f"at most {cap} candidates" in capsys.readouterr().err   # not the library's 1000
    assert main([*argv, str(cap)]) == 1 and "reached the model" in capsys.readouterr().err
    assert cap == SHIPPED.max_candidates       # the page's box reads it too (test_app)


def _hint_run(origins: str, **changes) -> dict:
    """A run-like record: one valid new candidate per letter of origins (s: a swap, g: a draw), in
    rank order; changes: rank → fields to set."""
    cands = [{"rank": r, "formula": "Au3Ni", "spacegroup": {"0.1": "Pm-3m"}, "structurally_valid": True,
              "n_atoms": 4, "novel": True, "unique": True, "site_to_target": {},
              "origin": "substitution" if o == "s" else "generator"} for r, o in enumerate(origins, 1)]
    for r, fields in changes.items():
        cands[int(r[1:]) - 1].update(fields)
    return {"id": "r1", "candidates": cands}


def test_the_closing_hint_names_the_checks_that_rounds_runs():
    """A walk: the hint said 'GPAW checks of the top 3' and `dosmatgen rounds RUN --rounds 0` checked
    six (the top 3, then each kind's best, SHIPPED.dft_per_source). It names the ranks that
    command checks now, picked by the app's certify.pick."""
    from dosmatgen_core.settings import SHIPPED
    top = SHIPPED.dft_top
    run = _hint_run("sssgggsg")
    hint = cli_generate.ranked_lines(run, True)[-1]
    ranks = certify.pick(run, top, per_source=SHIPPED.dft_per_source)
    assert ranks == [1, 2, 3, 4, 5, 6] and SHIPPED.dft_per_source and top == 3
    assert hint == (f"(predicted by the site-DOS predictor; GPAW checks of #1, #2, #3, #4, #5, #6 (the top {top} and "
                    f"the best {top} of each kind, the model's draws and the swaps): dosmatgen rounds r1 --rounds 0)")
    # a known structure with a stored label is not checked again: the ranks say so, as the command does
    run = _hint_run("sssgggsg", r2={"novel": False, "matches": "mp-1"})
    hint = cli_generate.ranked_lines(run, True, labelled=frozenset({"mp-1"}))[-1]
    assert "checks of #1, #3, #4, #5, #6, #7 (" in hint
    assert sorted(certify.pick(run, labelled=frozenset({"mp-1"}))) == [1, 3, 4, 5, 6, 7]
    run = _hint_run("gggg")          # one kind: the best 3 alone
    assert "GPAW checks of #1, #2, #3 (the top 3 that qualify): dosmatgen rounds r1" in \
        cli_generate.ranked_lines(run, True)[-1]
    run = _hint_run("gg", r1={"structurally_valid": False}, r2={"structurally_valid": False})
    assert cli_generate.ranked_lines(run, True)[-1] == ("(predicted by the site-DOS predictor; no GPAW check to run: "
                                                       "none of the 2 candidates qualifies (2 with invalid geometry))")


def test_the_command_line_says_a_valid_cell_is_strained_as_the_app_does():
    """A walk: the CLI printed "geometry valid" for Fe–Pt at 1.85 Å, which the app marks orange. A
    closest contact below STRAINED of the covalent radii is named, with its distance."""
    run = _hint_run("gg", r1={"shortest_contact": {"pair": "Pt–Pt", "distance": 1.42, "ratio": 0.52}},
                    r2={"shortest_contact": {"pair": "Au–Ni", "distance": 2.5, "ratio": 0.92}})
    lines = [ln for ln in cli_generate.ranked_lines(run, False) if ln.startswith("#")]
    assert "geometry valid but strained (Pt–Pt at 1.42 Å, 52% of the covalent radii), intermetallic" in lines[0]
    assert "geometry valid, intermetallic" in lines[1]


def test_progress_into_a_log_is_a_line_a_phase_not_every_update():
    """A walk: one `generate` run redirected to a file wrote 25 kB of carriage-return updates. Into a
    file, progress is a line when the phase changes (steps counted within one) or every 10 s."""
    import io
    log = io.StringIO()
    progress = cli_generate.progress_printer(log)
    for i in range(100):
        progress(i / 200, 30.0, f"drawing 8 candidates: step {i + 1}/100")
    progress(0.5, 5.0, "checking which draws are new crystals")
    for k in range(3):
        progress(0.9, 1.0, f"scoring structures {k + 1}-{k + 1} of 3")
    lines = log.getvalue().splitlines()
    assert lines == ["drawing 8 candidates: step 1/100 (0 %, ~30 s left)",
                     "checking which draws are new crystals (50 %, ~5 s left)",
                     "scoring structures 1-1 of 3 (90 %, ~1 s left)"] and "\r" not in log.getvalue()
