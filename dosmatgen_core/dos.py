"""The model's energy grid and everything done to DOS curves on it.

Convention: energies are E - E_F in eV, values are states/eV per site with both spins summed.
"""
from __future__ import annotations

import re

import numpy as np

EMIN, EMAX, NPTS = -10.0, 10.0, 400
GRID = np.linspace(EMIN, EMAX, NPTS)
DE = GRID[1] - GRID[0]
SMEAR_EV = 0.2  # Gaussian width of the labels (RECIPE.md)
# the user's knobs on a target: the app's sliders and the CLI's --target-shift/-scale/-smear share them
SHIFT_RANGE_EV = (-3.0, 3.0)
SCALE_RANGE = (0.2, 3.0)
SMEAR_RANGE_EV = (0.0, 1.0)
AT_REST = (0.0, 1.0, 0.0)      # (shift eV, scale, smear eV) that leave a target as it is
MIN_SPAN_EV = 2.0  # an uploaded table in eV spans more; one in Hartree (±0.3) or Rydberg spans less


def gaussian_dos(energies: np.ndarray, weights: np.ndarray, width: float = SMEAR_EV,
                 grid: np.ndarray = GRID) -> np.ndarray:
    """Σ_i w_i · N(grid; e_i, width): a broadened line spectrum (energies relative to E_F)."""
    energies = np.asarray(energies, float).ravel()
    weights = np.asarray(weights, float).ravel()
    # Levels far outside the window contribute nothing; skipping them keeps the outer product small.
    keep = (energies > grid[0] - 8 * width) & (energies < grid[-1] + 8 * width)
    x = (grid[:, None] - energies[None, keep]) / width
    return (np.exp(-0.5 * x * x) @ weights[keep]) / (width * np.sqrt(2 * np.pi))


def validate_curve(energy, dos, *, min_points: int = 5, name: str = "DOS") -> tuple[np.ndarray, np.ndarray]:
    """Return float arrays or raise ValueError saying exactly what is wrong."""
    e = np.asarray(energy, dtype=float)
    g = np.asarray(dos, dtype=float)
    if e.ndim != 1 or g.ndim != 1:
        raise ValueError(f"{name}: energy and DOS must be 1-D columns, got shapes {e.shape} and {g.shape}")
    if e.shape != g.shape:
        raise ValueError(f"{name}: {e.size} energies but {g.size} DOS values; they must pair up")
    if e.size < min_points:
        raise ValueError(f"{name}: only {e.size} point{'s' * (e.size != 1)}; at least {min_points} are needed to regrid")
    if not (np.all(np.isfinite(e)) and np.all(np.isfinite(g))):
        raise ValueError(f"{name}: contains NaN or infinite values; clean the file and try again")
    if np.any(np.diff(e) <= 0):
        raise ValueError(f"{name}: energies must be strictly increasing (sort the file, remove duplicates)")
    if np.any(g < -negative_floor(g)):
        raise ValueError(f"{name}: negative DOS values (min {g.min():.3g}); a DOS is never negative")
    return e, np.clip(g, 0.0, None)


# Smeared or interpolated DOS files dip slightly below zero (-1e-5 is common) next to band edges:
# dips within this share of the curve's peak are set to 0 (negative_note says so); deeper ones are
# a broken file.
NEGATIVE_SHARE = 0.01


def negative_floor(g) -> float:
    """How far below zero a curve may dip and still be read (clipped to 0): NEGATIVE_SHARE of its peak."""
    g = np.asarray(g, float)
    return max(1e-9, NEGATIVE_SHARE * float(np.max(g, initial=0.0)))


def negative_note(g) -> str | None:
    """What reading a curve with small negative dips did to them, or None when it has none."""
    g = np.asarray(g, float)
    n = int(np.sum(g < -1e-9))
    if not n:
        return None
    return (f"{n} value{'s' * (n > 1)} slightly below zero (down to {g.min():.2g} states/eV, as smearing or "
            "interpolation leaves them) were set to 0.")


def validate_on_grid(dos, name: str = "DOS") -> np.ndarray:
    """Check a curve that claims to be on the model grid already."""
    g = np.asarray(dos, dtype=float)
    if g.shape != (NPTS,):
        raise ValueError(f"{name}: expected {NPTS} values on the model grid, got shape {g.shape}")
    return validate_curve(GRID, g, name=name)[1]


def regrid(energy, dos, grid: np.ndarray = GRID) -> np.ndarray:
    """Linear interpolation onto the grid; zero outside the curve's own energy range."""
    e, g = validate_curve(energy, dos)
    return np.interp(grid, e, g, left=0.0, right=0.0)


