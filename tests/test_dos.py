import numpy as np
import pytest

from dosmatgen_core import dos
from dosmatgen_core.names import adjusted_name


def gauss(mu, sigma=0.5):
    return np.exp(-0.5 * ((dos.GRID - mu) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def test_grid_is_the_model_grid():
    assert dos.GRID.shape == (400,)
    assert dos.GRID[0] == -10.0 and dos.GRID[-1] == 10.0


def test_identical_curves_match_perfectly():
    g = gauss(-1.0) + 0.3 * gauss(2.0, 1.0)
    m = dos.match_metrics(g, g)
    assert m["mae"] == 0.0 and m["mae_ef2"] == 0.0
    assert m["cosine"] == pytest.approx(1.0)
    assert m["wasserstein"] == pytest.approx(0.0, abs=1e-12)
    assert m["centre_shift"] == pytest.approx(0.0, abs=1e-12)


def test_shifted_gaussian_has_expected_wasserstein_and_centre_shift():
    a, b = gauss(-2.0), gauss(-0.5)
    # W1 between two equal-shape distributions is the shift itself.
    assert dos.wasserstein(a, b) == pytest.approx(1.5, abs=0.02)
    assert dos.band_centre_shift(a, b) == pytest.approx(1.5, abs=1e-3)
    assert dos.cosine(a, b) < 0.2


def test_scaling_does_not_change_shape_metrics_but_changes_mae():
    a = gauss(0.3)
    assert dos.cosine(a, 2 * a) == pytest.approx(1.0)
    assert dos.wasserstein(a, 2 * a) == pytest.approx(0.0, abs=1e-12)
    assert dos.mae(a, 2 * a) == pytest.approx(np.mean(a))


def test_mae_near_ef_only_sees_the_window():
    a = gauss(-6.0)
    b = np.zeros_like(a)
    assert dos.mae(a, b) > 0.01
    assert dos.mae_near_ef(a, b) < 1e-6


def test_gaussian_dos_integrates_to_weights():
    g = dos.gaussian_dos(np.array([-1.0, 1.5]), np.array([2.0, 3.0]))
    assert dos.integrate(g) == pytest.approx(5.0, rel=1e-3)
    assert dos.integrate(g, upto=0.0) == pytest.approx(2.0, rel=1e-3)


def test_regrid_interpolates_and_zero_fills():
    e = np.linspace(-3, 3, 61)
    g = np.ones_like(e)
    out = dos.regrid(e, g)
    assert out.shape == (400,)
    assert np.all(out[np.abs(dos.GRID) <= 2.9] == 1.0)
    assert np.all(out[np.abs(dos.GRID) > 3.05] == 0.0)
    # A curve already on the grid comes back unchanged.
    h = gauss(1.0)
    assert np.allclose(dos.regrid(dos.GRID, h), h)


def test_smear_and_shift_preserve_area():
    h = gauss(0.0, 0.3)
    assert dos.integrate(dos.smear(h, 0.5)) == pytest.approx(dos.integrate(h), rel=1e-3)
    assert dos.band_centre(dos.shift(h, 1.0)) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("energy, values, words", [
    (np.linspace(-5, 5, 50), np.r_[np.ones(49), np.nan], "NaN"),
    (np.linspace(-5, 5, 50), np.r_[np.ones(49), np.inf], "infinite"),
    (np.linspace(-5, 5, 50), -np.ones(50), "negative"),
    (np.linspace(5, -5, 50), np.ones(50), "increasing"),
    (np.linspace(-5, 5, 3), np.ones(3), "at least"),
    (np.linspace(-5, 5, 50), np.ones(49), "pair up"),
])
def test_bad_curves_raise_clear_errors(energy, values, words):
    with pytest.raises(ValueError, match=words):
        dos.regrid(energy, values)


def test_wrong_grid_length_is_rejected():
    with pytest.raises(ValueError, match="400"):
        dos.validate_on_grid(np.ones(399))


def test_a_table_that_does_not_span_the_grid_is_read_and_says_what_regridding_did():
    """Outside its own range a table's target is not known (compared on its window), and beyond
    ±10 eV it is left out: the page
    says which, for each side; a table written from high to low energies is the same curve."""
    from dosmatgen_core.dos import grid_note, read_dos_csv, read_dos_table
    e = np.linspace(-5, 5, 101)
    g = np.exp(-((e + 2) ** 2))
    text = "E,DOS\n" + "\n".join(f"{a:.3f},{b:.5f}" for a, b in zip(e, g))
    energy, values = read_dos_table(text)
    assert grid_note(energy) == ("The file covers -5 to 5 eV: below -5 eV and above 5 eV the file has no data, so "
                                 "curves are compared from -5 to 5 eV only; outside, the generator is given the "
                                 "closest known site's curve.")
    assert dos.file_window(energy) == (-5.0, 5.0) and dos.file_window(np.linspace(-15, 12, 271)) is None
    wide = np.linspace(-15, 12, 271)
    assert grid_note(wide) == ("The file covers -15 to 12 eV: the part below -10 eV and above 10 eV lies outside the "
                               "model's grid and is left out (if the file's energies are absolute, not E − E_F, give "
                               "its Fermi energy).")
    assert grid_note(np.linspace(-12, 10, 50)).endswith("the part below -10 eV lies outside the model's grid and is "
                                                        "left out (if the file's energies are absolute, not E − E_F, "
                                                        "give its Fermi energy).")
    assert grid_note(np.linspace(-10, 10, 400)) is None
    # its Fermi energy given (and subtracted), the note does not ask for it again (walk 17)
    assert grid_note(wide, e_fermi=5.0).endswith("left out (the file's Fermi energy, 5 eV, is subtracted already).")
    down = "E,DOS\n" + "\n".join(f"{a:.3f},{b:.5f}" for a, b in zip(e[::-1], g[::-1]))
    assert np.array_equal(read_dos_csv(down), read_dos_csv(text))
    with pytest.raises(ValueError, match="energies are not sorted"):       # out of order is no ordering at all
        read_dos_csv("E,DOS\n0,1\n-1,1\n1,1\n2,1\n3,1\n")


def test_small_negative_dips_from_smearing_are_set_to_zero_and_said_deep_ones_refused():
    """The walk: a smeared DOS with -1e-5 next to its band edges was refused as 'negative DOS'."""
    e = np.linspace(-8, 8, 161)
    g = np.exp(-e ** 2 / 4) * 3.0
    g[::20] = -1e-5
    text = "\n".join(f"{a},{b}" for a, b in zip(e, g)).encode()
    energy, values = dos.read_dos_table(text)
    assert dos.negative_note(values).startswith("9 values slightly below zero (down to -1e-05 states/eV")
    y = dos.regrid(energy, values)
    assert y.min() >= 0 and y.max() == pytest.approx(3.0, rel=1e-2)
    assert dos.negative_note(np.abs(values)) is None
    g[50] = -0.2            # 7 % of the peak: a broken file, not smearing
    with pytest.raises(ValueError, match=r"line 51: negative DOS -0.2 \(1 such row, beyond the 1% of the peak"):
        dos.read_dos_table("\n".join(f"{a},{b}" for a, b in zip(e, g)))


def test_a_window_metric_ignores_what_lies_outside_it():
    """Metrics on a window are the plain metrics of the cut curves; outside it anything goes."""
    rng = np.random.default_rng(0)
    a, b = rng.random(dos.NPTS), rng.random(dos.NPTS)
    w = (-8.0, 0.5)
    sl = dos.window_slice(w)
    assert dos.GRID[sl][0] >= -8.0 and dos.GRID[sl][-1] <= 0.5 and dos.GRID[sl.start - 1] < -8.0 < dos.GRID[sl][0]
    b2 = b.copy()
    b2[:sl.start], b2[sl.stop:] = 99.0, -5.0
    assert dos.match_metrics(a, b, w) == dos.match_metrics(a, b2, w)
    assert dos.mae(a, b, w) == pytest.approx(np.abs(a[sl] - b[sl]).mean())
    assert dos.match_metrics(a, b) == dos.match_metrics(a, b, None) != dos.match_metrics(a, b2)
    assert np.isnan(dos.mae_near_ef(a, b, window=(-9.0, -5.0)))        # the window does not reach E_F ± 2 eV
    for bad, words in (((1.0, 2.0), "at least 2 eV"), ((-12.0, 0.0), "outside the grid"), ("x", "two energies"),
                       ((0.0, float("nan")), "at least 2 eV")):
        with pytest.raises(ValueError, match=words):
            dos.window_slice(bad)


def test_a_completed_target_is_the_target_inside_and_meets_the_fill_at_each_edge():
    """The generator needs the whole grid: outside the window, the closest known site's curve,
    moved to meet the target at the edges (no step), and never negative."""
    g = np.exp(-((dos.GRID + 3) ** 2)) + 0.5
    fill = 0.2 + 0.1 * np.sin(dos.GRID)
    w = (-8.0, 0.0)
    sl = dos.window_slice(w)
    c = dos.complete(g, w, fill)
    assert np.array_equal(c[sl], g[sl]) and (c >= 0).all()
    assert abs(c[sl.start - 1] - g[sl.start]) < 0.02 and abs(c[sl.stop] - g[sl.stop - 1]) < 0.02
    far = np.abs(dos.GRID) > 9.9
    assert np.allclose(c[far & (dos.GRID > 0)], fill[far & (dos.GRID > 0)], atol=1e-6)     # the offset fades
    assert np.array_equal(dos.complete(g, None, fill), g)
    assert dos.shift_window((-8.0, 0.0), 0.5) == (-7.5, 0.5) and dos.shift_window((-9.0, 9.0), 2.0) == (-7.0, 10.0)
    assert dos.window_text((-10.0, 0.4762)) == "−10…0.48 eV" and dos.window_text(None) == ""


def test_smearing_a_windowed_target_does_not_pull_its_edges_to_zero():
    """A flat 1.0 known on −8…0 eV stays 1.0 up to its edges when smeared; read as zeros beyond, its
    edge sank to about half."""
    w = (-8.0, 0.0)
    sl = dos.window_slice(w)
    g = np.zeros(dos.NPTS)
    g[sl] = 1.0
    edge = sl.stop - 1
    assert dos.shape_target(g, smear_ev=0.5, window=w)[edge] == pytest.approx(1.0, abs=1e-3)
    assert dos.shape_target(g, smear_ev=0.5)[edge] < 0.6
    moved = dos.shape_target(g, shift_ev=0.5, window=w)
    assert np.allclose(moved[dos.window_slice(dos.shift_window(w, 0.5))], 1.0)


def test_adjusting_a_file_moves_its_table_before_the_grid_cuts_it():
    """A table reaching below −10 eV, shifted up by 1 eV: its peak at −10.5 eV comes in at −9.5 eV
    (regridding first would have lost it), and the window, all the file covered, stays all it
    covers. A curve on the grid and its window move as shape_target and shift_window move them."""
    energy = np.linspace(-12.0, 8.0, 801)
    values = 0.1 + np.exp(-((energy + 10.5) / 0.1) ** 2)
    base = dos.table_to_grid(energy, values)
    window = dos.file_window(energy)
    assert window == (-10.0, 8.0) and base[dos.GRID < -9.0].max() < 0.2      # the peak lies off the grid
    out, moved = dos.adjusted_target(base, 1.0, 1.0, 0.0, window, (energy, values))
    assert moved == (-10.0, 9.0)
    assert dos.GRID[np.argmax(out)] == pytest.approx(-9.5, abs=dos.DE) and out.max() > 0.9
    # a narrower window chosen inside the file moves with the shift instead
    out, moved = dos.adjusted_target(base, 1.0, 2.0, 0.0, (-6.0, 0.0), (energy, values))
    assert moved == (-5.0, 1.0) and out[np.abs(dos.GRID) < 0.5].mean() == pytest.approx(0.2, abs=0.01)
    g = np.exp(-((dos.GRID + 2.0) / 0.5) ** 2)
    out, moved = dos.adjusted_target(g, -0.5, 1.5, 0.2, (-8.0, 4.0))
    assert moved == (-8.5, 3.5) and np.allclose(out, dos.shape_target(g, -0.5, 1.5, 0.2, (-8.0, 4.0)))
    assert dos.adjusted_target(g)[1] is None and np.allclose(dos.adjusted_target(g)[0], g)
    # a window pushed off the grid: one error naming the shift and the energies compared
    with pytest.raises(dos.EnergyRangeError, match=r"shifted by \+2.00 eV, the energies compared \(7…10 eV\) leave less"):
        dos.adjusted_target(g, 2.0, window=(7.0, 10.0))
    assert adjusted_name("uploaded DOS (a.csv)") == "uploaded DOS (a.csv)"
    assert adjusted_name("x", 0.5, 1.2, 0.1) == "x, shifted +0.50 eV, ×1.20, smeared 0.10 eV"

def test_a_table_that_names_its_spins_is_summed_and_says_so():
    """(E, up, down) named in the header: the two spins summed, a down column written negative (as
    plots draw it) counted by its size; the note says which columns were summed."""
    from dosmatgen_core.dos import read_dos_table
    e = np.linspace(-6, 4, 60)
    up, down = np.exp(-((e + 1) ** 2)), 0.5 * np.exp(-((e + 2) ** 2))
    for head, sign in (("E,up,down", 1), ("energy;DOS_up;DOS_dn", 1), ("E tdos(↑) tdos(↓)", -1), ("E,alpha,beta", -1)):
        sep = ";" if ";" in head else " " if " " in head else ","
        text = head + "\n" + "\n".join(sep.join(f"{v:.6f}" for v in row) for row in zip(e, up, sign * down))
        notes = []
        energy, g = read_dos_table(text.replace(".", ",") if sep == ";" else text, notes)
        assert np.allclose(g, up + down, atol=1e-5), head
        assert notes and "summed" in notes[0] and head.replace(";", " ").replace(",", " ").split()[1] in notes[0]
        assert ("written negative" in notes[0]) == (sign < 0)
        assert "not spin-polarised" in notes[0]       # a walk: nothing said the DFT it meets is non-magnetic
    # without spin names, three columns are not guessed at
    with pytest.raises(ValueError, match="3 numeric columns"):
        read_dos_table("E,a,b\n" + "\n".join(f"{x},{y},{z}" for x, y, z in zip(e, up, down)))


def test_a_table_of_several_named_curves_gives_the_one_asked_for():
    """The walk: the app's own DOS CSV could not be uploaded back as a target (a checked
    candidate's DFT curve, say). Its curves are offered by name; one is read beside the energy."""
    e = np.linspace(-10, 10, 60)
    rows = "\n".join(f"{x:.4f},{'nan' if x > 0 else 1.0},0.5,{np.exp(-x * x):.6f}" for x in e)
    table = "energy_minus_ef_eV,target_site0,predicted_site0,dft_site0\n" + rows
    assert dos.curve_columns(table) == ["target_site0", "predicted_site0", "dft_site0"]
    got_e, got = dos.read_dos_table(table, column="dft_site0")
    assert np.allclose(got_e, e, atol=1e-4) and np.allclose(got, np.exp(-got_e ** 2), atol=1e-4)
    with pytest.raises(ValueError, match="4 numeric columns"):
        dos.read_dos_table(table)
    with pytest.raises(ValueError, match="NaN"):          # a windowed target's column is empty beyond it
        dos.read_dos_table(table, column="target_site0")
    with pytest.raises(ValueError, match="no column named 'dft_site1' — one of target_site0"):
        dos.read_dos_table(table, column="dft_site1")
    # the app's files now name each curve's unit; the name without it (as typed, as older files
    # wrote it) still finds the column, both ways round
    unit = table.replace("_site0", "_site0_states_per_eV", 3)
    for t, name in ((unit, "dft_site0"), (unit, "dft_site0_states_per_eV"), (table, "dft_site0_states_per_eV")):
        assert np.allclose(dos.read_dos_table(t, column=name)[1], got)
    with pytest.raises(ValueError, match="no column named 'energy_minus_ef_eV'"):     # the energy is no curve
        dos.read_dos_table(unit, column="energy_minus_ef_eV")
    assert dos.curve_columns("E,up,down\n-1,1,1\n") == [] and dos.curve_columns("-1,2\n0,3\n") == []
    # prose is no table of curves (a text file was offered its words as columns), a header over numbers is
    assert dos.curve_columns("this is not a table\nat all, really\n") == []
    assert dos.curve_columns("E DOS IDOS\n-2 0.2 0.1\n") == ["DOS", "IDOS"]
    # a structure given as the DOS file offers no columns (a POSCAR's title read as two curve names)
    from pathlib import Path
    corpus = Path(__file__).parent / "bad_inputs"
    for name in ("dos_poscar.csv", "dos_cif.csv"):
        text = (corpus / name).read_text()
        assert dos.structure_kind(text) and dos.curve_columns(text) == []
    # no structure: tables long enough to reach the POSCAR test, a title and a count line included
    rows = "\n".join(f"{-10 + 0.4 * i:.1f} 0.1 0.2" for i in range(50))
    for table in ("E,DOS\n-1,0.2\n0,0.3\n", rows, "Total DOS\n50\n" + rows, "E up down\n" + rows,
                  "# E;DOS\n" + rows.replace(" ", ";")):
        assert dos.structure_kind(table) is None, table[:30]
    # structures written other ways: an empty title, three scale factors and Fortran numbers,
    # mmCIF names, a CIF whose bibliography comes first
    for text in ("\n1.0\n0 2.8 2.8\n2.8 0 2.8\n2.8 2.8 0\nNa Cl\n1 1\nDirect\n0 0 0\n.5 .5 .5\n",
                 "x\n1. 1. 1.\n0. 2.8 2.8\n2.8 0. 2.8\n2.8 2.8 0.\nNa Cl\n1 1\nCartesian\n0 0 0\n1 1 1\n",
                 "data_x\n_cell.length_a 5.6\n_atom_site.fract_x\n",
                 "data_x\n_publ_section_title\n;\n" + "words " * 1000 + "\n;\n_cell_length_a 5.6\n"):
        assert dos.structure_kind(text), text[:30]


def test_an_empty_field_is_named_as_a_missing_value():
    """The walk: '-4.98747,' (a NaN written as nothing) read as 'expected two columns, found one'."""
    rows = [f"{e:.5f},{1.0}" for e in np.linspace(-10, 10, 30)]
    rows[7] = rows[7].split(",")[0] + ","
    with pytest.raises(ValueError, match="line 9: .* has an empty field \\(a missing value\\) — fill it or remove"):
        dos.read_dos_table("E,DOS\n" + "\n".join(rows))
    with pytest.raises(ValueError, match="expected two columns"):
        dos.read_dos_table("E,DOS\n" + "\n".join(rows[:7] + ["-3.1"] + rows[8:]))


def test_a_file_in_hartree_or_rydberg_is_read_by_its_header():
    """A walk: a DOS in Hartree spanning −1.5…1 Ha passed the span check and was read as eV (a
    target peaking at 75 'states/eV', searched to MAE 3.6). The energy column's header names the
    unit: the energies go to eV, and a DOS per Hartree to per eV, so the curve keeps its electrons."""
    e_ev = np.linspace(-9.5, 9.5, 300)
    g_ev = 2.0 * np.exp(-((e_ev + 2.0) / 0.8) ** 2) + 0.3
    for head, ev in (("E (Ha),DOS (states/Ha)", dos.HARTREE_EV), ("energy [Ry],dos", dos.RYDBERG_EV)):
        rows = "\n".join(f"{x / ev:.8f},{y * ev:.8f}" for x, y in zip(e_ev, g_ev))
        said = []
        e, g = dos.read_dos_table(f"{head}\n{rows}", said)
        assert np.allclose(e, e_ev, atol=1e-5) and np.allclose(g, g_ev, atol=1e-5)
        assert len(said) == 1 and "converted to eV" in said[0] and "states/eV" in said[0]
    # a DOS column that already says per eV keeps its values; an eV header changes nothing
    rows = "\n".join(f"{x / dos.HARTREE_EV:.8f},{y:.8f}" for x, y in zip(e_ev, g_ev))
    said = []
    e, g = dos.read_dos_table(f"E_hartree,DOS_states_per_eV\n{rows}", said)
    assert np.allclose(g, g_ev, atol=1e-6) and said == [f"The energies are in Hartree (the header's 'E_hartree'): "
                                                         f"converted to eV (× {dos.HARTREE_EV:g})."]
    rows = "\n".join(f"{x:.6f},{y:.6f}" for x, y in zip(e_ev, g_ev))
    said = []
    e, g = dos.read_dos_table(f"energy_minus_ef_eV,dos\n{rows}", said)
    assert np.allclose(e, e_ev, atol=1e-6) and said == []
    # read as eV, a Hartree curve's peak is far above any site's: said, not refused
    said = []
    dos.read_dos_table("E,DOS\n" + "\n".join(f"{x:.6f},{y * dos.HARTREE_EV:.6f}" for x, y in zip(e_ev, g_ev)), said)
    assert len(said) == 1 and "peaks at 62.6 states/eV" in said[0]


def test_a_unit_is_read_only_where_it_names_the_energy_column():
    """Review: 'Au 5d DOS' (gold) read as atomic units; 'E (Ha) DOS' and '# E(Ha) DOS' (a header
    split at its spaces, a commented header as ABINIT writes it) were missed."""
    e_ev = np.linspace(-9.5, 9.5, 120)
    g = 1.0 + 0.5 * np.exp(-e_ev ** 2)
    ev_rows = "\n".join(f"{x:.6f} {y:.6f}" for x, y in zip(e_ev, g))
    ha_rows = "\n".join(f"{x / dos.HARTREE_EV:.8f} {y * dos.HARTREE_EV:.8f}" for x, y in zip(e_ev, g))
    for head in ("Au 5d DOS", "# Hartree-Fock run\nE DOS", "au(111) surface", "# Au3Ni site 0"):
        said = []
        e, _ = dos.read_dos_table(f"{head}\n{ev_rows}", said)
        assert np.allclose(e, e_ev, atol=1e-5) and not any("Hartree" in n for n in said), head
    for head in ("E (Ha) DOS", "# E(Ha) DOS", "energy (a.u.) dos"):
        said = []
        e, got = dos.read_dos_table(f"{head}\n{ha_rows}", said)
        assert np.allclose(e, e_ev, atol=1e-5) and np.allclose(got, g, atol=1e-5), head
        assert "converted to eV" in said[0]


def test_a_file_of_absolute_energies_is_read_at_its_fermi_energy_before_it_is_cut():
    """A DOSCAR-like file (energies −12…15 eV, E_F = 5 eV; walk 17) read with its Fermi energy is
    the same curve as the file written as E − E_F: nothing above 10 eV of the file is cut before the
    subtraction, and the page's note says what was done."""
    from dosmatgen_core.dos import read_dos_table, table_to_grid
    e = np.linspace(-12, 15, 541)
    g = np.exp(-((e - 4) ** 2)) + 0.5 * np.exp(-((e - 12) ** 2))      # a peak at E_F − 1 and one at E_F + 7
    absolute = "Energy (eV),DOS\n" + "\n".join(f"{a:.4f},{b:.6f}" for a, b in zip(e, g))
    relative = "Energy (eV),DOS\n" + "\n".join(f"{a - 5:.4f},{b:.6f}" for a, b in zip(e, g))
    notes: list[str] = []
    shifted = table_to_grid(*read_dos_table(absolute, notes, e_fermi=5.0))
    assert np.allclose(shifted, table_to_grid(*read_dos_table(relative)), atol=1e-9)
    assert dos.GRID[np.argmax(shifted)] == pytest.approx(-1.0, abs=0.06)
    assert notes == ["The energies are taken relative to the file's Fermi energy, 5 eV (E − E_F = E − 5)."]
    assert shifted[dos.GRID > 6.5].max() > 0.4          # the E_F + 7 peak, beyond the file's 10 eV, is kept
    below: list[str] = []
    read_dos_table(relative.replace("Energy (eV),DOS\n", "E,DOS\n"), below, e_fermi=-3.2)
    assert below == ["The energies are taken relative to the file's Fermi energy, -3.2 eV (E − E_F = E + 3.2)."]
    with pytest.raises(ValueError, match="the Fermi energy nan is not a number"):
        read_dos_table(absolute, e_fermi=float("nan"))


def test_spin_columns_named_on_a_comment_line_are_summed():
    """Quantum ESPRESSO names its columns on a comment line, a unit split off by spaces
    ('#  E (eV)  ldos_up(E)  ldos_dw(E)'): the two spins are summed as for a header line (walk 17
    was told to add them itself)."""
    from dosmatgen_core.dos import read_dos_table
    e = np.linspace(-10, 10, 201)
    up, dw = np.exp(-(e + 1) ** 2), 0.5 * np.exp(-(e + 1) ** 2)
    text = "#  E (eV)  ldos_up(E)  ldos_dw(E)\n" + "\n".join(f"  {a:.3f}  {b:.4e}  {c:.4e}" for a, b, c in zip(e, up, dw))
    notes: list[str] = []
    energy, values = read_dos_table(text, notes)
    assert np.allclose(values, up + dw, atol=1e-4)
    assert notes[0].startswith("The file's ldos_up(E) and ldos_dw(E) columns are summed")
    # as projwfc.x and dos.x write them: the spin inside the word
    for names in ("# E (eV)  ldosup(E)  ldosdw(E)", "#  E (eV)   dosup(E)   dosdw(E)"):
        got = read_dos_table(names + "\n" + text.split("\n", 1)[1])[1]
        assert np.allclose(got, up + dw, atol=1e-4), names
    # a remark on the comment line is no header: three columns stay refused, not guessed
    with pytest.raises(ValueError, match="3 numeric columns"):
        read_dos_table("# written by my code\n" + text.split("\n", 1)[1])
