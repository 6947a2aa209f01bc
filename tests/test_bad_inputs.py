"""Every bad input to the CLI ends in one line on stderr (`error: ...`), exit status 2, no
traceback, no stored run, and before any model loads or sampling starts.

The corpus in tests/bad_inputs/ holds small broken files (structures and DOS tables)."""
from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from dosmatgen_core import cli
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.model import checkpoint
from dosmatgen_core.sampling import sampler
from dosmatgen_core.scoring import predictor

CORPUS = Path(__file__).parent / "bad_inputs"
STRUCTURES = sorted(p.name for p in CORPUS.iterdir() if p.suffix in (".cif", ".vasp"))
DOS_TABLES = sorted(p.name for p in CORPUS.glob("dos_*.csv"))


@pytest.fixture()
def guarded(monkeypatch):
    """Record any model load or sampling: a bad input must be refused before either."""
    work = []

    def refuse(name):
        def f(*a, **k):
            work.append(name)
            raise RuntimeError(f"{name} was reached")
        return f
    monkeypatch.setattr(checkpoint, "load_model", refuse("load_model"))
    monkeypatch.setattr(predictor, "load_predictor", refuse("load_predictor"))
    monkeypatch.setattr(sampler, "_sample", refuse("sampling"))
    return work


def refused(argv, capsys, work, store: Path | None):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2, (argv, rc, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), (argv, err)
    assert "Traceback" not in err
    assert not work, f"{argv}: {work} started before the input was refused"
    if store is not None and store.exists():
        assert RunStore(store).list() == []
    return lines[0]


def test_corpus_is_there():
    assert len(STRUCTURES) >= 8 and len(DOS_TABLES) >= 8


@pytest.mark.parametrize("name", STRUCTURES)
@pytest.mark.parametrize("how", [["generate", "--ref"], ["generate", "--mode", "template", "--template"]])
def test_bad_structure_files_are_refused_by_generate(name, how, tmp_path, capsys, guarded):
    store = tmp_path / "runs.db"
    line = refused([*how, str(CORPUS / name), "--runs", str(store), "--no-novelty"], capsys, guarded, store)
    assert name in line


@pytest.mark.parametrize("name", STRUCTURES)
def test_bad_structure_files_are_refused_by_label(name, tmp_path, capsys, guarded):
    line = refused(["label", "--cif", str(CORPUS / name), "--out", str(tmp_path / "labels")], capsys, guarded, None)
    assert name in line
    assert not list((tmp_path / "labels").glob("*")) if (tmp_path / "labels").exists() else True


@pytest.mark.parametrize("name", DOS_TABLES)
def test_bad_dos_tables_are_refused(name, tmp_path, capsys, guarded):
    store = tmp_path / "runs.db"
    refused(["generate", "--target-csv", str(CORPUS / name), "--runs", str(store), "--no-novelty"],
            capsys, guarded, store)


