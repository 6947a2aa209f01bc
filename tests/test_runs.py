"""Run store round trip, exports that read back, and a DFT verification that fails cleanly."""
import json
import re

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from dosmatgen_core import dos as dosmod
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
    assert csv[0] == "energy_minus_ef_eV,target_site0_states_per_eV,predicted_site0_states_per_eV" and len(csv) == 401
    # with its note (walk 18: whose site is site2?), a comment line the readers skip, a ';' in it included
    run["id"], run["title"] = "abc", "target: DFT label of LiCoO2 site 1 (Co)"
    noted = runs.dos_csv(run["candidates"][0], run["settings"]["targets"], note=runs.dos_csv_note(run, run["candidates"][0]))
    assert noted.splitlines()[0] == ("# run abc · target: DFT label of LiCoO2 site 1 (Co); site<i> in a column's name "
                                     "is atom i of candidate #1 (its CIFs keep this order)")
    assert noted.splitlines()[1:] == csv
    assert dosmod.curve_columns(noted) == ["target_site0_states_per_eV", "predicted_site0_states_per_eV"]
    energy, values = dosmod.read_dos_table(noted, column="predicted_site0")
    assert len(energy) == 400 and np.allclose(values, run["candidates"][0]["predicted_dos"][0], atol=1e-5)
    assert json.loads(runs.run_json(run))["settings"]["seed"] == 1


