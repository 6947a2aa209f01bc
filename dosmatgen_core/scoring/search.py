"""Site-DOS search: the labelled sites whose DFT DOS is closest to a target curve.

The simplest honest answer to "which atom has this DOS?" is a lookup among the sites already
calculated; every generation method is measured against it. The index holds every labelled
site curve of the reference database as one float32 matrix, so a query is a few vectorised
passes: under 100 ms for 50k sites on one core (benchmarks/results/search.json).

Ranking by MAE alone rewards a flat curve for a spiky target (an H site scored MAE 0.16 at
cosine 0.15), so hits carry both, and `by="cosine"` ranks by shape.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from dosmatgen_core import cachefiles
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import CACHE_DIR

INDEX_VERSION = 1
MAX_SHIFT_EV = 1.0       # shift alignment looks this far either way along E − E_F
PREFILTER = 512          # with alignment, exact MAEs are computed for this many best-aligned sites
# per structure, a site of the same formula and element whose curve is this close (MAE, states/eV)
# to a better hit's is that structure again: the same candidate DFT-checked twice (from two draws
# that relaxed alike) is two labels but one structure
SAME_SITE_MAE = 0.01
# the closest known site's MAE (states/eV) splits targets by how well the labels already cover
# them: below the first edge a labelled near-twin exists, and the truth bench found new crystals
# come near it rather than closer (benchmarks/results/RESULTS.md, nineteenth session)
NEAR_TWIN_BINS = (0.15, 0.2)


def twin_bands() -> list[tuple[float, float]]:
    """The bands NEAR_TWIN_BINS cuts: [(0, 0.15), (0.15, 0.2), (0.2, inf)]."""
    edges = (0.0, *NEAR_TWIN_BINS, float("inf"))
    return list(zip(edges[:-1], edges[1:]))


def twin_band(mae: float) -> tuple[float, float]:
    """The band of twin_bands() that holds a closest known site `mae` states/eV away."""
    return next(b for b in twin_bands() if b[0] <= mae < b[1])


@dataclass(frozen=True)
class SiteHit:
    material_id: str
    formula: str
    site: int
    element: str
    n_atoms: int
    mae: float               # states/eV, at shift_ev
    cosine: float            # at shift_ev
    shift_ev: float          # the target was compared after shifting the site curve by this much

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SiteIndex:
    material_ids: np.ndarray     # (S,) str, per site
    formulas: np.ndarray         # (S,) str
    sites: np.ndarray            # (S,) int, the site's index in its structure (its DOS row)
    elements: np.ndarray         # (S,) str
    n_atoms: np.ndarray          # (S,) int
    curves: np.ndarray           # (S, NPTS) float32, states/eV

    def __len__(self) -> int:
        return len(self.sites)

    @classmethod
    def from_rows(cls, rows: list[tuple[str, str, list[str], np.ndarray]]) -> "SiteIndex":
        """rows: (material_id, formula, element per site, site DOS (N, NPTS)) per structure."""
        mids, forms, sites, els, nat, curves = [], [], [], [], [], []
        for mid, formula, symbols, dos_rows in rows:
            dos_rows = np.asarray(dos_rows, np.float32).reshape(-1, dosmod.NPTS)
            for i, g in enumerate(dos_rows):
                mids.append(mid)
                forms.append(formula)
                sites.append(i)
                els.append(symbols[i])
                nat.append(len(symbols))
                curves.append(g)
        return cls(np.array(mids, dtype=object), np.array(forms, dtype=object), np.array(sites, np.int32),
                   np.array(els, dtype=object), np.array(nat, np.int32),
                   np.array(curves, np.float32).reshape(-1, dosmod.NPTS))

    def search(self, target, top: int = 10, by: str = "mae", align_shift: bool = False,
               exclude: frozenset[str] | set[str] | tuple = (), element: str | None = None,
               per_structure: bool = False, window=None) -> list[SiteHit]:
        """The `top` sites closest to `target` (a curve on the model grid).

        by: "mae" (states/eV, smallest first) or "cosine" (shape, largest first).
        align_shift: compare each site also shifted by up to ±MAX_SHIFT_EV (a rigid band shift,
        e.g. a different E_F), keeping the shift of best cosine.
        exclude: material ids left out (a benchmark leaves out the target's own material).
        element: only sites of this element.
        per_structure: at most one hit (its best site) per material, e.g. symmetry-equal sites once,
        and one per structure labelled twice (same formula and element, curves within SAME_SITE_MAE).
        window: (lo, hi) eV, the energies the target is known on: MAE and cosine are taken there only
        (a shifted site brings its own states into the window from beside it).
        """
        if not isinstance(top, (int, np.integer)) or top < 1:
            raise ValueError(f"top must be a whole number >= 1, not {top!r}")
        if per_structure:
            want = top
            while True:
                hits = self.search(target, top=min(want * 8, len(self)), by=by, align_shift=align_shift,
                                   exclude=exclude, element=element, window=window)
                seen, out, kept = set(), [], []
                for h in hits:
                    if h.material_id in seen:
                        continue
                    seen.add(h.material_id)
                    curve = self.curves[self.row_of[h.material_id, h.site]]
                    if any(f == h.formula and e == h.element and float(np.abs(curve - c).mean()) < SAME_SITE_MAE
                           for f, e, c in kept):
                        continue
                    kept.append((h.formula, h.element, curve))
                    out.append(h)
                if len(out) >= top or want * 8 >= len(self):
                    return out[:top]
                want *= 8
        try:
            g = np.asarray(target, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"target DOS: expected {dosmod.NPTS} values on the model grid, "
                             f"not {type(target).__name__}") from None
        g = dosmod.validate_on_grid(g, name="target DOS").astype(np.float32)
        if by not in ("mae", "cosine"):
            raise ValueError(f"rank by 'mae' or 'cosine', not {by!r}")
        keep = None
        if exclude or element is not None:
            keep = np.ones(len(self), bool)
            if exclude:
                keep &= ~np.isin(self.structure_codes, [self.code_of[m] for m in exclude if m in self.code_of])
            if element is not None:
                keep &= self.elements == element
            if not keep.any():
                return []
        if window is not None:
            return self._search_window(g, top, by, align_shift, keep, window)
        # the ranking metric over every site (left-out sites ranked last), the other for the top only
        if align_shift:
            shifts, cos = _aligned_cosines(self.curves, g, self.norms)
            if keep is not None:
                cos = np.where(keep, cos, -np.inf)
            pre = _top(-cos, top if by == "cosine" else max(PREFILTER, top))
            moved = dict(zip(pre, _shift_many(self.curves[pre], shifts[pre])))
            maes = dict(zip(pre, np.abs(np.stack([moved[j] for j in pre]) - g).mean(1).tolist()))
            order = pre if by == "cosine" else sorted(maes, key=lambda j: (maes[j], j))[:top]
            hits = [self._hit(j, maes[j], dosmod.cosine(g, moved[j]), float(shifts[j] * _step())) for j in order]
        elif by == "mae":
            mae = _maes(self.curves, g)
            if keep is not None:
                mae = np.where(keep, mae, np.inf)
            order = _top(mae, top)
            hits = [self._hit(j, float(mae[j]), dosmod.cosine(g, self.curves[j]), 0.0) for j in order]
        else:
            cos = _cosines(self.curves, g, self.norms)
            if keep is not None:
                cos = np.where(keep, cos, -np.inf)
            order = _top(-cos, top)
            hits = [self._hit(j, float(np.abs(self.curves[j] - g).mean()), float(cos[j]), 0.0) for j in order]
        return [h for h, j in zip(hits, order) if keep is None or keep[j]]

    def _search_window(self, g, top: int, by: str, align_shift: bool, keep, window) -> list[SiteHit]:
        """search() on the window's grid points (a slice of the index: a view, no copy)."""
        sl = dosmod.window_slice(window)
        kmax = int(round(MAX_SHIFT_EV / _step())) if align_shift else 0
        if by == "mae" and not align_shift:
            score = _maes(self.curves[:, sl], g[sl])
            score = score if keep is None else np.where(keep, score, np.inf)
            shifts = np.zeros(len(self), np.int64)
        else:
            ks = np.arange(-kmax, kmax + 1, 4 if kmax else 1)
            shifts, cos = _window_cosines(self.curves, g, sl, ks)
            if kmax:     # the coarse pass's best, at every grid point
                pre = np.argsort(-cos, kind="stable")[:PREFILTER]
                shifts[pre], cos[pre] = _window_cosines(self.curves[pre], g, sl, np.arange(-kmax, kmax + 1))
            score = -(cos if keep is None else np.where(keep, cos, -np.inf))
        pre = _top(score, top if by == "cosine" or not align_shift else max(PREFILTER, top))
        moved = _shift_many(self.curves[pre], shifts[pre])[:, sl] if align_shift else self.curves[pre][:, sl]
        maes = np.abs(moved - g[sl]).mean(1)
        order = list(range(len(pre)))
        if by == "mae":
            order = sorted(order, key=lambda i: (float(maes[i]), pre[i]))
        order = order[:top]
        return [self._hit(pre[i], float(maes[i]), dosmod.cosine(g[sl], moved[i]), float(shifts[pre[i]] * _step()))
                for i in order if keep is None or keep[pre[i]]]

    def completed(self, target, window, exclude: frozenset[str] | set[str] | tuple = ()) -> np.ndarray:
        """A target known on window only, on the whole grid as the generator and the steering take
        it: completed outside the window by the closest known site over it (dos.complete), the
        lookup's guess for what the curve leaves out. exclude: materials not to take it from (a
        benchmark leaves out the target's own: it would hand the generator the answer)."""
        if window is None:
            return np.asarray(target, dtype=float).copy()
        h = self.search(target, top=1, exclude=exclude, window=window)[0]
        return dosmod.complete(target, window, self.curves[self.row_of[h.material_id, h.site]])

    @cached_property
    def norms(self) -> np.ndarray:
        return np.linalg.norm(self.curves, axis=1)

    @cached_property
    def row_of(self) -> dict[tuple[str, int], int]:
        """(material id, site) → its row."""
        return {(m, int(k)): j for j, (m, k) in enumerate(zip(self.material_ids.tolist(), self.sites.tolist()))}

    @cached_property
    def code_of(self) -> dict[str, int]:
        return {m: k for k, m in enumerate(dict.fromkeys(self.material_ids.tolist()))}

    @cached_property
    def structure_codes(self) -> np.ndarray:
        return np.array([self.code_of[m] for m in self.material_ids.tolist()], np.int32)

    def _hit(self, k: int, mae: float, cosine: float, shift: float) -> SiteHit:
        return SiteHit(str(self.material_ids[k]), str(self.formulas[k]), int(self.sites[k]), str(self.elements[k]),
                       int(self.n_atoms[k]), round(mae, 6), round(float(cosine), 6), round(shift, 4))


def _step() -> float:
    return float(dosmod.GRID[1] - dosmod.GRID[0])


def _top(score: np.ndarray, k: int) -> list[int]:
    """Indices of the k smallest scores, smallest first (ties by index: deterministic)."""
    k = min(k, len(score))
    part = np.argpartition(score, k - 1)[:k] if k < len(score) else np.arange(len(score))
    return [int(j) for j in part[np.lexsort((part, score[part]))]]


def _maes(curves: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Mean |curve − g| per row, in one scratch buffer (no temporaries the size of the index)."""
    buf = np.empty_like(curves)
    np.subtract(curves, g, out=buf)
    np.abs(buf, out=buf)
    return buf.sum(1) / curves.shape[1]


def _cosines(curves: np.ndarray, g: np.ndarray, norms: np.ndarray) -> np.ndarray:
    return (curves @ g) / np.maximum(norms * max(float(np.linalg.norm(g)), 1e-12), 1e-12)


def _shift_rows(curve: np.ndarray, k: int) -> np.ndarray:
    """The curve moved by k grid points (positive: to higher energy), zero-filled at the ends."""
    out = np.zeros_like(curve)
    if k > 0:
        out[k:] = curve[:-k]
    elif k < 0:
        out[:k] = curve[-k:]
    else:
        out[:] = curve
    return out


def _shift_many(curves: np.ndarray, ks: np.ndarray) -> np.ndarray:
    """_shift_rows for many rows at once (row i by ks[i] grid points)."""
    src = np.arange(curves.shape[1])[None, :] - np.asarray(ks)[:, None]
    inside = (src >= 0) & (src < curves.shape[1])
    return np.where(inside, np.take_along_axis(curves, np.clip(src, 0, curves.shape[1] - 1), axis=1), 0.0)


def _shift_cosines(curves: np.ndarray, g: np.ndarray, norms: np.ndarray, ks: np.ndarray):
    """Per site, the shift among ks (grid points) of best cosine with g, and that cosine: one
    matrix product against the target shifted the opposite way (shifting a site by +k compares
    like shifting the target by −k, up to the zero-filled ends)."""
    moved_targets = np.stack([_shift_rows(g, -int(k)) for k in ks])       # (K, NPTS)
    cos = (curves @ moved_targets.T) / np.maximum(norms[:, None] * np.linalg.norm(moved_targets, axis=1)[None, :], 1e-12)
    best = cos.argmax(1)
    return ks[best], cos[np.arange(len(curves)), best]


def _window_cosines(curves: np.ndarray, g: np.ndarray, sl: slice, ks: np.ndarray, chunk: int = 8192):
    """Per site, the shift among ks (grid points) whose moved curve has the best cosine with g on
    the window sl, and that cosine. Moved by k, a site's values on the window are its curve's on
    the window moved by −k (zero beyond the grid). So every shift's dot product is one column of
    curves @ T.T (T: the target's window placed at each −k), and every shift's norm one column of
    curves² @ M.T (M: ones there): two matrix products per chunk of sites, not a pass per shift."""
    n, g_norm = curves.shape[1], float(np.linalg.norm(g[sl]))
    best_k, best_c = np.zeros(len(curves), np.int64), np.full(len(curves), -np.inf)
    spans = [(int(k), max(sl.start - int(k), 0), min(sl.stop - int(k), n)) for k in ks]
    spans = [(k, a, b) for k, a, b in spans if b > a and g[a + k:b + k].any()]
    if not spans:
        return best_k, best_c
    moved, ones = np.zeros((len(spans), n), np.float32), np.zeros((len(spans), n), np.float32)
    for row, (k, a, b) in enumerate(spans):
        moved[row, a:b], ones[row, a:b] = g[a + k:b + k], 1.0
    shift_of = np.array([k for k, _, _ in spans], np.int64)
    for lo in range(0, len(curves), chunk):       # chunks bound the squares' scratch memory
        c = curves[lo:lo + chunk]
        cos = (c @ moved.T) / np.maximum(np.sqrt(np.maximum((c * c) @ ones.T, 0.0)) * g_norm, 1e-12)
        j = cos.argmax(1)          # the first best, in the order of ks, as a pass per shift would keep
        best_k[lo:lo + chunk], best_c[lo:lo + chunk] = shift_of[j], cos[np.arange(len(c)), j]
    return best_k, best_c


def _aligned_cosines(curves: np.ndarray, g: np.ndarray, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best shift within ±MAX_SHIFT_EV per site: a coarse pass (every 4th grid point, 0.2 eV) over
    all sites, then every grid point for the PREFILTER best: a tenth of the full product's cost."""
    kmax = int(round(MAX_SHIFT_EV / _step()))
    shifts, cos = _shift_cosines(curves, g, norms, np.arange(-kmax, kmax + 1, 4))
    pre = np.argsort(-cos, kind="stable")[:PREFILTER]
    fine_k, fine_c = _shift_cosines(curves[pre], g, norms[pre], np.arange(-kmax, kmax + 1))
    shifts[pre], cos[pre] = fine_k, fine_c
    return shifts, cos


# ---- the index of the shipped reference database ----------------------------------------------

def _db_state(db_url: str) -> tuple[str, str]:
    """The database's name (its resolved path, or the URL of one that is not a file) and its state
    (size and date: a rebuild costs 4 s, not worth hashing 110 MB at every page redraw)."""
    p = Path(db_url)
    if not p.exists():
        return db_url, cachefiles.digest(str(INDEX_VERSION), db_url)
    source, st = str(p.resolve()), p.stat()
    return source, cachefiles.digest(str(INDEX_VERSION), source, str(st.st_size), str(st.st_mtime_ns))


def index_path(db_url: str, cache_dir: str | Path) -> Path:
    """The site index's file: named by the database file and keyed by its state (_db_state), so a
    rebuilt database's index replaces the old one (cachefiles)."""
    source, state = _db_state(db_url)
    return cachefiles.cache_path(cache_dir, "site-index", cachefiles.digest(source, n=8), state)


_INDEXES: dict[str, SiteIndex] = {}


def site_index(db_url: str, cache_dir: str | Path | None = CACHE_DIR) -> SiteIndex:
    """Every labelled site of the reference database, built once per database file and cached
    (in memory, and as an .npz under cache_dir keyed by the file's size and date)."""
    key = _db_state(str(db_url))[1]
    if key in _INDEXES:
        return _INDEXES[key]
    path = index_path(str(db_url), cache_dir) if cache_dir else None
    keys = ("material_ids", "formulas", "sites", "elements", "n_atoms", "curves")
    if path is not None and path.exists() and (z := cachefiles.load_npz(path, keys)) is not None:
        index = SiteIndex(z["material_ids"].astype(object), z["formulas"].astype(object), z["sites"],
                          z["elements"].astype(object), z["n_atoms"], z["curves"])
    else:
        db = open_db(str(db_url))
        rows = [(row.material_id, row.chem_formula, list(row.symbols), np.asarray(row.data["site_dos"]))
                for row in db.db.select()]
        index = SiteIndex.from_rows(sorted(rows, key=lambda r: r[0]))
        if path is not None:
            # a read-only cache costs a rebuild next time, nothing else
            cachefiles.save_npz(path, material_ids=index.material_ids.astype(str), formulas=index.formulas.astype(str),
                                sites=index.sites, elements=index.elements.astype(str), n_atoms=index.n_atoms,
                                curves=index.curves)
    _INDEXES[key] = index
    return index