@pytest.mark.parametrize("name, words", [
    ("overlap_same_spot.cif", "apart"), ("overlap_close.cif", "0.20 Å apart"), ("overlap.vasp", "apart"),
    ("partial_occupancy.cif", "partial occupancy"), ("unknown_element.cif", "unknown element 'Qq' "),
    # walk 14: pymatgen read Sx as S (and the file's atom order was lost); a misspelled cell tag
    # was called a flat cell
    ("misspelled_element.cif", "unknown element 'Sx' in _atom_site_type_symbol"),
    ("misspelled_tag.cif", "it lacks _cell_length_b \\(misspelled\\? it has _cell_lenght_b for _cell_length_b\\)"),
    ("truncated.cif", "could not read the CIF file: it lacks _atom_site_fract_y, _atom_site_fract_z"),
    ("binary.cif", "binary"), ("empty.cif", "empty"), ("flat_cell.cif", "degenerate|zero volume"),
    ("dos_nan.csv", "line 3: NaN"), ("dos_inf.csv", "line 3: an infinite"), ("dos_negative.csv", "line 3: negative"),
    ("dos_unsorted.csv", "not sorted: line 4"), ("dos_duplicate.csv", "duplicate energy -1 eV on lines 3 and 4"),
    ("dos_two_points.csv", "only 2 points"), ("dos_text.csv", "no numeric rows"), ("dos_binary.csv", "binary"),
    ("truncated.vasp", r"declares 4 atoms \(3 \+ 1\) but gives 3 positions \(is it cut short\?\)"),
    ("dos_hartree.csv", r"span only 0.6 eV .* in eV \(Hartree × 27.211"),
    # three columns not named as spins (here E, DOS, integrated DOS): neither is guessed
    ("dos_three_columns.csv", r"line 2 has 3 numeric columns \(E, DOS, IDOS\); .* add the up and down columns into one"),
    ("dos_spin_mixed_signs.csv", r"line 3: the down column has values of both signs \(-0.3\)"),
    ("dos_zero.csv", "no states between -10 and 10 eV: the DOS is zero everywhere"),
    # the app's own DOS CSV: its columns are named, and which to keep is said (not the spin advice)
    ("dos_app_export.csv", r"4 numeric columns \(energy_minus_ef_eV, target_site0, predicted_site0, predicted_sd_site0\).*"
                           "keep the energy column and the one curve you want"),
    ("dos_absolute_energy.csv", "run from 3 to 7 eV and do not reach E_F = 0"),
    # a structure given as the DOS file (a walk's CIF read as "no numeric rows"): named, and where it goes
    ("dos_cif.csv", r"this is a crystal structure \(CIF\), not a DOS table .* --ref FILE"),
    ("dos_poscar.csv", r"this is a crystal structure \(POSCAR\), not a DOS table"),
])
def test_messages_say_what_is_wrong(name, words, tmp_path, capsys, guarded):
    flag = "--target-csv" if name.endswith(".csv") else "--ref"
    line = refused(["generate", flag, str(CORPUS / name), "--runs", str(tmp_path / "r.db"), "--no-novelty"],
                   capsys, guarded, tmp_path / "r.db")
    import re
    assert re.search(words, line), line
    assert " — " in line            # and what to do about it


@pytest.mark.parametrize("args, words", [
    (["--ref", "L12-Au3Ni"], "did you mean L12-Au3Ni-chgnet"),
    (["--mode", "template", "--template", "mp-52"], "did you mean .*mp-522"),
    (["--steps", "0"], "steps is 0"),
    (["--steps", "-5"], "steps is -5"),
    (["--steps", "5000"], "between 1 and 1000"),
    (["--w", "-5"], "guidance weight"),
    (["--w", "nan"], "not a finite number"),
    (["--w", "inf"], "not a finite number"),
    (["--w", "abc"], "invalid float"),
    (["--device", "tpu"], "device 'tpu'"),
    (["--particles", "0"], "particles"),
    (["--n", "0"], "candidates"),
    (["--n-atoms", "0"], "number of atoms"),
    (["--site", "9"], "site 9 does not exist"),
    (["--mode", "template", "--strength", "0"], "strength"),
    (["--mode", "masked", "--cond", "7"], "outside"),
    (["--cond", "1"], "in seeded mode"),          # seeded (the default): the seed's site is conditioned
    (["--ref", "no/such/file.cif"], "not found"),
    (["--target-csv", "no-such.csv"], "not found"),
    (["--gpaw-target"], "calculates the structure file given as --ref"),
    (["--gpaw-target", "--target-csv", "a.csv"], "--gpaw-target and --target-csv both set the target — keep one"),
    (["--gpaw-target", "--mode", "unconditional"], "--mode unconditional has none"),
    (["--target-fermi", "5"], "--target-fermi is the Fermi energy of a --target-csv file's energies — give it with"),
    (["--target-scale", "5"], "--target-scale 5 is outside 0.2 to 3 — give --target-scale within it"),
    (["--target-smear", "nan"], "--target-smear is nan, not a finite number"),
    (["--target-shift", "1", "--mode", "unconditional"], "adjust a target, and --mode unconditional has none"),
    (["--ref", "L12-Au3Ni-chgnet", "--gpaw-target"], "has DFT labels already"),
])
def test_the_issue_list(args, words, tmp_path, capsys, guarded):
    import re
    store = tmp_path / "runs.db"
    line = refused(["generate", *args, "--runs", str(store), "--no-novelty"], capsys, guarded, store)
    assert re.search(words, line), line


