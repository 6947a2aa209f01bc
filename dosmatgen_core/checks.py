"""Checks of what a user asks for, made before any model loads or any sampling starts.

Pure functions shared by the CLI and `candidates.pipeline.Request` (so the app shows the same
messages). Each raises `UserError`: what is wrong, and what to do about it, and, for a value of a
generation request, which of its fields (`Request`'s names: steps, guidance, …) is wrong, so a
form can show the message beside that input (`request_problems` lists them all).
"""
from __future__ import annotations

import difflib
import io
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
from ase.io.cif import parse_cif
from pymatgen.core import Structure

from dosmatgen_core import dos as dosmod
from dosmatgen_core.settings import SHIPPED
from dosmatgen_core.structures import (
    MAX_ATOMS,
    MAX_UPLOAD_ATOMS,
    MAX_UPLOAD_BYTES,
    StructureError,
    cif_missing_tags,
    cif_unknown_symbols,
    read_structure,
)

MAX_STEPS = 1000              # the diffusion has T = 1000 steps; more cannot be taken
MAX_CANDIDATES = 1000
MAX_DFT_TOP = 10              # DFT checks after ranking: each takes minutes on the CPU
MIN_SEPARATION = 0.5          # Å: closer atoms are one atom twice (evaluate.MIN_DISTANCE agrees)
MIN_FREE_BYTES = 50 * 2**20   # a run with its candidates takes well under a megabyte
MIN_VOLUME_PER_ATOM = 1.0     # Å³: a cell below this is degenerate, not a crystal


class UserError(ValueError):
    """Bad input: `what` is wrong, `fix` says what to do. str() is the one line the CLI prints.
    field: the request field the problem belongs to (None: not one input's fault)."""

    def __init__(self, what: str, fix: str = "", field: str | None = None):
        self.what, self.fix, self.field = what, fix, field
        super().__init__(f"{what} — {fix}" if fix else what)

    def __str__(self) -> str:      # not KeyError's quoted form, for the subclasses that are KeyErrors
        return str(self.args[0])


class NotFound(UserError, KeyError):
    """An id that names nothing (a material, a run, a rank): a KeyError to callers that look up."""


def near(word: str, choices, n: int = 3) -> list[str]:
    """The closest few of `choices` to `word` (difflib), for 'did you mean' hints."""
    return difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.5)


def did_you_mean(word: str, choices, default: str) -> str:
    hits = near(word, choices)
    return f"did you mean {', '.join(hits)}?" if hits else default


# ---- numbers ---------------------------------------------------------------------------------

def _number(value, name: str, kind=float, field: str | None = None):
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UserError(f"{name} must be a number, not {value!r}", f"give {name} as a number", field) from None
    if not math.isfinite(x):
        raise UserError(f"{name} is {value!r}, not a finite number", f"give {name} as a finite number", field)
    if kind is int and x != int(x):
        raise UserError(f"{name} must be a whole number, not {value!r}", f"give {name} as a whole number", field)
    return kind(x)


def _ranged(value, name: str, lo: int, hi: int, fix: str, field: str) -> int:
    """A whole number from lo to hi, or the one error that names the range."""
    x = _number(value, name, int, field)
    if not lo <= x <= hi:
        raise UserError(f"{name} is {x}; it must be between {lo} and {hi}", fix, field)
    return x


def check_steps(steps) -> int:
    return _ranged(steps, "steps", 1, MAX_STEPS, f"use --steps {SHIPPED.steps} (the shipped setting)", "steps")


def check_guidance(w) -> float:
    x = _number(w, "guidance weight w", float, "guidance")
    if not 0.0 <= x <= SHIPPED.max_guidance:
        raise UserError(f"guidance weight w is {x:g}; it must be between 0 and {SHIPPED.max_guidance:g}",
                        f"use --w {SHIPPED.guidance:g} (the shipped setting); larger weights were never measured",
                        "guidance")
    return x


