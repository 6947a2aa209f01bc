"""Training data: every known structure, with DFT site DOS where a label exists.

Structures come from the shared MP tables (unlabelled) and from the label shards (labelled; their
own Niggli cell and site order). Lattices are put in the standard orientation (a along x, b in
the xy plane) from their cell parameters, so only the cell shape is learnt, not its rotation.
A parsed copy is cached under data/cache/ (git-ignored), keyed by the inputs' sizes and dates.
"""
from __future__ import annotations

import json
import threading
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
import torch

from dosmatgen_core import cachefiles
from dosmatgen_core import dos as dosmod
from dosmatgen_core.model.diffusion import Batch
from dosmatgen_core.paths import CACHE_DIR, MP_CSVS, missing_mp_tables

if TYPE_CHECKING:       # pymatgen itself is imported where needed (see below)
    from pymatgen.core import Structure

# ASE, pymatgen and the label shards are imported where they are needed: a training pack
# (save_pack / load_pack) lets a machine with numpy and torch alone train the models.


@dataclass
class Entry:
    material_id: str
    z: np.ndarray           # (N,)
    frac: np.ndarray        # (N, 3)
    lattice: np.ndarray     # (3, 3), standard orientation
    site_dos: np.ndarray | None   # (N, 400) raw states/eV, or None


def standard_lattice(cell: np.ndarray) -> np.ndarray:
    from ase.geometry import cell_to_cellpar, cellpar_to_cell
    return cellpar_to_cell(cell_to_cellpar(np.asarray(cell)))


def entry_from_atoms(mid: str, atoms, site_dos=None) -> Entry:
    return Entry(mid, np.array(atoms.numbers, dtype=np.int64), np.mod(atoms.get_scaled_positions(wrap=True), 1.0),
                 standard_lattice(atoms.cell.array), None if site_dos is None else np.asarray(site_dos, np.float32))


# The predictor holds out 15 % of the labels, a superset of the generator's 5 % (same hash), so no
# held-out benchmark site was seen by either model.
PREDICTOR_HOLDOUT = 0.15


def is_validation(material_id: str, fraction: float = 0.05) -> bool:
    """A fixed, hash-based split: the same ids are held out in every run."""
    return (zlib.crc32(material_id.encode()) % 10000) < fraction * 10000


def label_half(labelled: list[Entry], half: str) -> list[Entry]:
    """One of two label-disjoint halves ("A" or "B"), for testing whether a model that learnt
    from one half agrees with one that learnt from the other (e.g. the DOS guide against the
    scorer). The crystals outside the predictor's hold-out split by a second hash; A also keeps
    the generator's validation crystals (the guide's validation set, never trained on) and B the
    predictor's whole hold-out band (the predictor holds it out itself). No held-out crystal is
    trained on by either half."""
    if half not in ("A", "B"):
        raise ValueError(f"a label half is A or B, not {half!r}")
    side = 0 if half == "A" else 1
    keep = []
    for e in labelled:
        band = is_validation(e.material_id, PREDICTOR_HOLDOUT)
        if band:
            take = is_validation(e.material_id) if half == "A" else True
        else:
            take = zlib.crc32((e.material_id + "/half").encode()) % 2 == side
        if take:
            keep.append(e)
    return keep


def load_labelled(shard_dirs: Iterable[str | Path]) -> list[Entry]:
    from dosmatgen_core.labels.labeller import iter_label_lines
    from dosmatgen_core.structures import MAX_ATOMS, atoms_from_cif
    out = {}
    for _, d in iter_label_lines(shard_dirs):
        if "failed" in d:
            continue
        atoms = atoms_from_cif(d["cif"])
        if len(atoms) > MAX_ATOMS:
            continue
        out[d["material_id"]] = entry_from_atoms(d["material_id"], atoms, d["site_dos"])
    return [out[k] for k in sorted(out)]


# the parsed tables' layout and rules (MAX_ATOMS, the Niggli cell): a change re-parses them
MP_CACHE_VERSION = "2"


def mp_cache_path(csv_paths: Iterable[str | Path], cache_dir: str | Path) -> Path:
    """Where load_unlabelled keeps these tables parsed: named by the files and keyed by their
    contents (cachefiles.files_digest), so a copy or a fresh mount of the same tables reuses it."""
    csv_paths = [Path(p) for p in csv_paths if Path(p).exists()]
    # named by the tables' folder and file names, not their full paths: mounted elsewhere, the same
    # tables are the same source
    return cachefiles.cache_path(cache_dir, "mp", cachefiles.digest(*(f"{p.parent.name}/{p.name}" for p in csv_paths), n=8),
                                 cachefiles.digest(MP_CACHE_VERSION, cachefiles.files_digest(csv_paths)))


def mp_structures_loaded() -> bool:
    """Whether this process holds the MP structures (mp_structures): parsed, even where the cache
    folder could not keep them."""
    return _mp_structures.cache_info().currsize > 0