def test_a_check_on_the_command_line_names_each_site_and_puts_dft_beside_the_prediction():
    """A walk: `verify` printed dos_match {"0": {"mae": …}}: no element, no unit, no word of DFT, and
    not the predicted MAE that ranked the candidate. The site's element is read in the candidate's
    own order: Cl first here, where pymatgen's CIF reader, regrouping by element, puts Na first."""
    from dosmatgen_core.cli.generate import verified_lines
    s = Structure(Lattice.cubic(5.64), ["Cl", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    c = dict(fake_run(runs.to_cif(s))["candidates"][0], site_to_target={"1": 0}, dos_match={"1": {"mae": 0.118}})
    assert verified_lines(c, {"1": {"mae": 0.1837, "cosine": 0.912}}) == [
        "site 1 (Na): DFT MAE 0.184 states/eV, cosine 0.912; predicted MAE 0.118"]


@pytest.mark.dft
def test_unconverged_verification_is_reported_and_run_is_kept(tmp_path):
    s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    before = store.get(rid)
    res = Verifier(store, label_dir=tmp_path / "labels").run(rid, 1, recipe=Recipe(maxiter=2), timeout=300)
    assert res["status"] == "failed"
    assert "converge" in res["error"].lower()
    assert store.get(rid) == before       # nothing else in the run changed


@pytest.mark.dft
def test_verification_stores_the_dft_site_dos(tmp_path):
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    res = Verifier(store, label_dir=tmp_path / "labels").run(rid, 1, timeout=600)
    assert res["status"] == "done", res.get("error")
    dft = np.array(res["result"]["site_dos"])
    assert dft.shape == (1, 400)
    from dosmatgen_core import dos
    assert dos.integrate(dft[0], upto=0.0) == pytest.approx(11.0, abs=0.05)   # Cu: 3d10 4s1
    assert set(res["result"]["dos_match"]["0"]) >= {"mae", "cosine", "wasserstein"}
    # the calculation is a label now, and the same structure in another run is not calculated again
    from dosmatgen_core.labels.labeller import iter_label_lines
    pending = [__import__("json").loads(x) for x in (tmp_path / "labels" / "generated.pending.jsonl").read_text().splitlines()]
    assert len(pending) == 1 and pending[0]["source"]["verify"]["run"] == rid and pending[0]["site_dos"]
    assert not list(iter_label_lines([tmp_path / "labels"]))     # pending until sealed, like the labeller's
    rid2 = store.save(fake_run(runs.to_cif(s)))
    import dosmatgen_core.scoring.verify as verify_mod
    calls = []
    real = verify_mod.label_isolated
    verify_mod.label_isolated = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        again = Verifier(store, label_dir=tmp_path / "labels").run(rid2, 1, timeout=600)
    finally:
        verify_mod.label_isolated = real
    assert again["status"] == "done" and calls == []
    assert np.allclose(again["result"]["site_dos"], dft)


@pytest.mark.dft
def test_verification_after_relaxation(tmp_path):
    s = Structure.from_spacegroup("Fm-3m", Lattice.cubic(3.85), ["Cu"], [[0, 0, 0]]).get_primitive_structure()
    store = runs.RunStore(tmp_path / "r.db")
    rid = store.save(fake_run(runs.to_cif(s)))
    res = Verifier(store, label_dir=tmp_path / "labels").run(rid, 1, timeout=600, relaxed=True)
    assert res["status"] == "done", res.get("error")
    assert res["result"]["relaxed"] is True
    calc = Structure.from_str(res["result"]["cif"], fmt="cif")
    assert calc.volume < s.volume          # CHGNet shrank the 7 %-too-large cell before DFT


# ---- runs that are never lost -----------------------------------------------------------------

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH

SMALL = dict(mode="masked", n_atoms=4, cond_sites=[0], n_candidates=2, steps=5, particles=1)


@pytest.fixture(scope="module")
def models():
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.scoring.predictor import load_predictor
    return load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH)


def ni_target():
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.settings import PRESET_ID
    ref = open_db(DB_URL).get(PRESET_ID)
    return ref.site_dos[ref.symbols.index("Ni")].tolist()


def test_two_generations_and_a_writer_at_once_are_complete_and_consistent(tmp_path, models):
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    store = runs.RunStore(tmp_path / "r.db")
    loaded, predictor = models
    target, out, errors, stop = ni_target(), {}, [], threading.Event()

    def generate(seed):
        try:
            req = Request(targets=[target], seed=seed, title=f"seed {seed}", **SMALL)
            out[seed] = run_generation(req, loaded, predictor, store=runs.RunStore(tmp_path / "r.db"),
                                       check_novelty=False)["id"]
        except Exception as exc:   # reported below
            errors.append(exc)

    def writer():
        s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
        other = runs.RunStore(tmp_path / "r.db")
        while not stop.is_set():
            other.delete(other.save(fake_run(runs.to_cif(s))))

    threads = [threading.Thread(target=generate, args=(k,)) for k in (1, 2)]
    w = threading.Thread(target=writer)
    w.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    w.join()
    assert not errors, errors
    for seed, rid in out.items():
        run = store.get(rid)
        assert run["status"] == "done" and run["title"] == f"seed {seed}" and run["settings"]["seed"] == seed
        assert [c["rank"] for c in run["candidates"]] == [1, 2] and len(run["baseline"]) == 2
        assert run["summary"]["n"] == 2
    assert {r["id"]: r["candidates"] for r in store.list()} == {out[1]: 2, out[2]: 2}


KILLED = textwrap.dedent("""
    import sys
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.candidates.runs import RunStore
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.paths import MODEL_PATH
    req = Request(mode="masked", n_atoms=4, targets=[[0.1] * 400], cond_sites=[0], n_candidates=2, steps=1000,
                  particles=1, seed=7, title="to be killed")
    run_generation(req, load_model(MODEL_PATH), None, store=RunStore(sys.argv[1]), check_novelty=False)
""")


def test_a_killed_generation_shows_as_interrupted_with_its_settings(tmp_path):
    path = tmp_path / "r.db"
    runs.RunStore(path)
    proc = subprocess.Popen([sys.executable, "-c", KILLED, str(path)])
    store = runs.RunStore(path)
    t0 = time.time()
    while not store.list() and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.1)
    assert store.list() and store.list()[0]["status"] == "running"    # stored when it started
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    row = store.list()[0]
    assert row["status"] == "interrupted" and row["title"] == "to be killed"
    run = store.get(row["id"])
    assert run["status"] == "interrupted"
    assert run["settings"]["seed"] == 7 and run["settings"]["steps"] == 1000 and run["settings"]["n_candidates"] == 2
    from dosmatgen_core import cli
    assert cli.main(["runs", "--runs", str(path)]) == 0


