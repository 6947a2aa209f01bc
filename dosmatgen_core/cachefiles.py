"""Arrays derived from slow sources (the parsed MP tables, the site index of a reference db), kept
on disk under CACHE_DIR as `<kind>-<source>-<version>.npz`.

`source` names what the arrays were derived from (a file, a set of files) and `version` that
source's state, so a new version of one source replaces its old file instead of piling up beside
it: caches keyed by version alone had reached 850 MB of stale copies. Files are written whole or
not at all, so a process reading while another writes never sees half a file.
"""
from __future__ import annotations

import hashlib
import os
import re
import tempfile
import zipfile
from pathlib import Path

import numpy as np


def digest(*parts: str | bytes, n: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
        h.update(b"\0")
    return h.hexdigest()[:n]


def files_digest(paths, n: int = 16) -> str:
    """The files' contents: unlike a size and date, it survives a copy or a fresh mount (each
    session's shared tables come with new dates, and a date key had every first run parse the 18k MP
    structures again: 150 s on 2 cores)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:n]


def cache_path(cache_dir: str | Path, kind: str, source: str, version: str) -> Path:
    return Path(cache_dir) / f"{kind}-{source}-{version}.npz"


def save_npz(path: Path, **arrays) -> bool:
    """Write path whole (a temporary file of this writer's own, then renamed: two processes may
    build one cache at once), then remove what it replaces (stale_files). False where the cache
    cannot be written: that costs a rebuild next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, **arrays)
            os.chmod(tmp, 0o644)        # mkstemp's 0600 would keep a shared install's cache from its other users
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    for old in stale_files(path):
        try:
            old.unlink()
        except OSError:
            pass
    return True


def load_npz(path: Path, keys) -> dict | None:
    """The arrays of a cache file, or None where it is missing or unreadable (cut short by a full
    disk, or not a cache at all): the caller rebuilds it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def stale_files(path: Path) -> list[Path]:
    """The files that path replaces: the same kind and source at another version, and the kind's
    files from before sources were named (`<kind>-<16 hex>.npz`, whose source is unknown)."""
    m = re.fullmatch(r"(?P<kind>[a-z-]+?)-(?P<source>[0-9a-f]{8})-(?P<version>[0-9a-f]{16})\.npz", path.name)
    if not m:
        return []
    kind, source = m["kind"], m["source"]
    same = re.compile(rf"{re.escape(kind)}-(?:{source}-)?[0-9a-f]{{16}}\.npz")
    return sorted(p for p in path.parent.glob(f"{kind}-*.npz") if p != path and same.fullmatch(p.name))