def mp_tables_parsed(csv_paths: Iterable[str | Path] = MP_CSVS, cache_dir: str | Path = CACHE_DIR) -> bool:
    """Whether the MP tables are parsed on disk: else a process's first novelty check parses the
    18k structures (minutes on 2 cores; benchmarks/startup.py times it)."""
    return mp_cache_path(csv_paths, cache_dir).exists()


def load_unlabelled(csv_paths: Iterable[str | Path], cache_dir: str | Path | None = None) -> list[Entry]:
    """All parseable, ordered structures of ≤ 20 atoms from the MP tables (cached)."""
    csv_paths = [Path(p) for p in csv_paths if Path(p).exists()]
    cache = mp_cache_path(csv_paths, cache_dir) if cache_dir else None
    keys = ("ids", "offsets", "z", "frac", "lattice")
    if cache and cache.exists() and (d := cachefiles.load_npz(cache, keys)) is not None:
        ids, offs, z, frac, lat = (d[k] for k in keys)
        return [Entry(str(mid), z[a:b], frac[a:b], lat[i], None)
                for i, (mid, a, b) in enumerate(zip(ids, offs[:-1], offs[1:]))]
    from dosmatgen_core.structures import MAX_ATOMS, StructureError, iter_mp_csv, niggli_atoms, read_structure
    entries = []
    for path in csv_paths:
        for r in iter_mp_csv(path):
            try:
                s = read_structure(r["cif"], source=r["material_id"])
            except StructureError:
                continue
            if len(s) > MAX_ATOMS:
                continue
            entries.append(entry_from_atoms(r["material_id"], niggli_atoms(s)))
    entries.sort(key=lambda e: e.material_id)
    if cache and entries:
        offs = np.cumsum([0] + [len(e.z) for e in entries])
        cachefiles.save_npz(cache, ids=np.array([e.material_id for e in entries]), offsets=offs,
                            z=np.concatenate([e.z for e in entries]), frac=np.concatenate([e.frac for e in entries]),
                            lattice=np.stack([e.lattice for e in entries]))
    return entries


def label_shard_names(shard_dirs: Iterable[str | Path]) -> list[str]:
    from dosmatgen_core.labels.labeller import SHARD_GLOB
    return sorted({f.name for d in map(Path, shard_dirs)
                   for f in (sorted(d.glob(SHARD_GLOB)) if d.is_dir() else [d])})


# ---- training pack: every entry in one numpy file ---------------------------------------------

def save_pack(path: str | Path, labelled: list[Entry], unlabelled: list[Entry], meta: dict,
              atom_features: list[np.ndarray] | None = None) -> Path:
    """One compressed file with every training crystal (and the site DOS of the labelled ones):
    what a machine without ASE, pymatgen or the shared tables needs to train. atom_features: one
    (atoms, F) block per labelled crystal (CHGNet's, for a predictor that reads them on a machine
    without CHGNet)."""
    entries = labelled + unlabelled
    extra = {}
    if atom_features is not None:
        if len(atom_features) != len(labelled) or any(len(f) != len(e.z) for f, e in zip(atom_features, labelled)):
            raise ValueError("atom features: one row per atom of every labelled crystal")
        extra["atom_features"] = (np.concatenate(atom_features).astype(np.float32) if labelled
                                  else np.zeros((0, 0), np.float32))
    offs = np.cumsum([0] + [len(e.z) for e in entries])
    dos = np.concatenate([e.site_dos for e in labelled]).astype(np.float32) if labelled else np.zeros((0, dosmod.NPTS), np.float32)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, ids=np.array([e.material_id for e in entries]), offsets=offs,
                        z=np.concatenate([e.z for e in entries]).astype(np.int16),
                        frac=np.concatenate([e.frac for e in entries]).astype(np.float32),
                        lattice=np.stack([e.lattice for e in entries]).astype(np.float32),
                        n_labelled=np.array(len(labelled)), dos=dos,
                        meta=np.array(json.dumps(meta)), **extra)
    return path


def load_pack_features(path: str | Path) -> dict[str, np.ndarray] | None:
    """The labelled crystals' stored atom features by material id, or None when the pack has none."""
    with np.load(path, allow_pickle=False) as d:
        return _pack_features(d, path)


def _pack_features(d, path) -> dict[str, np.ndarray] | None:
    """load_pack_features on an open pack d."""
    if "atom_features" not in d.files:
        return None
    ids, offs, fea, n_lab = d["ids"], d["offsets"], d["atom_features"], int(d["n_labelled"])
    if len(fea) != offs[n_lab]:
        raise ValueError(f"{path}: atom feature block {fea.shape} does not match its {offs[n_lab]} labelled atoms")
    return {str(ids[i]): fea[offs[i]:offs[i + 1]] for i in range(n_lab)}


