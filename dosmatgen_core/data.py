"""Training data: every known structure, with DFT site DOS where a label exists.

Structures come from the shared MP tables (unlabelled) and from the label shards (labelled; their
own Niggli cell and site order). Lattices are put in the standard orientation (a along x, b in
the xy plane) from their cell parameters, so only the cell shape is learnt, not its rotation.
A parsed copy is cached under data/cache/ (git-ignored), keyed by the inputs' sizes and dates.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from ase.geometry import cell_to_cellpar, cellpar_to_cell

from . import dos as dosmod
from .labelling import iter_label_lines
from .model.diffusion import Batch
from .structures import MAX_ATOMS, atoms_from_cif, iter_mp_csv, read_structure, StructureError


@dataclass
class Entry:
    material_id: str
    z: np.ndarray           # (N,)
    frac: np.ndarray        # (N, 3)
    lattice: np.ndarray     # (3, 3), standard orientation
    site_dos: np.ndarray | None   # (N, 400) raw states/eV, or None


def standard_lattice(cell: np.ndarray) -> np.ndarray:
    return cellpar_to_cell(cell_to_cellpar(np.asarray(cell)))


def entry_from_atoms(mid: str, atoms, site_dos=None) -> Entry:
    return Entry(mid, np.array(atoms.numbers, dtype=np.int64), np.mod(atoms.get_scaled_positions(wrap=True), 1.0),
                 standard_lattice(atoms.cell.array), None if site_dos is None else np.asarray(site_dos, np.float32))


def is_validation(material_id: str, fraction: float = 0.05) -> bool:
    """A fixed, hash-based split: the same ids are held out in every run."""
    return (zlib.crc32(material_id.encode()) % 10000) < fraction * 10000


def load_labelled(shard_dirs: Iterable[str | Path]) -> list[Entry]:
    out = {}
    for _, d in iter_label_lines(shard_dirs):
        if "failed" in d:
            continue
        atoms = atoms_from_cif(d["cif"])
        if len(atoms) > MAX_ATOMS:
            continue
        out[d["material_id"]] = entry_from_atoms(d["material_id"], atoms, d["site_dos"])
    return [out[k] for k in sorted(out)]


def load_unlabelled(csv_paths: Iterable[str | Path], cache_dir: str | Path | None = None) -> list[Entry]:
    """All parseable, ordered structures of ≤ 20 atoms from the MP tables (cached)."""
    csv_paths = [Path(p) for p in csv_paths if Path(p).exists()]
    key = hashlib.sha256("|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in csv_paths).encode()).hexdigest()[:16]
    cache = Path(cache_dir) / f"mp-{key}.npz" if cache_dir else None
    if cache and cache.exists():
        with np.load(cache, allow_pickle=False) as d:   # each d[key] reads the array anew: read once
            ids, offs, z, frac, lat = (d[k] for k in ("ids", "offsets", "z", "frac", "lattice"))
        return [Entry(str(mid), z[a:b], frac[a:b], lat[i], None)
                for i, (mid, a, b) in enumerate(zip(ids, offs[:-1], offs[1:]))]
    from .structures import niggli_atoms
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
    if cache:
        cache.parent.mkdir(parents=True, exist_ok=True)
        offs = np.cumsum([0] + [len(e.z) for e in entries])
        np.savez(cache, ids=np.array([e.material_id for e in entries]), offsets=offs,
                 z=np.concatenate([e.z for e in entries]), frac=np.concatenate([e.frac for e in entries]),
                 lattice=np.stack([e.lattice for e in entries]))
    return entries


@lru_cache(maxsize=1)
def mp_structures() -> tuple[tuple[str, "Structure"], ...]:
    """(material_id, pymatgen Structure) of every usable structure in the shared MP tables, built
    once per process: novelty checks and the stability hull both look things up in it."""
    from pymatgen.core import Structure

    from .cli import MP_CSVS
    root = Path(__file__).resolve().parent.parent
    return tuple((e.material_id, Structure(e.lattice, [int(z) for z in e.z], e.frac))
                 for e in load_unlabelled(MP_CSVS, cache_dir=root / "data" / "cache"))


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


def collate(entries: list[Entry], mean: np.ndarray, std: np.ndarray) -> Batch:
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
            dos[o:o + n] = standardise(e.site_dos, mean, std)
            has[o:o + n] = 1
        o += n
    return Batch(torch.from_numpy(z), torch.from_numpy(frac), torch.from_numpy(lat),
                 torch.from_numpy(batch).long(), torch.from_numpy(dos), torch.from_numpy(has))