def check_particles(k) -> int:
    x = _number(k, "particles", int, "particles")
    if not 1 <= x <= SHIPPED.max_particles:
        raise UserError(f"particles is {x}; DOS steering takes 1 to {SHIPPED.max_particles} per candidate",
                        f"use --particles {SHIPPED.particles} (1 turns steering off)", "particles")
    return x


def check_steer(strength) -> float:
    x = _number(strength, "steering strength", float, "steer")
    if x < 0:
        raise UserError(f"steering strength is {x:g}; it cannot be negative", f"use --steer {SHIPPED.steer:g}",
                        "steer")
    return x


def check_candidates(n, cap: int | None = None) -> int:
    """A number of candidates, 1 to MAX_CANDIDATES (the library's bound); cap: a tighter upper
    bound that the app's box and the CLI show their user (SHIPPED.max_candidates), named in the
    message as the CLI's --n."""
    x = _number(n, "number of candidates", int, "n_candidates")
    if cap is not None and x < 1:        # the range the user was shown is 1 to cap, not the library's
        raise UserError(f"number of candidates is {x}; it must be between 1 and {cap}",
                        f"use --n {SHIPPED.n_candidates}", "n_candidates")
    if cap is not None and x > cap:
        raise UserError(f"number of candidates is {x}; a run draws at most {cap} candidates",
                        f"give --n {cap} or fewer (or several runs, each with its own --seed)", "n_candidates")
    if not 1 <= x <= MAX_CANDIDATES:
        raise UserError(f"number of candidates is {x}; it must be between 1 and {MAX_CANDIDATES}",
                        f"use --n {SHIPPED.n_candidates}", "n_candidates")
    return x


def check_atoms(n) -> int:
    x = _number(n, "number of atoms", int, "n_atoms")
    if not 1 <= x <= MAX_ATOMS:
        raise UserError(f"number of atoms is {x}; the model makes cells of 1 to {MAX_ATOMS} atoms",
                        f"use --n-atoms {SHIPPED.n_atoms}", "n_atoms")
    return x


def check_strength(s) -> float:
    x = _number(s, "template strength", float, "strength")
    if not 0.0 < x <= 1.0:
        raise UserError(f"template strength is {x:g}; it must be in (0, 1]", f"use --strength {SHIPPED.strength:g}",
                        "strength")
    return x


def check_knobs(shift, scale, smear) -> tuple[float, float, float]:
    """The target's knobs (--target-shift EV, --target-scale X, --target-smear EV), each within the
    range the app's sliders allow (dos.SHIFT_RANGE_EV, SCALE_RANGE, SMEAR_RANGE_EV)."""
    out = []
    for value, flag, (lo, hi), unit in ((shift, "target-shift", dosmod.SHIFT_RANGE_EV, " eV"),
                                        (scale, "target-scale", dosmod.SCALE_RANGE, ""),
                                        (smear, "target-smear", dosmod.SMEAR_RANGE_EV, " eV")):
        x = _number(value, f"--{flag}", float, flag.replace("-", "_"))
        if not lo <= x <= hi:
            raise UserError(f"--{flag} {x:g} is outside {lo:g} to {hi:g}{unit}", f"give --{flag} within it",
                            flag.replace("-", "_"))
        out.append(x)
    return out[0], out[1], out[2]


def check_top_up(s) -> float:
    x = _number(s, "top-up", float, "top_up")
    if not 0.0 <= x <= 1.0:
        raise UserError(f"top-up is {x:g}; it must be in [0, 1] (0: never draw a second batch)",
                        f"use --top-up {SHIPPED.top_up:g}", "top_up")
    return x


def check_window(window) -> tuple[float, float] | None:
    """None (the whole grid) or the (lo, hi) eV where the target is known (dos.check_window)."""
    if window is None:
        return None
    try:
        return dosmod.check_window(window)
    except ValueError as exc:
        raise UserError(str(exc), f"give two energies between {dosmod.EMIN:g} and {dosmod.EMAX:g} eV, "
                        f"at least {dosmod.MIN_SPAN_EV:g} eV apart (--window LO HI), or none for the whole grid",
                        "window") from None