def test_cuda_without_cuda(tmp_path, capsys, guarded):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = refused(["generate", "--device", "cuda", "--runs", str(tmp_path / "r.db")], capsys, guarded, tmp_path / "r.db")
    assert "no working CUDA" in line


def test_run_store_that_is_a_directory_or_read_only(tmp_path, capsys, guarded):
    assert "is a directory" in refused(["generate", "--runs", "/"], capsys, guarded, None)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        assert "cannot write" in refused(["generate", "--runs", str(ro / "r.db")], capsys, guarded, None)
    finally:
        ro.chmod(0o700)


def test_corrupt_run_store_and_unknown_runs(tmp_path, capsys, guarded):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not a database" * 100)
    assert "run store" in refused(["runs", "--runs", str(bad)], capsys, guarded, None)
    store = RunStore(tmp_path / "r.db")
    rid = store.save({"title": "t", "settings": {"targets": []}, "summary": {}, "candidates": [
        {"index": 0, "rank": 1, "cif": "", "formula": "Cu", "n_atoms": 1, "site_to_target": {}}], "baseline": []})
    line = refused(["verify", rid[:-1] + "x", "1", "--runs", str(tmp_path / "r.db")], capsys, guarded, None)
    assert f"did you mean {rid}" in line
    assert "rank from 1 to 1" in refused(["verify", rid, "7", "--runs", str(tmp_path / "r.db")], capsys, guarded, None)
    assert "no run store" in refused(["evaluate", "abc", "--runs", str(tmp_path / "none.db")], capsys, guarded, None)


def test_corrupt_reference_db(tmp_path, capsys, guarded, monkeypatch):
    bad = tmp_path / "ref.db"
    bad.write_bytes(b"junk" * 1000)
    from dosmatgen_core import paths
    monkeypatch.setattr(paths, "DB_URL", str(bad))
    line = refused(["generate", "--runs", str(tmp_path / "r.db"), "--no-novelty"], capsys, guarded, tmp_path / "r.db")
    assert "reference database" in line and "build-db" in line


def test_debug_shows_the_traceback(tmp_path, guarded):
    with pytest.raises(ValueError, match="steps is 0"):
        cli.main(["--debug", "generate", "--steps", "0", "--runs", str(tmp_path / "r.db")])


def test_big_uploads_are_refused_before_they_are_read(tmp_path):
    from dosmatgen_core.dos import read_dos_csv

    class Unread(bytes):      # a file too big to read must not even be decoded
        def decode(self, *a, **k):
            raise AssertionError("decoded a file it should have refused by its size")
    with pytest.raises(ValueError, match="at most 5 MB"):
        read_dos_csv(Unread(b"0.1,0.2\n" * 5_000_000))
    rows = "".join(f"{i * 1e-4:.4f},1\n" for i in range(150_000)).encode()
    with pytest.raises(ValueError, match="has 150000 lines; at most 100000 rows"):
        read_dos_csv(rows)


def test_semicolon_tables_read_right():
    import numpy as np
    from dosmatgen_core.dos import read_dos_csv
    e = np.linspace(-8, 8, 161)
    g = np.exp(-e ** 2)
    plain = read_dos_csv("E;DOS\n" + "\n".join(f"{a:.4f};{b:.5f}" for a, b in zip(e, g)))
    comma = read_dos_csv("E;DOS\n" + "\n".join(f"{a:.4f};{b:.5f}".replace(".", ",") for a, b in zip(e, g)))
    assert plain.max() == pytest.approx(1.0, abs=0.01)
    assert np.allclose(plain, comma)


def test_the_same_checks_guard_the_library_request():
    from dosmatgen_core.candidates.pipeline import Request
    from dosmatgen_core.checks import UserError
    for kw, words in [({"steps": 0}, "steps is 0"), ({"guidance": float("nan")}, "finite"),
                      ({"guidance": -5}, "guidance weight"), ({"particles": 99}, "particles")]:
        with pytest.raises(UserError, match=words):
            Request(mode="masked", targets=[[0.0] * 400], cond_sites=[0], **kw).specs()