def smear(dos, width: float, grid: np.ndarray = GRID) -> np.ndarray:
    """Extra Gaussian broadening (eV) of a curve already on the grid; preserves its integral."""
    g = np.asarray(dos, float)
    if width <= 0:
        return g.copy()
    dx = grid[1] - grid[0]
    half = int(np.ceil(5 * width / dx))
    k = np.exp(-0.5 * (np.arange(-half, half + 1) * dx / width) ** 2)
    k /= k.sum()
    return np.convolve(g, k, mode="same")


def shift(dos, delta_ev: float, grid: np.ndarray = GRID) -> np.ndarray:
    """Move a curve by delta_ev along the energy axis (positive = to higher energy), zero fill."""
    return np.interp(grid - delta_ev, grid, np.asarray(dos, float), left=0.0, right=0.0)


def integrate(dos, grid: np.ndarray = GRID, upto: float | None = None) -> float:
    """States in the window (below `upto` if given): trapezoid rule."""
    g = np.asarray(dos, float)
    if upto is not None:
        # Close the window exactly at `upto` (E_F is not a grid point) by interpolating there.
        m = grid < upto
        e = np.r_[grid[m], upto]
        return float(np.trapezoid(np.r_[g[m], np.interp(upto, grid, g)], e))
    return float(np.trapezoid(g, grid))


# ---- the window a target is known on -----------------------------------------------------------
# A measured curve often covers part of the grid only (photoemission: the occupied states). Such a
# target is compared on its window alone: outside it nothing is known, which is not "no states".
# A window is (lo, hi) in eV; None is the whole grid.

def window_slice(window=None, grid: np.ndarray = GRID) -> slice:
    """The grid points inside window (inclusive ends) as a slice: a view, not a copy."""
    if window is None:
        return slice(None)
    lo, hi = check_window(window)
    i0 = int(np.searchsorted(grid, lo - 1e-9, side="left"))
    i1 = int(np.searchsorted(grid, hi + 1e-9, side="right"))
    return slice(i0, i1)


def window_mask(window=None, grid: np.ndarray = GRID) -> np.ndarray:
    """The grid points inside window as a boolean mask (all True for the whole grid)."""
    known = np.zeros(len(grid), bool)
    known[window_slice(window, grid)] = True
    return known


def only_in_window(y, window=None) -> np.ndarray:
    """y where the window knows it, nan elsewhere (a plot or a table leaves those points empty)."""
    return np.where(window_mask(window), np.asarray(y, float), np.nan)