def check_seed(seed) -> int:
    x = _number(seed, "seed", int, "seed")
    if not 0 <= x < 2**31:
        raise UserError(f"seed is {x}; it must be between 0 and 2^31 - 1", "use --seed 0", "seed")
    return x


def check_dft_top(n) -> int:
    """How many top candidates get a DFT check after ranking (0: none)."""
    return _ranged(n, "number of DFT checks", 0, MAX_DFT_TOP, f"use --top {SHIPPED.dft_top}", "dft_top")


def check_rounds(n) -> int:
    """How many further rounds grow from the best DFT check."""
    return _ranged(n, "number of further rounds", 0, SHIPPED.max_rounds, f"give --rounds 0 to {SHIPPED.max_rounds}",
                   "dft_rounds")


def check_n_seeds(n) -> int:
    """Seeded mode: how many known structures to grow from (Request.check says the same)."""
    return _ranged(n, "number of known structures to grow from", 1, 10, "seed from 1 to 10 known structures (--seeds)",
                   "n_seeds")


SEED_ORDERS = ("mae", "cosine")


def check_seed_by(by) -> str:
    """Seeded mode: the order the seeds are searched in (the site search's "mae" or "cosine")."""
    if by not in SEED_ORDERS:
        raise UserError(f"seeds cannot be chosen by {by!r}", "choose mae or cosine (--seed-by)", "seed_by")
    return by


def check_seed_above(x) -> float | None:
    """Seeded mode: the DFT cosine a known seed must beat (None: any), a number from 0 to 1."""
    if x is None:
        return None
    v = _number(x, "cosine to beat", float, "seed_above")
    if not 0.0 <= v <= 1.0:
        raise UserError(f"the cosine to beat is {v}", "give a cosine from 0 to 1", "seed_above")
    return v


def check_seed_mae_at_most(x) -> float | None:
    """Seeded mode: the DFT MAE a known seed must not exceed (None: any), in states/eV, >= 0."""
    if x is None:
        return None
    v = _number(x, "MAE bound", float, "seed_mae_at_most")
    if v < 0:
        raise UserError(f"the MAE bound is {v}", "give an MAE of at least 0 states/eV", "seed_mae_at_most")
    return v


CONDITIONED_MODES = ("masked", "fixed_type", "template")    # modes whose own atoms carry the target


def check_conditioned(mode: str, cond_sites) -> list[int]:
    """A conditioned mode needs at least one atom that carries the target."""
    if mode in CONDITIONED_MODES and not list(cond_sites or []):
        raise UserError("no atom carries a target DOS",
                        "condition at least one atom (or use unconditional mode)", "cond_sites")
    return [int(i) for i in cond_sites or []]


def check_fixed_elements(fixed: dict) -> dict:
    """Chosen elements: known ones the DFT recipe can calculate (sampling.modes decides which)."""
    from dosmatgen_core.sampling.modes import element_number   # here: it loads torch
    one = len({str(el) for el in (fixed or {}).values()}) == 1    # one element for all: no atom to name
    for i, el in (fixed or {}).items():
        try:
            element_number(el)
        except ValueError as exc:
            fix = "give an element symbol such as Ni" if "unknown element" in str(exc) else ""
            raise UserError(f"{exc}" if one else f"atom {i}: {exc}", fix, "fixed") from None
    return fixed