def test_sqlite_store_read_only_file_is_refused(tmp_path, capsys, guarded):
    import os
    p = tmp_path / "r.db"
    RunStore(p)
    p.chmod(0o400)
    try:
        if os.access(p, os.W_OK):
            pytest.skip("running as root")
        assert "read-only" in refused(["generate", "--runs", str(p)], capsys, guarded, None)
    finally:
        p.chmod(0o600)
    with sqlite3.connect(p) as con:
        assert con.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_generate_asks_for_what_a_dos_file_cannot_name(tmp_path, capsys, guarded):
    """The walk: template mode on a DOS file reworked the example's Au3Ni without a word, fixed-type
    mode fixed Ni on an In target, and --ref without --site took site 0 unsaid."""
    import argparse
    import numpy as np
    from dosmatgen_core import dos
    from dosmatgen_core.cli import generate as cli_generate
    from dosmatgen_core.labels.reference_db import open_db
    from dosmatgen_core.paths import DB_URL
    store = tmp_path / "runs.db"
    au_site = open_db(DB_URL).get("L12-Au3Ni-chgnet").site_dos[1]       # an Au site's DFT curve
    csv = tmp_path / "au.csv"
    csv.write_text("E,DOS\n" + "\n".join(f"{e},{g}" for e, g in zip(dos.GRID, au_site)))
    line = refused(["generate", "--mode", "template", "--target-csv", str(csv), "--runs", str(store), "--no-novelty"],
                   capsys, guarded, store)
    assert line == "error: template mode needs the structure to rework; a DOS file names none — give --template ID|FILE"
    line = refused(["generate", "--ref", "L12-Au3Ni-chgnet", "--runs", str(store), "--no-novelty"], capsys, guarded, store)
    assert line.startswith("error: --ref needs --site, the atom whose DOS is the target — give --site 0..3")
    p = argparse.ArgumentParser()
    cli_generate.add_parsers(p.add_subparsers())
    kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", "--mode", "fixed_type", "--target-csv", str(csv)]),
                                               DB_URL)
    assert kw["fixed"] == {0: "Au"} and kw["title"] == "target: uploaded DOS (au.csv)" and kw["window"] is None
    assert "--element not given: the conditioned atoms are Au, the element of the closest known site" in capsys.readouterr().err
    # a file of the occupied states only: compared on its window, which the request carries
    occupied = tmp_path / "occupied.csv"
    below = dos.GRID <= 0.5          # through E_F, as photoemission ends
    occupied.write_text("E,DOS\n" + "\n".join(f"{e},{g}" for e, g in zip(dos.GRID[below], au_site[below])))
    kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", "--target-csv", str(occupied)]), DB_URL)
    assert kw["window"] == pytest.approx((-10.0, dos.GRID[below][-1]), abs=1e-3)
    assert "curves are compared from -10 to " in capsys.readouterr().err
    from dosmatgen_core.checks import UserError as UserErr
    kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", "--target-csv", str(occupied), "--window",
                                                             "-6", "0"]), DB_URL)
    assert kw["window"] == (-6.0, 0.0)
    with pytest.raises(UserErr, match=r"--window -6 4 reaches beyond the file's data \(-10 to 0.4762 eV\)"):
        cli_generate._targets_and_template(p.parse_args(["generate", "--target-csv", str(occupied), "--window",
                                                         "-6", "4"]), DB_URL)
    kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", "--mode", "fixed_type", "--ref",
                                                             "L12-Au3Ni-chgnet", "--site", "0"]), DB_URL)
    assert kw["fixed"] == {0: "Ni"} and "the target atom's element" in capsys.readouterr().err
    assert np.allclose(kw["targets"][0], open_db(DB_URL).get("L12-Au3Ni-chgnet").site_dos[0])
    # a structure file's site: titled as the app titles it (formula, not the file name)
    from tests.test_app import NACL_CL_FIRST
    (tmp_path / "rocksalt.cif").write_text(NACL_CL_FIRST)
    kw, predict_from = cli_generate._targets_and_template(p.parse_args(
        ["generate", "--mode", "masked", "--ref", str(tmp_path / "rocksalt.cif"), "--site", "0"]), DB_URL)
    assert kw["title"] == "target: predicted DOS of NaCl site 0 (Cl)" and predict_from[1] == 0