def load_pack(path: str | Path, features: bool = False) -> tuple:
    """(labelled, unlabelled, meta) as save_pack wrote them; features=True adds a fourth,
    load_pack_features' dict, from the same read of the file."""
    with np.load(path, allow_pickle=False) as d:
        ids, offs, z, frac, lat, dos = (d[k] for k in ("ids", "offsets", "z", "frac", "lattice", "dos"))
        n_lab, meta = int(d["n_labelled"]), json.loads(str(d["meta"]))
        if dos.shape[1:] != (dosmod.NPTS,) or len(dos) != offs[n_lab]:
            raise ValueError(f"{path}: site DOS block {dos.shape} does not match its {offs[n_lab]} labelled atoms")
        fea = _pack_features(d, path) if features else None
    out = [Entry(str(mid), z[a:b].astype(np.int64), frac[a:b].astype(np.float64), lat[i].astype(np.float64),
                 dos[a:b] if i < n_lab else None)
           for i, (mid, a, b) in enumerate(zip(ids, offs[:-1], offs[1:]))]
    return (out[:n_lab], out[n_lab:], meta, fea) if features else (out[:n_lab], out[n_lab:], meta)


_mp_lock = threading.Lock()


def mp_structures() -> tuple[tuple[str, "Structure"], ...]:
    """(material_id, pymatgen Structure) of every usable structure in the shared MP tables, built
    once per process: novelty checks and the stability hull both look things up in it. Threads
    wait for one build (the app's warm-up thread and a run's first novelty check)."""
    with _mp_lock:
        return _mp_structures()


@lru_cache(maxsize=1)
def _mp_structures() -> tuple[tuple[str, "Structure"], ...]:
    from pymatgen.core import Structure

    # an empty index would call everything novel and build hulls without MP's phases
    if missing := missing_mp_tables():
        raise FileNotFoundError(f"the Materials Project table(s) {', '.join(missing)} are missing "
                                "(put them there or set DOSMATGEN_SHARED)")

    return tuple((e.material_id, Structure(e.lattice, [int(z) for z in e.z], e.frac))
                 for e in load_unlabelled(MP_CSVS, cache_dir=CACHE_DIR))


def merge(labelled: list[Entry], unlabelled: list[Entry]) -> list[Entry]:
    """Labelled entries replace the unlabelled copy of the same material."""
    have = {e.material_id for e in labelled}
    return labelled + [e for e in unlabelled if e.material_id not in have]


# ---- DOS standardisation ---------------------------------------------------------------------

def dos_transform(g: np.ndarray) -> np.ndarray:
    """log1p compresses the sharp d-band peaks (up to ~10 states/eV) next to flat s-p tails."""
    return np.log1p(np.clip(g, 0, None))


def dos_stats(entries: list[Entry]) -> tuple[np.ndarray, np.ndarray]:
    rows = [dos_transform(e.site_dos) for e in entries if e.site_dos is not None]
    if not rows:
        return np.zeros(dosmod.NPTS, np.float32), np.ones(dosmod.NPTS, np.float32)
    a = np.concatenate(rows)
    return a.mean(0).astype(np.float32), (a.std(0) + 0.05).astype(np.float32)


def standardise(g: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((dos_transform(g) - mean) / std).astype(np.float32)


@dataclass(frozen=True)
class DOSAugment:
    """Training-time noise on the conditioning DOS, so the condition cannot be memorised as an
    exact fingerprint of one of the few hundred labelled crystals: a rigid shift of the energy
    axis (E_F of a generated crystal is never exactly the target's; smearing and k-points move it
    by ~0.1 eV) and a per-site amplitude scale (Löwdin charge sharing varies by some per cent)."""
    shift_ev: float = 0.0     # uniform in ±shift_ev
    scale: float = 0.0        # log-normal σ of the amplitude factor

    def active(self) -> bool:
        return self.shift_ev > 0 or self.scale > 0

    def __call__(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """g: (n, NPTS) site DOS of one crystal → augmented copy (each site shifted alike: E_F is
        a property of the crystal)."""
        out = g
        if self.shift_ev > 0:
            d = rng.uniform(-self.shift_ev, self.shift_ev)
            out = np.stack([dosmod.shift(row, d) for row in out])
        if self.scale > 0:
            out = out * np.exp(self.scale * rng.standard_normal((len(out), 1)))
        return out.astype(np.float32)


def collate(entries: list[Entry], mean: np.ndarray, std: np.ndarray, aug: DOSAugment | None = None,
            rng: np.random.Generator | None = None) -> Batch:
    z = np.concatenate([e.z for e in entries])
    frac = np.concatenate([e.frac for e in entries]).astype(np.float32)
    lat = np.stack([e.lattice for e in entries]).astype(np.float32)
    batch = np.concatenate([np.full(len(e.z), i) for i, e in enumerate(entries)])
    dos = np.zeros((len(z), dosmod.NPTS), np.float32)
    has = np.zeros(len(z), np.float32)
    o = 0
    for e in entries:
        n = len(e.z)
        if e.site_dos is not None:
            g = aug(e.site_dos, rng) if aug is not None and aug.active() else e.site_dos
            dos[o:o + n] = standardise(g, mean, std)
            has[o:o + n] = 1
        o += n
    return Batch(torch.from_numpy(z), torch.from_numpy(frac), torch.from_numpy(lat),
                 torch.from_numpy(batch).long(), torch.from_numpy(dos), torch.from_numpy(has))