def request_errors(values: dict, cap: int | None = None) -> list[UserError]:
    """Every problem of a generation request's values (keyword arguments of `Request`), in the
    order a form shows them; [] when all are fine. Request.check raises the first; a form shows
    each beside its own input (request_problems). cap: the most candidates a run may draw, where
    tighter than the library's bound (the app's and the CLI's SHIPPED.max_candidates)."""
    mode = values.get("mode")
    todo = [("n_seeds", check_n_seeds), ("seed_by", check_seed_by), ("seed_above", check_seed_above),
            ("seed_mae_at_most", check_seed_mae_at_most), ("top_up", check_top_up)] \
        if mode == "seeded" else []
    todo += [("strength", check_strength)] if mode in ("seeded", "template") else []
    todo += [("n_atoms", check_atoms), ("cond_sites", lambda c: check_conditioned(mode, c)),
             ("fixed", check_fixed_elements), ("n_candidates", lambda n: check_candidates(n, cap)), ("guidance", check_guidance),
             ("steps", check_steps), ("seed", check_seed), ("particles", check_particles), ("steer", check_steer),
             ("window", check_window), ("dft_top", check_dft_top), ("dft_rounds", check_rounds)]
    out = []
    for field, check in todo:
        if field not in values:
            continue
        try:
            check(values[field])
        except UserError as exc:
            exc.field = exc.field or field
            out.append(exc)
    return out


def request_problems(values: dict) -> list[tuple[str, str]]:
    """request_errors as (field, one line) pairs, for a form. values may also hold the form's
    `dft_top` and `dft_rounds` (what follows the run, not part of it). A fix that names a
    command-line flag is the CLI's: the form says what is wrong beside the input."""
    return [(exc.field, exc.what if "--" in exc.fix else str(exc))
            for exc in request_errors(values, cap=SHIPPED.max_candidates)]


def check_device(name: str) -> str:
    """The torch device `name` resolves to, after a tiny tensor operation on it succeeded."""
    import torch  # here, not at the top: `dosmatgen --help` should not wait for torch
    name = str(name or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' was asked for, but this machine has no working CUDA GPU",
                        "use --device cpu (or auto)", field="device")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise UserError(f"unknown device '{name}'", "use --device auto, cpu or cuda", field="device") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise UserError(f"device '{name}' is not supported here", "use --device auto, cpu or cuda", field="device")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device '{name}' does not exist; this machine has {torch.cuda.device_count()} GPU(s)",
                        "use --device cuda:0 (or cpu)", field="device")
    try:
        x = torch.ones(2, device=dev)
        ok = float((x + x).sum().cpu()) == 4.0
    except Exception as exc:   # a driver or runtime failure: the device cannot be used
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"device '{name}' does not work ({first[:120]})", "use --device cpu", field="device") from None
    if not ok:
        raise UserError(f"device '{name}' computes wrong results", "use --device cpu", field="device")
    return name


# ---- files -----------------------------------------------------------------------------------

def check_store_path(path) -> Path:
    """The run store can be created or written there, with room on the disk."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserError(f"run store {p} is a directory", f"give a file path, e.g. --runs {p / 'runs.db'}")
    folder = p.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent     # the first existing folder: the store's folders are made there
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(f"cannot write the run store's folder {folder}", "choose a writable place with --runs PATH")
    if p.exists() and not os.access(p, os.R_OK | os.W_OK):
        raise UserError(f"run store {p} is read-only", "make it writable or choose another file with --runs PATH")
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE_BYTES:
        raise UserError(f"only {free / 2**20:.0f} MB free on the disk of {folder}",
                        f"free at least {MIN_FREE_BYTES // 2**20} MB or choose another place with --runs PATH")
    return p


def read_input_file(path, what: str, limit: int) -> bytes:
    """A user's file as bytes, refused (before reading it all) when missing, a folder or too big."""
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(f"{what} {p} not found", "check the path")
    if p.is_dir():
        raise UserError(f"{what} {p} is a directory", "give a file")
    size = p.stat().st_size
    if size > limit:
        raise UserError(f"{what} {p} is {size / 2**20:.1f} MB; at most {limit / 2**20:.0f} MB is read",
                        "trim the file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {what} {p} ({exc.strerror or exc})", "check its permissions") from None