@pytest.mark.dft
def test_a_structure_files_gpaw_target_is_its_own_dft_row_in_file_order(tmp_path):
    """--gpaw-target: the file's cell through GPAW as the app's button does, its site 0 (Cl, written
    first) the target: chlorine's filled 3p band, about 5 electrons below E_F; kept as a label."""
    import argparse
    import numpy as np
    from dosmatgen_core import dos
    from dosmatgen_core.cli import generate as cli_generate
    from dosmatgen_core.paths import DB_URL
    from tests.test_app import ROCKSALT_CL_FIRST
    (tmp_path / "rocksalt.cif").write_text(ROCKSALT_CL_FIRST)
    store = RunStore(tmp_path / "runs.db")
    p = argparse.ArgumentParser()
    cli_generate.add_parsers(p.add_subparsers())
    args = p.parse_args(["generate", "--mode", "masked", "--ref", str(tmp_path / "rocksalt.cif"),
                                      "--site", "0", "--gpaw-target"])
    kw, (s, site, how, name) = cli_generate._targets_and_template(args, DB_URL)
    assert kw["title"] == "target: DFT of NaCl site 0 (Cl)" and (site, how) == (0, "gpaw")
    assert not (tmp_path / "labels").exists()          # nothing calculated before the request is checked
    rows = cli_generate.gpaw_rows(s, name, store, label_dir=tmp_path / "labels")
    electrons = [dos.integrate(np.asarray(r), upto=0.0) for r in rows]
    assert electrons[0] > 4.0 > 2.0 > electrons[1], electrons
    assert (tmp_path / "labels" / "generated.pending.jsonl").read_text().count("upload:rocksalt.cif#") == 1


def test_a_reader_that_stops_reading_ends_the_command_quietly():
    """A walk: `dosmatgen materials Ni | head` ended in 'error: Broken pipe — check the path, its
    permissions and the free disk space'. The reader stopping is no error of the command's."""
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-m", "dosmatgen_core.cli", "materials", "--limit", "6000"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.read(100)
    p.stdout.close()                     # as head does once it has its lines
    err = p.stderr.read().decode()
    assert p.wait(120) == 1 and err == "", err


@pytest.mark.parametrize("symbol", ["Fe3+", "Fe+3", "O-2", "Fe2.5+", "D"])
def test_a_cif_whose_type_symbols_pymatgen_reads_is_not_refused(symbol):
    """The unknown-symbol check refuses typos ('Sx'), not the forms CIFs use for a known element:
    a charge either side, deuterium."""
    from dosmatgen_core.checks import read_structure_bytes
    text = (CORPUS / "misspelled_element.cif").read_text().replace("Sr1 Sx", f"Sr1 {symbol}").replace("Sx1 Sx", f"Sr1 {symbol}")
    s = read_structure_bytes(text.encode(), "ok.cif")
    assert len(s) == 5 and [x.specie.symbol for x in s][1] == "Ti"       # the file's order kept


@pytest.mark.parametrize("symbol", ["fe", "FE", "?", "."])
def test_a_symbol_the_two_readers_read_apart_is_refused(symbol):
    """'FE' is F to ASE and Fe to pymatgen, 'fe' and '?' break ASE's reader, and pymatgen drops a '?'
    atom: each lost the file's atom order (or an atom) without a word."""
    from dosmatgen_core.checks import UserError, read_structure_bytes
    text = (CORPUS / "misspelled_element.cif").read_text().replace("Sx1 Sx", f"Sr1 {symbol}")
    with pytest.raises(UserError, match=f"unknown element '{re.escape(symbol)}'"):
        read_structure_bytes(text.encode(), "bad.cif")