def check_window(window) -> tuple[float, float]:
    """(lo, hi) as floats, or ValueError naming what is wrong: two finite energies, lo < hi, on the
    grid, at least MIN_SPAN_EV apart."""
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ValueError(f"window: expected two energies (lo, hi) in eV, not {window!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi - lo < MIN_SPAN_EV:
        raise ValueError(f"window: {lo:g} to {hi:g} eV is not a range of at least {MIN_SPAN_EV:g} eV")
    if lo < EMIN - 1e-9 or hi > EMAX + 1e-9:
        raise ValueError(f"window: {lo:g} to {hi:g} eV reaches outside the grid ({EMIN:g} to {EMAX:g} eV)")
    return lo, hi


def file_window(energy) -> tuple[float, float] | None:
    """The part of the grid a table's energies cover, or None when they cover it all (to a grid
    step): the window its curve is compared on."""
    e = np.asarray(energy, float)
    lo, hi = max(float(e[0]), EMIN), min(float(e[-1]), EMAX)
    if lo <= EMIN + DE and hi >= EMAX - DE:
        return None
    return round(lo, 4), round(hi, 4)


def shift_window(window, delta_ev: float):
    """The window of a curve moved by delta_ev (dos.shift), cut to the grid; None stays None."""
    if window is None:
        return None
    lo, hi = (float(v) for v in window)
    return round(max(lo + delta_ev, EMIN), 4), round(min(hi + delta_ev, EMAX), 4)


def window_text(window) -> str:
    """'−10…0.48 eV' as the pages write a window (the grid is '−10…10 eV'); '' for the whole grid."""
    if window is None:
        return ""
    lo, hi = check_window(window)
    return f"{round(lo, 2):g}…{round(hi, 2):g} eV".replace("-", "−")


def complete(target, window, fill, ramp_ev: float = 0.5, grid: np.ndarray = GRID) -> np.ndarray:
    """target inside window, fill (a known site's curve) outside it: the whole-grid curve the
    generator and the steering need. fill is moved to meet the target at each edge, the offset fading
    over ramp_ev, so that no step appears there; never below 0."""
    g = np.asarray(target, float)
    if window is None:
        return g.copy()
    sl = window_slice(window, grid)
    i0, i1 = sl.start, sl.stop
    f = np.asarray(fill, float)
    out = f.copy()
    out[sl] = g[sl]
    if i0 > 0:
        d = np.arange(i0)[::-1]              # grid steps below the window's first point, less one
        out[:i0] += (g[i0] - f[i0]) * np.exp(-d * (grid[1] - grid[0]) / ramp_ev)
    if i1 < len(grid):
        d = np.arange(len(grid) - i1)
        out[i1:] += (g[i1 - 1] - f[i1 - 1]) * np.exp(-d * (grid[1] - grid[0]) / ramp_ev)
    return np.clip(out, 0.0, None)


# ---- match metrics (target first, candidate second; on the target's window if it has one) -----

def mae(a, b, window=None) -> float:
    sl = window_slice(window)
    return float(np.mean(np.abs(np.asarray(a, float)[sl] - np.asarray(b, float)[sl])))


def mae_near_ef(a, b, width: float = 2.0, grid: np.ndarray = GRID, window=None) -> float:
    """MAE within ±width of E_F (and within the window); nan when the two do not meet."""
    m = (np.abs(grid) <= width) & window_mask(window, grid)
    if not m.any():
        return float("nan")
    return float(np.mean(np.abs(np.asarray(a, float)[m] - np.asarray(b, float)[m])))


def cosine(a, b, window=None) -> float:
    sl = window_slice(window)
    a = np.asarray(a, float)[sl]
    b = np.asarray(b, float)[sl]
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 1.0 if na == nb else 0.0
    return float(a @ b / (na * nb))


def wasserstein(a, b, grid: np.ndarray = GRID) -> float:
    """Earth mover's distance (eV) between the two curves normalised to unit area."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    sa, sb = a.sum(), b.sum()
    if sa <= 0 or sb <= 0:
        raise ValueError("Wasserstein distance needs two curves with non-zero area")
    ca = np.cumsum(a / sa)
    cb = np.cumsum(b / sb)
    return float(np.sum(np.abs(ca - cb)) * (grid[1] - grid[0]))


def band_centre(dos, grid: np.ndarray = GRID, upto: float | None = None) -> float:
    """First moment of the curve (eV): the d-band centre when applied to a d-projected DOS."""
    g = np.asarray(dos, float)
    if upto is not None:
        g = np.where(grid <= upto, g, 0.0)
    s = g.sum()
    if s <= 0:
        return float("nan")
    return float((g * grid).sum() / s)


def band_centre_shift(a, b, grid: np.ndarray = GRID) -> float:
    """Centre of b minus centre of a (eV)."""
    return band_centre(b, grid) - band_centre(a, grid)


def match_metrics(target, candidate, window=None) -> dict[str, float]:
    """All match metrics at once, as plain floats (for tables, JSON and ranking); with a window,
    each is taken on the window alone (the earth mover's distance and the centre shift of the
    curves cut to it)."""
    sl = window_slice(window)
    t, c = np.asarray(target, float), np.asarray(candidate, float)
    return {
        "mae": mae(t, c, window),
        "mae_ef2": mae_near_ef(t, c, window=window),
        "cosine": cosine(t, c, window),
        "wasserstein": wasserstein(t[sl], c[sl], GRID[sl]),
        "centre_shift": band_centre_shift(t[sl], c[sl], GRID[sl]),
    }


# ---- user curves -------------------------------------------------------------------------------

MAX_CSV_BYTES = 5 * 2**20      # an upload above this is refused before it is parsed
MAX_CSV_ROWS = 100_000
CURVE_UNIT = "_states_per_eV"   # ends each curve column's name in the files the app writes


class EnergyRangeError(ValueError):
    """A table read whole whose energies miss the grid (they do not reach E_F, or its states lie
    beyond ±10 eV): the file's Fermi energy can mend it, so the page keeps the file."""


def read_dos_csv(data: bytes | str) -> np.ndarray:
    """An uploaded (energy − E_F, DOS) table → the model grid (read_dos_table, then table_to_grid)."""
    return table_to_grid(*read_dos_table(data))


def table_to_grid(energy, dos) -> np.ndarray:
    """A checked table regridded (regrid); raises ValueError when no states are left on the grid
    (a DOS of zeros, or one whose data all lie outside −10…10 eV): nothing to match."""
    g = regrid(energy, dos)
    if not (g > 0).any():
        e = np.asarray(energy, float)
        if not (np.asarray(dos, float) > 0).any():
            raise ValueError(f"no states between {EMIN:g} and {EMAX:g} eV: the DOS is zero everywhere — give the DOS "
                             "column, with E − E_F in eV")
        raise EnergyRangeError(f"no states between {EMIN:g} and {EMAX:g} eV: its states lie outside the model's grid "
                               f"(the file covers {e[0]:g} to {e[-1]:g} eV) — give the DOS column, with E − E_F in "
                               "eV, or the file's Fermi energy to subtract")
    return g


def grid_note(energy, e_fermi: float | None = None) -> str | None:
    """What regridding a table that does not span the grid does to it ('the file covers −5 to
    5 eV: …'), or None when it spans the grid. Outside its own range nothing is known: it is
    compared on its window alone (file_window). e_fermi: the Fermi energy already subtracted from
    the file's energies, if any (the note then does not ask for one: walk 17)."""
    e = np.asarray(energy, float)
    step = GRID[1] - GRID[0]
    lo, hi = float(e[0]), float(e[-1])
    parts = []
    gaps = [f"below {lo:g} eV" if lo > EMIN + step else "", f"above {hi:g} eV" if hi < EMAX - step else ""]
    if gap := " and ".join(g for g in gaps if g):
        parts.append(f"{gap} the file has no data, so curves are compared from {max(lo, EMIN):g} to "
                     f"{min(hi, EMAX):g} eV only; outside, the generator is given the closest known site's curve")
    cut = [f"below {EMIN:g} eV" if lo < EMIN - step else "", f"above {EMAX:g} eV" if hi > EMAX + step else ""]
    if cut := " and ".join(c for c in cut if c):
        parts.append(f"the part {cut} lies outside the model's grid and is left out"
                     + (f" (the file's Fermi energy, {e_fermi:g} eV, is subtracted already)" if e_fermi else
                        " (if the file's energies are absolute, not E − E_F, give its Fermi energy)"))
    return f"The file covers {lo:g} to {hi:g} eV: " + "; ".join(parts) + "." if parts else None


# 'dosup(E)', 'ldosdw(E)', 'pdosup(E)': Quantum ESPRESSO writes the spin into the word
_UP = re.compile(r"(^|[^a-z])(up|alpha)([^a-z]|$)|↑|dos_?up([^a-z]|$)")
_DOWN = re.compile(r"(^|[^a-z])(down|dn|dw|beta)([^a-z]|$)|↓|dos_?(dw|dn|down)([^a-z]|$)")


def spin_header(header: list[str]) -> bool:
    """Whether a three-column header names energy, spin up and spin down ('E,up,down',
    'energy;DOS_up;DOS_dn', 'E tdos(↑) tdos(↓)'): the one case where two curves are summed unasked."""
    if len(header) != 3:
        return False
    up, down = header[1].lower(), header[2].lower()
    return bool(_UP.search(up)) and not _DOWN.search(up) and bool(_DOWN.search(down)) and not _UP.search(down)


def _semicolons(text: str) -> bool:
    """Whether the table's fields are split by semicolons (then a comma is a decimal comma): a
    semicolon on a line of data or the header, not in a comment (a note's ';' split every line)."""
    return any(";" in x for x in text.splitlines() if not x.lstrip().startswith("#"))


def _cells(line: str, semicolons: bool) -> list[str]:
    """A table line's fields: split by semicolons (then a comma is a decimal comma), else by commas
    or tabs, else by spaces."""
    if semicolons:
        parts = [p.strip().replace(",", ".") for p in line.split(";")]
    elif "," in line or "\t" in line:
        parts = [p.strip() for p in line.replace("\t", ",").split(",")]
    else:
        parts = line.split()
    return [p for p in parts if p]


def curve_columns(data: bytes | str) -> list[str]:
    """The named curve columns of a table that holds several side by side (the app's own DOS CSV:
    target, predicted, spread, DFT), all but the first (the energy): the ones a target can be taken
    from (read_dos_table's column). [] for a two-column table, a headless one, or (E, up, down),
    whose spins are summed instead."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    if structure_kind(text):         # a POSCAR's title line ('NaCl rock salt') is no header of curves
        return []
    semicolons = _semicolons(text)
    lines = [x.strip() for x in text.splitlines()[:50] if x.strip() and not x.strip().startswith("#")]
    if not lines:
        return []
    head = _names(_cells(lines[0], semicolons))
    if _numbers(head[:1]) or len(head) < 3 or spin_header(head):
        return []
    # a header over numbers, as many as it names: a sentence of prose is no table of curves
    first = _cells(lines[1], semicolons) if len(lines) > 1 else []
    return head[1:] if len(first) == len(head) and _numbers(first) else []


def column_index(header: list[str], column: str) -> int:
    """Where a curve column named by the user sits in a header (never the energy's place). The
    unit may be left off ('dft_site0' for 'dft_site0_states_per_eV'): files written before the
    unit joined the names, and the name a user types, stay valid."""
    bare = [h.removesuffix(CURVE_UNIT) for h in header]
    for names in (header, bare):
        if column in names[1:]:
            return names.index(column, 1)
    if column.removesuffix(CURVE_UNIT) in bare[1:]:
        return bare.index(column.removesuffix(CURVE_UNIT), 1)
    raise ValueError(f"no column named {column!r} — one of {', '.join(header[1:])}")


_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eEdD][-+]?\d+)?"
_POSCAR_AXES = re.compile(rf"^\s*{_NUM}\s+{_NUM}\s+{_NUM}\s*$")
_POSCAR_SCALE = re.compile(rf"^\s*{_NUM}(?:\s+{_NUM}\s+{_NUM})?\s*$")
_POSCAR_COORDS = re.compile(r"^\s*[DdCcKkSs]")       # Direct, Cartesian (or Kartesian), Selective dynamics
_CIF_TAGS = re.compile(r"^\s*_(?:cell[._]length_a|atom_site[._])", re.M)


def structure_kind(text: str) -> str | None:
    """'a crystal structure (CIF)', '… (POSCAR)' or 'a VASP run (vasprun.xml)' when a file given as a
    DOS table is one of those (a walk's CIF read as "no numeric rows found"), else None. A POSCAR is
    its scale, three lattice vectors, the species or their counts and the coordinates' mode (a DOS
    table with a title and a count line has numbers where the mode goes)."""
    head = text[:200_000]
    if "<modeling>" in head[:4000]:
        return "a VASP run (vasprun.xml)"
    if re.search(r"^\s*data_", head, re.M) and _CIF_TAGS.search(head):
        return "a crystal structure (CIF)"
    lines = head.splitlines()[:12]
    if (len(lines) >= 8 and _POSCAR_SCALE.match(lines[1]) and all(_POSCAR_AXES.match(ln) for ln in lines[2:5])
            and any(_POSCAR_COORDS.match(ln) for ln in lines[5:9])):
        return "a crystal structure (POSCAR)"
    return None


HARTREE_EV, RYDBERG_EV = 27.211386, 13.605693
# 'a.u.' only with both dots: a bare 'au' is gold ('Au 5d DOS' was read as Hartree)
_ENERGY_UNITS = ((re.compile(r"(^|[^a-z])(ha|hartrees?|e_?h)([^a-z]|$)|a\.u\."), "Hartree", HARTREE_EV),
                 (re.compile(r"(^|[^a-z])(ry|rydbergs?)([^a-z]|$)"), "Rydberg", RYDBERG_EV))
_PER_EV = re.compile(r"(/|per\s*|_per_)\s*ev|ev\s*(\^|\*\*)?\s*-1|ev⁻¹", re.I)
PLAUSIBLE_SITE_PEAK = 30.0      # states/eV: the labels' highest is 19.8 (semicore d at 0.2 eV broadening)


def header_energy_unit(header: list[str]) -> tuple[str, float] | None:
    """(name, eV per unit) when the energy column's header names Hartree or Rydberg ('E (Ha)',
    'energy [Ry]', 'E_hartree'); None for eV or no unit. A file in Hartree spans ~1 unit, so a
    wide one passed the span check and was read as eV without a word (a walk's −1.5…1 Ha)."""
    if not header:
        return None
    name = header[0].lower()
    if len(header) > 1 and header[1][:1] in "([":       # 'E (Ha) DOS' split at its spaces
        name += " " + header[1].lower()
    if re.search(r"(^|[^a-z])ev([^a-z]|$)", name):
        return None
    return next(((unit, ev) for rx, unit, ev in _ENERGY_UNITS if rx.search(name)), None)


def _names(cells: list[str]) -> list[str]:
    """A header's column names, a unit split off by spaces joined back to its name ('E (eV)
    ldos_up(E)' reads E (eV), ldos_up(E)): Quantum ESPRESSO's '#  E (eV)  ldos_up(E)  ldos_dw(E)'."""
    out: list[str] = []
    for c in cells:
        if out and c[:1] in "([" and not _numbers([c]):
            out[-1] += " " + c
        else:
            out.append(c)
    return out


def read_dos_table(data: bytes | str, notes: list | None = None, column: str | None = None,
                   e_fermi: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """An uploaded (energy − E_F, DOS) table, checked: (energies ascending, DOS). Raises ValueError
    with the reason ('what — what to do'). Columns are split by commas, tabs or spaces; a file with
    semicolons is split by them, and a comma inside a field is then a decimal comma ('-1,5;0,3').
    Energies written from high to low (as some codes write them) are turned round. A header that
    names (energy, up, down) has its two spins summed (a down column written negative, as plots
    draw it, counts by its size), and notes (a list) gets a line saying so. column: of a table with
    several named curves (curve_columns), the one to read beside the energy. e_fermi: the file's
    Fermi energy (eV), for energies not yet E − E_F (a DOSCAR's are absolute): subtracted before
    the curve is regridded, so nothing the file holds is cut first."""
    size = len(data)
    if size > MAX_CSV_BYTES:
        raise ValueError(f"the file is {size / 2**20:.1f} MB; at most {MAX_CSV_BYTES // 2**20} MB is read — "
                         "give the DOS on fewer points (a few thousand are plenty)")
    if isinstance(data, bytes):
        if b"\x00" in data:
            raise ValueError("the file is binary, not a text table — save it as CSV (energy − E_F, DOS)")
        text = data.decode("utf-8", errors="replace")
    else:
        text = data
    if not text.strip():
        raise ValueError("the file is empty — give two columns: energy − E_F (eV), DOS (states/eV)")
    if kind := structure_kind(text):
        raise ValueError(f"this is {kind}, not a DOS table — give it as the reference instead (the app's upload under "
                         "“A site of a material”, --ref FILE on the command line) and pick the atom whose DOS is the "
                         "target")
    lines = text.splitlines()
    if len(lines) > MAX_CSV_ROWS + 1:
        raise ValueError(f"the file has {len(lines)} lines; at most {MAX_CSV_ROWS} rows are read — "
                         "give the DOS on fewer points")
    semicolons = _semicolons(text)
    rows, where, header, pick, commented = [], [], [], None, []
    for k, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith("#"):
            if s.startswith("#") and not rows and not header:
                commented = _names(_cells(s.lstrip("#").strip(), semicolons))     # '# E(Ha) DOS', as ABINIT writes it
            continue
        parts = _cells(s, semicolons)
        if pick is not None:
            if len(parts) <= pick:
                raise ValueError(f"line {k + 1} has no {column} column — give every row the header's columns")
            parts = [parts[0], parts[pick]]
        try:
            vals = [float(p) for p in parts[:2]]
        except ValueError:
            if not rows:      # a header line: its names tell the columns apart in a message
                header = _names(parts)
                if column is not None:
                    pick = column_index(header, column)
                continue
            raise ValueError(f"line {k + 1}: '{s[:40]}' is not two numbers — "
                             "keep only two numeric columns after the header") from None
        if len(vals) < 2:
            if re.search(r"[,;\t]\s*$|[,;]\s*[,;]", s):      # '-4.98,': a field left empty, as a NaN is often written
                raise ValueError(f"line {k + 1}: '{s[:40]}' has an empty field (a missing value) — fill it or "
                                 "remove that row")
            raise ValueError(f"line {k + 1}: expected two columns (energy, DOS), found one — "
                             "give two columns: energy − E_F (eV), DOS (states/eV)")
        if not header and commented and len(parts) == len(commented) and spin_header(commented):
            header = commented        # the columns named on a comment line, as Quantum ESPRESSO writes them
        if len(parts) == 3 and spin_header(header) and _numbers(parts[2:]):
            vals.append(float(parts[2]))          # (E, up, down): summed below, once the signs are known
        elif len(parts) > 2 and _numbers(parts[2:]):
            # (E, up, down) and (E, DOS, integrated DOS) look alike: taking the second column would
            # halve a spin-polarised DOS without a word, so neither is guessed
            named = f" ({', '.join(header)})" if len(header) == len(parts) else ""
            hint = ("give two columns: energy − E_F (eV) and the total DOS (states/eV); for a spin-polarised DOS, "
                    "add the up and down columns into one" if len(parts) == 3 or not named else
                    # several curves side by side (the app's own DOS CSV: target, predicted, its spread)
                    f"keep the energy column and the one curve you want as the target (e.g. {header[0]} and "
                    f"{header[1]})")
            raise ValueError(f"line {k + 1} has {len(parts)} numeric columns{named}; the target is one curve, spins "
                             f"summed — {hint}")
        rows.append(vals)
        where.append(k + 1)
    if not rows:
        raise ValueError("no numeric rows found — give two columns: energy − E_F (eV), DOS (states/eV)")
    if len({len(r) for r in rows}) > 1:
        k = next(i for i, r in enumerate(rows) if len(r) != len(rows[0]))
        raise ValueError(f"line {where[k]} has {len(rows[k])} columns, the rows above {len(rows[0])} — "
                         "give every row the same columns")
    a = np.array(rows)
    if a.shape[1] == 3:
        summed, flipped = _spins_summed(a[:, 1], a[:, 2], header, where)
        a = np.column_stack([a[:, 0], summed])
        if notes is not None:
            notes.append(f"The file's {header[1]} and {header[2]} columns are summed: the target is the DOS of "
                         "both spins" + (f" ({header[2]}, written negative as plots draw it, counted by its size)"
                                         if flipped else "") + ". The DFT it is compared with is not "
                         "spin-polarised: a magnetic site's moment is not in the labels or the checks, so its split "
                         "bands are matched by a non-magnetic curve.")
    e, g = a[:, 0], a[:, 1]
    if commented and not (len(commented) in (2, 3) and commented[0].lower().startswith(("e", "ε"))):
        commented = []          # a remark ('# Hartree-Fock run'), not the columns' names
    if unit := header_energy_unit(header or commented):
        # per Hartree, unless the DOS column says per eV: the curve keeps its integral, its electrons
        name, ev = unit
        named = header or commented
        dos_name = named[pick if pick is not None else -1] if len(named) > 1 else ""
        per_ev = bool(_PER_EV.search(dos_name))
        e = e * ev
        g = g if per_ev else g / ev
        if notes is not None:
            notes.append(f"The energies are in {name} (the header's {(header or commented)[0]!r}): converted to eV (× {ev:g})"
                         + ("." if per_ev else f", and the DOS from states/{name} to states/eV (÷ {ev:g})."))
    if not np.isfinite(e_fermi):
        raise ValueError(f"the Fermi energy {e_fermi} is not a number — give it in eV, or 0 for energies that are "
                         "E − E_F already")
    if e_fermi:
        e = e - float(e_fermi)
        if notes is not None:
            notes.append(f"The energies are taken relative to the file's Fermi energy, {e_fermi:g} eV (E − E_F = "
                         f"E {'−' if e_fermi > 0 else '+'} {abs(e_fermi):g}).")
    bad = np.flatnonzero(~np.isfinite(a).all(1))
    if bad.size:
        rows = f"{bad.size} such row{'s' * (bad.size > 1)}"
        raise ValueError(f"line {where[bad[0]]}: {'NaN' if np.isnan(a[bad[0]]).any() else 'an infinite value'} "
                         f"({rows}) — remove or fill those rows")
    neg = np.flatnonzero(g < -negative_floor(g))
    if neg.size:
        rows = f"{neg.size} such row{'s' * (neg.size > 1)}"
        raise ValueError(f"line {where[neg[0]]}: negative DOS {g[neg[0]]:.3g} ({rows}, beyond the "
                         f"{NEGATIVE_SHARE:.0%} of the peak that smearing leaves); a DOS is never negative — fix "
                         "those values")
    if len(e) < 5:
        raise ValueError(f"only {len(e)} point{'s' * (len(e) != 1)}; at least 5 are needed to regrid — give more points")
    if len(e) > 1 and np.all(np.diff(e) < 0):      # written from high to low: the same curve
        e, g, where = e[::-1], g[::-1], where[::-1]
    step = np.diff(e)
    if np.any(step == 0):
        k = int(np.flatnonzero(step == 0)[0])
        raise ValueError(f"duplicate energy {e[k]:g} eV on lines {where[k]} and {where[k + 1]} — "
                         "keep one row per energy")
    if np.any(step < 0):
        k = int(np.flatnonzero(step < 0)[0])
        raise ValueError(f"energies are not sorted: line {where[k + 1]} ({e[k + 1]:g} eV) comes after "
                         f"line {where[k]} ({e[k]:g} eV) — sort the rows by energy")
    if e[-1] - e[0] < MIN_SPAN_EV:
        raise ValueError(f"the energies span only {e[-1] - e[0]:.3g} eV ({e[0]:g} to {e[-1]:g}); the grid is E − E_F "
                         f"from {EMIN:g} to {EMAX:g} eV — give the energies in eV (Hartree × 27.211, Rydberg "
                         "× 13.606)")
    if e[0] > 0 or e[-1] < 0:
        raise EnergyRangeError(f"the energies run from {e[0]:g} to {e[-1]:g} eV and do not reach E_F = 0 — give "
                               "E − E_F, or the file's Fermi energy to subtract")
    if notes is not None and (peak := float(np.max(g))) > PLAUSIBLE_SITE_PEAK:
        notes.append(f"The DOS peaks at {peak:.3g} states/eV, above any site's label at 0.2 eV broadening "
                     f"(all under {PLAUSIBLE_SITE_PEAK:g}): check that it is one site's DOS, in states/eV, with energies in eV "
                     "(a total DOS of a cell, or a file in Hartree or Rydberg, reads this way).")
    return e, g


def _spins_summed(up: np.ndarray, down: np.ndarray, header: list[str], where: list[int]) -> tuple[np.ndarray, bool]:
    """(up + down, whether down was written negative): a down column written negative (as plots
    draw it) counts by its size; one of both signs beyond the smearing's dips is refused: which
    convention it follows is unknown."""
    if np.isfinite(down).all() and (down <= negative_floor(np.abs(down))).all() and (down < 0).any():
        return up - down, True
    if (bad := np.flatnonzero(down < -negative_floor(down))).size and (down > negative_floor(down)).any():
        raise ValueError(f"line {where[bad[0]]}: the {header[2]} column has values of both signs ({down[bad[0]]:.3g}) — "
                         "give it all positive (or all negative, as plots draw it)")
    return up + down, False


def _numbers(parts: list[str]) -> bool:
    try:
        [float(p) for p in parts]
    except ValueError:
        return False
    return True


def shape_target(g: np.ndarray, shift_ev: float = 0.0, scale: float = 1.0, smear_ev: float = 0.0,
                 window=None) -> np.ndarray:
    """The user's knobs on a target curve: shift along E (eV), scale, extra Gaussian smearing (eV).
    A curve known on a window only is first held at its edge values beyond it, so that smearing
    does not pull the edges towards the zeros that stand for "no data" (its window then moves with
    the shift: shift_window)."""
    g = np.asarray(g, float)
    if window is not None:
        sl = window_slice(window)
        g = g.copy()
        g[:sl.start], g[sl.stop:] = g[sl.start], g[sl.stop - 1]
    out = shift(g, shift_ev) if shift_ev else g
    out = out * float(scale)
    if smear_ev > 0:
        out = smear(out, smear_ev)
    return np.clip(out, 0, None)


def adjusted_target(curve, shift_ev: float = 0.0, scale: float = 1.0, smear_ev: float = 0.0, window=None,
                    table=None) -> tuple[np.ndarray, tuple[float, float] | None]:
    """A target after the user's knobs (shape_target), and the energies it is compared on, moved
    with it: what the app's "Adjust the target" and the CLI's --target-shift/-scale/-smear make.

    curve: the target on the grid; window: where it is compared (None: the whole grid). table:
    (energy, values) of the file it was read from, if any: a shifted file is moved before it is cut
    to the grid, so that its data beyond ±10 eV come in instead of zeros (walk 17), and a window
    that was all the file covers becomes all the moved file covers. EnergyRangeError when the
    shift leaves less than MIN_SPAN_EV of the compared energies on the grid."""
    if table is not None and shift_ev:
        energy = np.asarray(table[0], float)
        moved = energy + shift_ev
        new_window = file_window(moved) if window == file_window(energy) else shift_window(window, shift_ev)
        if new_window is not None and new_window[1] - new_window[0] < MIN_SPAN_EV:
            raise EnergyRangeError(_short_after_shift(window, shift_ev))
        out = shape_target(table_to_grid(moved, table[1]), 0.0, scale, smear_ev, new_window)
    else:
        new_window = shift_window(window, shift_ev)
        if new_window is not None and new_window[1] - new_window[0] < MIN_SPAN_EV:
            raise EnergyRangeError(_short_after_shift(window, shift_ev))
        out = shape_target(curve, shift_ev, scale, smear_ev, window)
    return out, new_window


def _short_after_shift(window, shift_ev: float) -> str:
    where = f"the energies compared ({window_text(window)})" if window is not None else "the curve"
    return (f"shifted by {shift_ev:+.2f} eV, {where} leave less than {MIN_SPAN_EV:g} eV on the grid: shift less, "
            "or compare on more energies")