def _text(data: bytes, source: str) -> str:
    if b"\x00" in data:
        raise UserError(f"{source}: a binary file, not a text structure file", "give a CIF or POSCAR file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        try:
            return data.decode("latin-1")
        except UnicodeDecodeError:
            raise UserError(f"{source}: not text", "give a CIF or POSCAR file") from None


_CIF_LINE = re.compile(rb"^\s*(data_|_cell_length_a|loop_)", re.MULTILINE)


def structure_format(path, data: bytes | None = None) -> str:
    """'cif' or 'poscar', from the file name (POSCAR, CONTCAR, *.vasp, *.poscar are POSCARs); for
    any other name, from the content when it is given (a CIF has a data_ block or cell tags; anything
    else is read as a POSCAR): an upload named 'structure.txt' or 'Al2AsP' is either."""
    name = Path(path).name.lower()
    if name.endswith(".cif"):
        return "cif"
    if name.startswith(("poscar", "contcar")) or name.endswith((".vasp", ".poscar")):
        return "poscar"
    if data is not None:
        return "cif" if _CIF_LINE.search(data[:65536]) else "poscar"
    raise UserError(f"{Path(path).name}: cannot tell the structure format from the name",
                    "name a CIF *.cif and a POSCAR POSCAR or *.vasp")


def read_structure_file(path) -> Structure:
    """A CIF or POSCAR file, read in file order (structures.read_structure) and checked."""
    data = read_input_file(path, "structure file", MAX_UPLOAD_BYTES)
    return read_structure_bytes(data, Path(path).name)


def read_structure_bytes(data: bytes, name: str, fmt: str | None = None) -> Structure:
    """A structure file's bytes (an upload), checked as read_structure_file checks a path: every
    message starts with `name`. fmt: 'cif' or 'poscar' (default: from the name, else the content)."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise UserError(f"{name}: {len(data) / 2**20:.1f} MB; at most {MAX_UPLOAD_BYTES / 2**20:.0f} MB is read",
                        "trim the file")
    text, fmt = _text(data, name), fmt or structure_format(name, data)
    # here, for files people give, not in read_structure: the 18k MP tables would parse twice
    if fmt == "cif" and (unknown := cif_unknown_symbols(text)):
        raise UserError(f"{name}: unknown element{'s' * (len(unknown) > 1)} {', '.join(repr(u) for u in unknown)} "
                        "in _atom_site_type_symbol", "write each as the periodic table does (Fe, O), a charge "
                        "after it if any (Fe3+)")
    try:
        s = read_structure(text, fmt, source=name, strict_order=True)   # a file's order is its sites' numbers
    except StructureError as exc:
        if fmt == "cif" and not cif_missing_tags(text):
            # pymatgen refuses atoms on one spot without saying so; a missing cell tag reads as a
            # flat cell there, and the reader's "it lacks _cell_length_b" says more
            _refuse_overlap_ase(text, name)
        raise UserError(str(exc), "check the file (it must be an ordered CIF or POSCAR)") from None
    return check_structure(s, name)


def _refuse_overlap_ase(cif: str, source: str) -> None:
    """A flat cell, or two listed sites on one spot: both readers merge or refuse them without
    saying so, so the file's own cell and atom-site loop (before symmetry is applied) are checked."""
    try:
        block = next(iter(parse_cif(io.StringIO(cif))))
        frac = np.array([block.get(f"_atom_site_fract_{k}") for k in "xyz"], float).T
        cell = np.asarray(block.get_cell().array, float)
        names = block.get("_atom_site_type_symbol") or block.get("_atom_site_label")
    except Exception:
        return
    if frac.ndim != 2 or len(frac) < 1:
        return
    vol = abs(float(np.linalg.det(cell)))
    if not np.isfinite(vol) or vol / len(frac) < MIN_VOLUME_PER_ATOM:
        raise UserError(f"{source}: degenerate cell ({vol:.3g} Å³ for {len(frac)} listed atoms)",
                        "check the lattice parameters")
    if len(frac) < 2:
        return
    d = frac[:, None, :] - frac[None, :, :]
    d = np.linalg.norm((d - np.round(d)) @ cell, axis=-1)
    np.fill_diagonal(d, np.inf)
    i, j = np.unravel_index(int(np.argmin(d)), d.shape)
    if d[i, j] < MIN_SEPARATION:
        raise UserError(f"{source}: atoms {i} ({names[i]}) and {j} ({names[j]}) are {d[i, j]:.2f} Å apart, "
                        f"closer than {MIN_SEPARATION} Å", "remove the duplicate atom or fix its coordinates")


def is_structure_path(text: str) -> bool:
    """Does --ref/--template name a file rather than a database id?"""
    p = Path(text).expanduser()
    return p.exists() or p.suffix.lower() in (".cif", ".vasp", ".poscar") or \
        p.name.lower().startswith(("poscar", "contcar")) or os.sep in str(text)


# ---- structures ------------------------------------------------------------------------------

def check_structure(s: Structure, source: str = "structure") -> Structure:
    """Known elements, full occupancy, a cell with volume, at most MAX_UPLOAD_ATOMS atoms, and
    no two atoms (periodic images included) closer than MIN_SEPARATION."""
    if len(s) == 0:
        raise UserError(f"{source}: the structure has no atoms", "give a structure with atoms")
    if len(s) > MAX_UPLOAD_ATOMS:
        raise UserError(f"{source}: {len(s)} atoms; at most {MAX_UPLOAD_ATOMS} are read", "give a smaller cell")
    if not s.is_ordered:
        raise UserError(f"{source}: partial occupancy", "give an ordered structure (each site one element)")
    for site in s:
        sym = getattr(site.specie, "symbol", str(site.specie))
        if sym in ("X", "Xx") or not getattr(site.specie, "Z", 0):
            raise UserError(f"{source}: unknown element '{sym}'", "use element symbols H to Pu")
    m = np.asarray(s.lattice.matrix, float)
    vol = abs(float(np.linalg.det(m)))
    if not np.all(np.isfinite(m)) or vol / len(s) < MIN_VOLUME_PER_ATOM:
        raise UserError(f"{source}: degenerate cell ({vol:.3g} Å³ for {len(s)} atoms)",
                        "check the lattice parameters")
    d = _closest_pair(s)
    if d is not None and d[0] < MIN_SEPARATION:
        dist, i, j = d
        what = (f"atom {i} ({s[i].specie}) is {dist:.2f} Å from its own periodic image" if i == j else
                f"atoms {i} ({s[i].specie}) and {j} ({s[j].specie}) are {dist:.2f} Å apart")
        raise UserError(f"{source}: {what}, closer than {MIN_SEPARATION} Å",
                        "remove the duplicate atom or fix its coordinates")
    return s


def _closest_pair(s: Structure):
    """(distance, i, j) of the closest two atoms, periodic images included (i == j: an atom and
    its own image)."""
    cut = 2 * MIN_SEPARATION
    ii, jj, _, dd = s.get_neighbor_list(cut)
    if len(dd) == 0:
        return None
    k = int(np.argmin(dd))
    return float(dd[k]), int(ii[k]), int(jj[k])


def check_site(site, n_sites: int, source: str) -> int:
    k = _number(site, "site", int)
    if not 0 <= k < n_sites:
        raise UserError(f"site {k} does not exist in {source}", f"use --site 0..{n_sites - 1}")
    return k


def store_fallback_dir(store_path) -> Path:
    """Where a run goes when its store cannot be written: beside the store, else the temp dir."""
    folder = Path(store_path).expanduser().parent
    return folder if folder.is_dir() and os.access(folder, os.W_OK | os.X_OK) else Path(tempfile.gettempdir())

