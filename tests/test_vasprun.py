"""A VASP run's site DOS as a target: atom order, E − E_F, spins summed, and one clear error per bad file.

The file is a real vasprun.xml (diamond, shipped with ASE's tests) with a per-atom block added in
VASP's own layout (LORBIT = 10: s, p, d columns per ion and spin), so each atom's curve is known.
"""
import re
from pathlib import Path

import ase
import numpy as np
import pytest

from dosmatgen_core import dos as dosmod
from dosmatgen_core.vasprun import is_vasprun, read_vasprun

ASE_VASPRUN = Path(ase.__file__).parent / "test" / "testdata" / "vasp" / "vasprun_pstress.xml"


def _total(text: str) -> np.ndarray:
    block = text[text.index("<total>"):text.index("</total>")]
    return np.array([[float(x) for x in r.split()] for r in re.findall(r"<r>(.*?)</r>", block)])


LORBIT_10 = ("s", "p", "d")
LORBIT_11 = ("s", "py", "pz", "px", "dxy", "dyz", "dz2", "dxz", "x2-y2")


def _partial(energy: np.ndarray, per_ion: list[list[np.ndarray]], fields=LORBIT_10) -> str:
    """VASP's <partial> block: per ion, per spin, rows of energy and one column per orbital field
    (LORBIT = 10: s, p, d; 11: each lm)."""
    ions = []
    for k, spins in enumerate(per_ion):
        sets = []
        for s, cols in enumerate(spins):
            rows = "\n".join("<r> " + " ".join(f"{v:.4f}" for v in (e, *c)) + " </r>" for e, c in zip(energy, cols.T))
            sets.append(f'<set comment="spin {s + 1}">\n{rows}\n</set>')
        ions.append(f'<set comment="ion {k + 1}">\n' + "\n".join(sets) + "\n</set>")
    head = ('<array>\n<dimension dim="1">gridpoints</dimension>\n<dimension dim="2">spin</dimension>\n'
            '<dimension dim="3">ion</dimension>\n<field>energy</field>\n'
            + "".join(f"<field>{f}</field>\n" for f in fields))
    return "<partial>\n" + head + "<set>\n" + "\n".join(ions) + "\n</set>\n</array>\n</partial>\n"


def diamond_files():
    """(vasprun.xml with a per-atom block, the same without it, E − E_F, total, atom 1's ramp)."""
    text = ASE_VASPRUN.read_text()
    tot = _total(text)
    # this run used the tetrahedron method, whose DOS dips a little below zero: clipped, as read_vasprun does
    e, g = tot[:, 0], np.clip(tot[:, 1], 0.0, None)
    ramp = np.linspace(0.0, 1.0, len(e))
    # atom 0: s and p share the total; atom 1: only its p, a ramp (a curve unlike atom 0's)
    ions = [[np.stack([0.3 * g, 0.2 * g, 0 * g])], [np.stack([0 * g, ramp, 0 * g])]]
    data = text.replace("</total>", "</total>\n" + _partial(e, ions)).encode()
    efermi = float(re.search(r'<i name="efermi">\s*([-\d.]+)', text).group(1))
    return data, text.encode(), e - efermi, g, ramp


@pytest.fixture(scope="module")
def diamond():
    return diamond_files()


def test_each_atoms_row_is_its_own_projected_dos_on_the_grid_relative_to_e_f(diamond):
    data, _, e, g, ramp = diamond
    assert is_vasprun(data) and not is_vasprun(b"energy,dos\n-1,0.2\n")
    got = read_vasprun(data)
    assert len(got.structure) == 2 and got.site_dos.shape == (2, dosmod.NPTS)
    assert np.allclose(got.site_dos[0], dosmod.regrid(e, 0.5 * g), atol=1e-3)
    assert np.allclose(got.site_dos[1], dosmod.regrid(e, ramp), atol=1e-3)
    assert got.label(1) == "atom 1 (C)" and e[0] < 0 < e[-1]


def test_spins_and_orbitals_are_summed(diamond):
    data, _, e, g, _ = diamond
    text = data.decode()
    # the same file made spin-polarised: atom 0's up and down halves must add back to one curve
    tot = _total(text)
    half = "\n".join(f"<r> {a:.4f} {b / 2:.4f} {c:.4f} </r>" for a, b, c in tot)
    total2 = (text[text.index("<total>"):text.index("</total>")].replace("</set>\n     </set>", "</set>\n"
              f'<set comment="spin 2">\n{half}\n</set>\n     </set>', 1))
    assert 'comment="spin 2"' in total2
    start = text.index("<partial>")
    # and per lm (LORBIT = 11): atom 0's s and three p columns, each spin a quarter of the total
    lm = np.zeros((9, len(g)))
    lm[0], lm[1:4] = 0.1 * g, 0.05 * g
    ions = [[lm] * 2, [np.full((9, len(g)), 0.01)] * 2]
    spin = text[:text.index("<total>")] + total2 + text[text.index("</total>"):start] + _partial(e, ions, LORBIT_11) \
        + text[text.index("</partial>") + len("</partial>\n"):]
    got = read_vasprun(spin.encode())
    assert np.allclose(got.site_dos[0], dosmod.regrid(e, 0.5 * g), atol=2e-3)
    assert np.allclose(got.site_dos[1][np.abs(dosmod.GRID) < 5], 0.18, atol=1e-3)     # 9 orbitals × 2 spins × 0.01