def test_a_store_that_cannot_be_written_keeps_the_run_in_a_json_file(tmp_path, models, monkeypatch):
    """A store another process holds locked (sqlite 'database is locked') mid-run: the run goes
    to a JSON file beside it, and the run says where."""
    import sqlite3
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    monkeypatch.setattr(runs, "BUSY_MS", 200)
    store = runs.RunStore(tmp_path / "r.db")
    lock = sqlite3.connect(tmp_path / "r.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        loaded, predictor = models
        run = run_generation(Request(targets=[ni_target()], **SMALL), loaded, predictor, store=store, check_novelty=False)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert "database is locked" in run["store_error"]
    saved = json.loads(open(run["saved_to"]).read())
    assert run["saved_to"].startswith(str(tmp_path)) and saved["status"] == "done"
    assert [c["rank"] for c in saved["candidates"]] == [1, 2] and len(saved["baseline"]) == 2
    assert store.list() == []


def test_a_cancelled_generation_ends_cancelled(tmp_path, models):
    from dosmatgen_core.candidates.pipeline import Request, run_generation
    from dosmatgen_core.sampling.sampler import Cancelled
    store = runs.RunStore(tmp_path / "r.db")
    with pytest.raises(Cancelled):
        run_generation(Request(targets=[ni_target()], title="c", **SMALL), *models, store=store,
                       cancel=lambda: True, check_novelty=False)
    (row,) = store.list()
    assert row["status"] == "cancelled" and row["title"] == "c" and row["candidates"] == 0


def test_the_cli_lists_each_runs_gpaw_checks_beside_it(tmp_path, capsys):
    """`dosmatgen runs`: a run's finished checks and the best new structure's DFT MAE and cosine; a
    dash for a run without; a known candidate's check is not the run's best new."""
    from dosmatgen_core import cli
    from dosmatgen_core.candidates.runs import dumps
    s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    store = runs.RunStore(tmp_path / "r.db")
    checked = fake_run(runs.to_cif(s))
    checked["candidates"].append({**checked["candidates"][0], "index": 1, "rank": 2, "novel": False})
    a, b = store.save(checked), store.save(fake_run(runs.to_cif(s)))
    v = Verifier(store, label_dir=None)
    for rank, mae in ((1, 0.25), (2, 0.05)):
        v._set(a, rank, status="done", result=dumps({"site_dos": np.zeros((1, 400)),
                                                      "dos_match": {"0": {"mae": mae, "cosine": 0.9 - mae}}}))
    assert cli.main(["runs", "--runs", str(tmp_path / "r.db"), "--json"]) == 0
    got = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert got[a]["dft_checks"] == 2 and got[a]["dft_best_new_mae"] == 0.25 and got[a]["dft_best_new_cosine"] == 0.65
    assert got[b]["dft_checks"] == 0 and got[b]["dft_best_new_mae"] is None
    assert cli.main(["runs", "--runs", str(tmp_path / "r.db")]) == 0
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.split() and ln.split()[0] in (a, b)}
    assert " 2    0.250    0.650  t" in lines[a] and " 0        —        —  t" in lines[b]
    # under each run, how it was made (a walk: runs of one target read alike, and no mode was said)
    assert cli.main(["runs", "--runs", str(tmp_path / "r.db")]) == 0
    printed = capsys.readouterr().out.splitlines()
    made = printed[printed.index(next(ln for ln in printed if ln.startswith(a))) + 1]
    from dosmatgen_core.candidates.words import settings_words
    assert made.strip() == settings_words(store.get(a)["settings"]) and made.strip()


def test_summaries_read_only_checked_runs_and_through_the_callers_reader(tmp_path):
    """Verifier.summaries reads a run in full only when it has a finished check, and through the
    reader it is given (the Runs page's memoised one, so a run shown below is not read again)."""
    s = Structure(Lattice.cubic(3.61), ["Cu"], [[0, 0, 0]])
    store = runs.RunStore(tmp_path / "r.db")
    a, b = store.save(fake_run(runs.to_cif(s))), store.save(fake_run(runs.to_cif(s)))
    v = Verifier(store, label_dir=None)
    v._set(a, 1, status="done", result=runs.dumps({"site_dos": np.zeros((1, 400)),
                                               "dos_match": {"0": {"mae": 0.3, "cosine": 0.8}}}))
    read = []
    got = v.summaries([a, b], get=lambda rid: read.append(rid) or store.get(rid))
    assert read == [a]
    assert got[a] == {"checks": 1, "best_new_mae": 0.3, "best_new_cosine": 0.8}
    assert got[b] == {"checks": 0, "best_new_mae": None, "best_new_cosine": None}


