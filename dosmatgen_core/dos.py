"""The model's energy grid and everything done to DOS curves on it.

Convention: energies are E - E_F in eV, values are states/eV per site with both spins summed.
"""
from __future__ import annotations

import numpy as np

EMIN, EMAX, NPTS = -10.0, 10.0, 400
GRID = np.linspace(EMIN, EMAX, NPTS)
DE = GRID[1] - GRID[0]
SMEAR_EV = 0.2  # Gaussian width of the labels (RECIPE.md)
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
        raise ValueError(f"{name}: only {e.size} points; at least {min_points} are needed to regrid")
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


# ---- match metrics (target first, candidate second) ------------------------------------------

def mae(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def mae_near_ef(a, b, window: float = 2.0, grid: np.ndarray = GRID) -> float:
    m = np.abs(grid) <= window
    return float(np.mean(np.abs(np.asarray(a, float)[m] - np.asarray(b, float)[m])))


def cosine(a, b) -> float:
    a = np.asarray(a, float)
    b = np.asarray(b, float)
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


def match_metrics(target, candidate) -> dict[str, float]:
    """All match metrics at once, as plain floats (for tables, JSON and ranking)."""
    return {
        "mae": mae(target, candidate),
        "mae_ef2": mae_near_ef(target, candidate),
        "cosine": cosine(target, candidate),
        "wasserstein": wasserstein(target, candidate),
        "centre_shift": band_centre_shift(target, candidate),
    }


# ---- user curves -------------------------------------------------------------------------------

MAX_CSV_BYTES = 5 * 2**20      # an upload above this is refused before it is parsed
MAX_CSV_ROWS = 100_000


def read_dos_csv(data: bytes | str) -> np.ndarray:
    """An uploaded (energy − E_F, DOS) table → the model grid (read_dos_table, then table_to_grid)."""
    return table_to_grid(*read_dos_table(data))


def table_to_grid(energy, dos) -> np.ndarray:
    """A checked table regridded (regrid); raises ValueError when no states are left on the grid
    (a DOS of zeros, or one whose data all lie outside −10…10 eV): nothing to match."""
    g = regrid(energy, dos)
    if not (g > 0).any():
        e = np.asarray(energy, float)
        where = ("the DOS is zero everywhere" if not (np.asarray(dos, float) > 0).any() else
                 f"its states lie outside the model's grid (the file covers {e[0]:g} to {e[-1]:g} eV)")
        raise ValueError(f"no states between {EMIN:g} and {EMAX:g} eV: {where} — give the DOS column, with "
                         "E − E_F in eV")
    return g


def grid_note(energy) -> str | None:
    """What regridding a table that does not span the grid does to it ('the file covers −5 to
    5 eV: …'), or None when it spans the grid. Outside its own range the target is 0 (regrid)."""
    e = np.asarray(energy, float)
    step = GRID[1] - GRID[0]
    lo, hi = float(e[0]), float(e[-1])
    parts = []
    gaps = [f"below {lo:g} eV" if lo > EMIN + step else "", f"above {hi:g} eV" if hi < EMAX - step else ""]
    if gap := " and ".join(g for g in gaps if g):
        parts.append(f"{gap} the file has no data, so the target is 0 there")
    cut = [f"below {EMIN:g} eV" if lo < EMIN - step else "", f"above {EMAX:g} eV" if hi > EMAX + step else ""]
    if cut := " and ".join(c for c in cut if c):
        parts.append(f"the part {cut} lies outside the model's grid and is left out")
    return f"The file covers {lo:g} to {hi:g} eV: " + "; ".join(parts) + "." if parts else None


def read_dos_table(data: bytes | str) -> tuple[np.ndarray, np.ndarray]:
    """An uploaded (energy − E_F, DOS) table, checked: (energies ascending, DOS). Raises ValueError
    with the reason ('what — what to do'). Columns are split by commas, tabs or spaces; a file with
    semicolons is split by them, and a comma inside a field is then a decimal comma ('-1,5;0,3').
    Energies written from high to low (as some codes write them) are turned round."""
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
    lines = text.splitlines()
    if len(lines) > MAX_CSV_ROWS + 1:
        raise ValueError(f"the file has {len(lines)} lines; at most {MAX_CSV_ROWS} rows are read — "
                         "give the DOS on fewer points")
    semicolons = ";" in text
    rows, where, header = [], [], []
    for k, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if semicolons:
            parts = [p.strip().replace(",", ".") for p in s.split(";")]
        elif "," in s or "\t" in s:
            parts = [p.strip() for p in s.replace("\t", ",").split(",")]
        else:
            parts = s.split()
        parts = [p for p in parts if p]
        try:
            vals = [float(p) for p in parts[:2]]
        except ValueError:
            if not rows:      # a header line: its names tell the columns apart in a message
                header = parts
                continue
            raise ValueError(f"line {k + 1}: '{s[:40]}' is not two numbers — "
                             "keep only two numeric columns after the header") from None
        if len(vals) < 2:
            raise ValueError(f"line {k + 1}: expected two columns (energy, DOS), found one — "
                             "give two columns: energy − E_F (eV), DOS (states/eV)")
        if len(parts) > 2 and _numbers(parts[2:]):
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
    a = np.array(rows)
    e, g = a[:, 0], a[:, 1]
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
        raise ValueError(f"only {len(e)} points; at least 5 are needed to regrid — give more points")
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
        raise ValueError(f"the energies run from {e[0]:g} to {e[-1]:g} eV and do not reach E_F = 0 — give E − E_F "
                         "(subtract the Fermi energy from each energy)")
    return e, g


def _numbers(parts: list[str]) -> bool:
    try:
        [float(p) for p in parts]
    except ValueError:
        return False
    return True


def shape_target(g: np.ndarray, shift_ev: float = 0.0, scale: float = 1.0, smear_ev: float = 0.0) -> np.ndarray:
    """The user's knobs on a target curve: shift along E (eV), scale, extra Gaussian smearing (eV)."""
    out = shift(np.asarray(g, float), shift_ev) if shift_ev else np.asarray(g, float)
    out = out * float(scale)
    if smear_ev > 0:
        out = smear(out, smear_ev)
    return np.clip(out, 0, None)