def test_bad_files_get_one_clear_error(diamond, monkeypatch):
    from dosmatgen_core import vasprun
    data, total_only, _, _, _ = diamond
    monkeypatch.setattr(vasprun, "MAX_VASPRUN_BYTES", len(data) - 1)
    with pytest.raises(ValueError, match="MB is read — upload the vasprun.xml of a smaller run"):
        read_vasprun(data)
    monkeypatch.undo()
    with pytest.raises(ValueError, match="total DOS only.*LORBIT = 11"):
        read_vasprun(total_only)
    with pytest.raises(ValueError, match="could not be read.*whole"):
        read_vasprun(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a vasprun.xml"):
        read_vasprun(b"energy,dos\n-1,0.2\n")
    nan = data.decode().replace("<partial>", "<partial>", 1)
    k = nan.index("<partial>")
    row = nan.index("<r>", nan.index('comment="ion 1"', k))
    end = nan.index("</r>", row)
    cells = nan[row + 3:end].split()
    broken = nan[:row + 3] + " " + " ".join([cells[0], "NaN", *cells[2:]]) + " " + nan[end:]
    with pytest.raises(ValueError, match="atom 0 \\(C\\) has NaN"):
        read_vasprun(broken.encode())


def test_the_cli_searches_and_refuses_by_a_vasprun_atom(diamond, tmp_path, capsys):
    import json
    from dosmatgen_core import cli
    data, total_only, _, _, _ = diamond
    good, bad = tmp_path / "vasprun.xml", tmp_path / "total-only.xml"
    good.write_bytes(data)
    bad.write_bytes(total_only)
    assert cli.main(["search", "--target-vasprun", str(good), "--site", "1", "--top", "2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["target"]["source"] == "VASP site DOS of atom 1 (C) in vasprun.xml" and len(out["hits"]) == 2
    for argv, words in ((["generate", "--target-vasprun", str(good), "--site", "2"], "site 2 does not exist in vasprun.xml"),
                        (["generate", "--target-vasprun", str(bad)], "total-only.xml: the run holds the total DOS only"),
                        (["search", "--target-vasprun", str(good), "--ref", "mp-22862"], "one of them")):
        assert cli.main([*argv, "--runs", str(tmp_path / "r.db")] if argv[0] == "generate" else argv) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0], err
    if (tmp_path / "r.db").exists():          # refused before a run was stored
        from dosmatgen_core.candidates.runs import RunStore
        assert RunStore(tmp_path / "r.db").list() == []


def test_an_uploaded_vasprun_is_a_reference_whose_curves_say_vasp(diamond):
    """The Generate page's structure uploader takes a vasprun.xml too: its atoms in the file's order,
    each with its own VASP curve (not the predictor's), named for where it comes from."""
    from studio import catalogue
    data, total_only, _, _, _ = diamond
    mat = catalogue.from_upload("vasprun.xml", data, predictor=None)     # no predictor needed
    assert mat.source == "vasp" and not mat.labelled and mat.db_id is None
    assert mat.name == "C · vasprun.xml (VASP)" and mat.curve_name(1) == "VASP DOS of C site 1 (C)"
    assert np.array_equal(mat.site_dos, read_vasprun(data).site_dos) and mat.energy[0] < 0 < mat.energy[-1]
    with pytest.raises(ValueError, match="total DOS only"):
        catalogue.from_upload("total.xml", total_only, predictor=None)


def test_a_run_generated_for_a_vasp_atom_carries_its_curve_and_says_its_numbers_are_predicted(diamond, tmp_path,
                                                                                               capsys):
    import json
    from dosmatgen_core import cli
    from dosmatgen_core.candidates.runs import RunStore
    data = diamond[0]
    (tmp_path / "vasprun.xml").write_bytes(data)
    assert cli.main(["generate", "--mode", "masked", "--target-vasprun", str(tmp_path / "vasprun.xml"), "--site", "1",
                     "--n", "1", "--steps", "2", "--particles", "1", "--no-novelty",
                     "--runs", str(tmp_path / "r.db")]) == 0
    said = capsys.readouterr()
    out = said.out
    rid = json.loads(out)["run"]          # stdout is one JSON document; the ranking for people is on stderr
    run = RunStore(tmp_path / "r.db").get(rid)
    assert np.allclose(run["settings"]["targets"][0], read_vasprun(data).site_dos[1])
    assert "VASP site DOS of atom 1 (C) in vasprun.xml" in run["title"]
    # the site's element is the model's draw: named beside its number, as the app names it
    assert re.search(r"site 0 \([A-Z][a-z]?\): predicted DOS MAE ", said.err) and " states/eV" in said.err
    # the way on: its GPAW check's command, or why there is none (two sampling steps draw rough cells)
    if run["candidates"][0].get("structurally_valid"):
        assert f"dosmatgen rounds {rid} --rounds 0" in said.err
    else:
        assert "no GPAW check to run: none of the 1 candidate qualifies (1 with invalid geometry)" in said.err