def test_a_downloaded_cif_says_its_atom_order_and_still_reads_in_it():
    """The walk: card #2's P1 file listed Ga0 Be1 P2 Zn3, pymatgen read it as Be, Zn, Ga, P, and
    'site 2' became Ga. The file now says whose order it keeps; ASE reads it in that order."""
    import io
    from ase.io import read
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.candidates.runs import ORDER_NOTE, SYMMETRISED_NOTE, cif_file, to_cif
    s = Structure(Lattice.cubic(5.4), ["Ga", "Be", "P", "Zn"], [[0, 0, 0], [0.5, 0.5, 0], [0.25, 0.25, 0.25], [0.5, 0, 0.5]])
    text = cif_file(to_cif(s))
    assert text.startswith(ORDER_NOTE)
    assert read(io.StringIO(text), format="cif").get_chemical_symbols() == ["Ga", "Be", "P", "Zn"]
    assert Structure.from_str(text, fmt="cif").composition == s.composition      # still a valid CIF
    # pymatgen regroups the atoms but keeps their labels: each names its site (walk 13's pymatgen
    # user took S for the conditioned O), also where the cell came with labels of its own
    labelled = s.copy()
    for site, name in zip(labelled, ["Ga1", "Be1", "P1", "Zn1"]):
        site.label = name
    for got in (text, cif_file(labelled), cif_file(to_cif(labelled))):
        back = Structure.from_str(got, fmt="cif")
        assert {x.label: x.specie.symbol for x in back} == {"Ga0": "Ga", "Be1": "Be", "P2": "P", "Zn3": "Zn"}
    sym = cif_file(s, symmetrised=True)
    assert sym.startswith(SYMMETRISED_NOTE) and Structure.from_str(sym, fmt="cif").composition == s.composition


def test_a_symmetrised_cif_labels_each_atom_with_the_site_at_its_position():
    """Walk 14: the symmetrised CIF of rock salt written Cl first listed Na0 and Cl1 (CifWriter's
    own numbering), while the app's site 0 is Cl. Each label now names a site of its element, one
    site for each set of symmetry-equivalent sites (spglib's, on the app's cell); also for SrTiO3
    with its O first, and for cells moved off spglib's origin and out of its atom order."""
    from pymatgen.core import Lattice, Structure
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    from dosmatgen_core.candidates.runs import SYMMETRISED_NOTE, cif_file
    nacl = Structure(Lattice([[0, 2.82, 2.82], [2.82, 0, 2.82], [2.82, 2.82, 0]]), ["Cl", "Na"],
                     [[0.5, 0.5, 0.5], [0, 0, 0]])
    sto = Structure(Lattice.cubic(3.9), ["O", "Ti", "Sr", "O", "O"],
                    [[0.5, 0.5, 0], [0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    wurtzite = Structure(Lattice.hexagonal(3.25, 5.21), ["O", "Zn", "O", "Zn"],
                         [[1 / 3, 2 / 3, 0.382], [1 / 3, 2 / 3, 0.0], [2 / 3, 1 / 3, 0.882], [2 / 3, 1 / 3, 0.5]])
    moved = sto.copy()
    moved.translate_sites(range(len(moved)), [0.13, 0.27, 0.41])
    for s in (nacl, sto, wurtzite, moved):
        text = cif_file(s, symmetrised=True)
        assert text.startswith(SYMMETRISED_NOTE)
        back = Structure.from_str(text, fmt="cif")
        assert back.composition.reduced_formula == s.composition.reduced_formula
        orbit = SpacegroupAnalyzer(s, 0.1).get_symmetry_dataset().equivalent_atoms
        sites = []
        for label in {x.label for x in back}:          # element and site: the site is that element
            element, site = re.fullmatch(r"([A-Z][a-z]?)(\d+)", label).groups()
            assert s[int(site)].specie.symbol == element, (s.formula, label)
            sites.append(int(site))
        assert sorted(orbit[sites]) == sorted(set(orbit)), (s.formula, sites)     # one label per orbit
    assert {x.label for x in Structure.from_str(cif_file(nacl, symmetrised=True), fmt="cif")} == {"Cl0", "Na1"}
    assert {x.label for x in Structure.from_str(cif_file(sto, symmetrised=True), fmt="cif")} == {"Sr2", "Ti1", "O4"}
