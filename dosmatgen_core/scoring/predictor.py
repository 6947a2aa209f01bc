"""Site-DOS forward model: structure → predicted DOS of every site (states/eV on the model grid).

A CGCNN-style graph network over neighbours within 6 Å (periodic images included), with atoms
described by physical element features (group, period, electronegativity, valence shells,
radius) plus a learned element embedding, so that sparse labels generalise across chemistry.
Used to score generated candidates; its held-out error is the floor such scores are read against.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from dosmatgen_core import dos as dosmod
from dosmatgen_core.model.checkpoint import building, read_checkpoint

# pymatgen, ASE, CHGNet (scoring.stability) and structures are imported where they are needed:
# `dosmatgen train` and train-predictor import this module when they train from a pack on a
# machine with numpy and torch alone (training/dataset.py explains).

CUTOFF = 6.0
N_RBF = 48
N_Z = 100
FAMILIES = ("s-block", "p-block", "d-block", "f-block")


@lru_cache(maxsize=1)
def element_table() -> np.ndarray:
    """(101, F) physical features per Z from pymatgen (row 0 unused). A model keeps its own copy
    as a buffer, so loading one (or training from a pack) needs no pymatgen."""
    from pymatgen.core import Element
    rows = [np.zeros(13, np.float32)]
    for z in range(1, N_Z + 1):
        e = Element.from_Z(z)
        try:
            x = float(e.X) if not math.isnan(float(e.X)) else 0.0
        except Exception:
            x = 0.0
        shells = {"s": 0, "p": 0, "d": 0, "f": 0}
        try:
            full = e.full_electronic_structure
            nmax = max(n for n, _, _ in full)
            for n, l, occ in full:
                # valence: outermost s/p, the d one shell in, the f two shells in
                if (l in "sp" and n == nmax) or (l == "d" and n >= nmax - 1) or (l == "f" and n >= nmax - 2):
                    shells[l] += occ
        except Exception:
            pass
        radius = float(e.atomic_radius or 1.5)
        group = float(e.group or 0)
        row = float(e.row or 0)
        block = {"s": 0, "p": 1, "d": 2, "f": 3}.get(e.block, 0)
        oh = np.zeros(4, np.float32)
        oh[block] = 1
        rows.append(np.concatenate([[z / 100, group / 18, row / 7, x / 4, shells["s"] / 2, shells["p"] / 6,
                                     shells["d"] / 10, shells["f"] / 14, radius / 3], oh]).astype(np.float32))
    return np.stack(rows)


def family(z: int, table: np.ndarray) -> str:
    """s-, p-, d- or f-block, read off the block columns of the element features."""
    return FAMILIES[int(np.argmax(table[int(z), -4:]))]


@dataclass
class Graph:
    z: torch.Tensor        # (N,)
    src: torch.Tensor      # (E,)
    dst: torch.Tensor      # (E,)
    dist: torch.Tensor     # (E,)
    batch: torch.Tensor    # (N,)
    n_graphs: int
    fea: torch.Tensor | None = None   # (N, 64) CHGNet atom features, for models that read them

    def to(self, device) -> "Graph":
        return Graph(self.z.to(device), self.src.to(device), self.dst.to(device), self.dist.to(device),
                     self.batch.to(device), self.n_graphs, None if self.fea is None else self.fea.to(device))


CHGNET_FEA = 64


def chgnet_atom_features(crystals) -> list[np.ndarray]:
    """Per-atom features of the pretrained CHGNet (its last atom layer, 64 numbers per atom): a
    description of each atom's environment learnt from ~1.5 M DFT calculations (energies, forces,
    magnetic moments), which a few hundred DOS labels could never teach."""
    from pymatgen.core import Structure

    from dosmatgen_core.scoring.stability import chgnet
    crystals = list(crystals)
    if not crystals:
        return []
    model = chgnet()
    structs = [Structure(np.asarray(lat), [int(z) for z in numbers], np.mod(frac, 1.0))
               for numbers, frac, lat in crystals]
    conv = model.graph_converter
    before = conv.on_isolated_atoms          # the CHGNet instance is shared with stability checks
    conv.set_isolated_atom_response("ignore")   # sparse candidates still get features
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            out = model.predict_structure(structs, task="e", return_atom_feas=True, batch_size=32)
    finally:
        conv.set_isolated_atom_response(before)
    out = [out] if isinstance(out, dict) else out
    return [np.asarray(o["atom_fea"], np.float32).reshape(len(s), CHGNET_FEA) for o, s in zip(out, structs)]


def neighbour_graph(numbers, frac, lattice, cutoff: float = CUTOFF):
    """Periodic neighbour list (i, j, d) within the cutoff; self-images count as neighbours. The
    cell is Minkowski-reduced first: the same crystal and the same neighbours, but ASE bins a
    skewed cell in millions of bins (a rough draw with a 179.6° angle and 55 Å edges took 200 s)."""
    from ase import Atoms
    from ase.geometry import minkowski_reduce
    from ase.neighborlist import neighbor_list
    lattice = np.asarray(lattice, float)
    cart = np.mod(frac, 1.0) @ lattice
    try:
        reduced, _ = minkowski_reduce(lattice)
    except (ValueError, np.linalg.LinAlgError):       # a singular cell: nothing to reduce
        reduced = lattice
    atoms = Atoms(numbers=numbers, positions=cart, cell=reduced, pbc=True)
    atoms.wrap()
    i, j, d = neighbor_list("ijd", atoms, cutoff)
    return i.astype(np.int64), j.astype(np.int64), d.astype(np.float32)


def collate_graphs(crystals, neighbours=None, features=None) -> Graph:
    """crystals: iterable of (numbers, frac, lattice); neighbours: their neighbour_graph results,
    if already known (training reuses them every epoch); features: their CHGNet atom features."""
    zs, srcs, dsts, ds, bs = [], [], [], [], []
    off = 0
    for k, (numbers, frac, lattice) in enumerate(crystals):
        i, j, d = neighbours[k] if neighbours is not None else neighbour_graph(numbers, frac, lattice)
        zs.append(np.asarray(numbers, np.int64))
        srcs.append(j + off)
        dsts.append(i + off)
        ds.append(d)
        bs.append(np.full(len(numbers), k))
        off += len(numbers)
    cat = lambda xs, dt: torch.from_numpy(np.concatenate(xs).astype(dt)) if xs else torch.zeros(0)
    return Graph(cat(zs, np.int64), cat(srcs, np.int64), cat(dsts, np.int64), cat(ds, np.float32),
                 cat(bs, np.int64), len(zs), None if features is None else cat(list(features), np.float32))


@dataclass
class PredictorConfig:
    hidden: int = 128
    layers: int = 3
    dropout: float = 0.0
    chgnet: bool = False      # also read CHGNet's atom features (chgnet_atom_features)


class ConvLayer(nn.Module):
    def __init__(self, h: int, dropout: float = 0.0):
        super().__init__()
        self.filt = nn.Sequential(nn.Linear(N_RBF, h), nn.SiLU(), nn.Linear(h, h))
        self.msg = nn.Linear(h, h)
        self.upd = nn.Sequential(nn.Linear(2 * h, h), nn.SiLU(), nn.Dropout(dropout), nn.Linear(h, h))
        self.norm = nn.LayerNorm(h)

    def forward(self, h, g: Graph, rbf, env):
        m = self.msg(h)[g.src] * self.filt(rbf) * env[:, None]
        agg = torch.zeros_like(h).index_add_(0, g.dst, m)
        return h + self.upd(torch.cat([self.norm(h), agg], -1))


class SiteDOSPredictor(nn.Module):
    def __init__(self, cfg: PredictorConfig = PredictorConfig(), elem=None):
        """elem: the (101, F) element features (default pymatgen's; a pack or a checkpoint carries its own)."""
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        table = element_table() if elem is None else np.asarray(elem, np.float32)
        self.register_buffer("elem", torch.as_tensor(table, dtype=torch.float32))
        self.embed = nn.Embedding(N_Z + 1, h)
        self.feat = nn.Linear(self.elem.shape[1], h)
        if cfg.chgnet:
            self.fea_in = nn.Sequential(nn.LayerNorm(CHGNET_FEA), nn.Linear(CHGNET_FEA, h))
        self.register_buffer("centres", torch.linspace(0.0, CUTOFF, N_RBF))
        self.layers = nn.ModuleList([ConvLayer(h, cfg.dropout) for _ in range(cfg.layers)])
        self.head = nn.Sequential(nn.Linear(h, 2 * h), nn.SiLU(), nn.Dropout(cfg.dropout), nn.Linear(2 * h, dosmod.NPTS))

    def forward(self, g: Graph) -> torch.Tensor:
        """Predicted DOS (N, 400), non-negative."""
        h = self.embed(g.z) + self.feat(self.elem[g.z])
        if self.cfg.chgnet:
            if g.fea is None:
                raise ValueError("this predictor reads CHGNet atom features: build the graph with them")
            h = h + self.fea_in(g.fea)
        width = self.centres[1] - self.centres[0]
        rbf = torch.exp(-((g.dist[:, None] - self.centres) / width) ** 2)
        env = 0.5 * (torch.cos(math.pi * g.dist / CUTOFF) + 1)          # smooth cutoff
        for layer in self.layers:
            h = layer(h, g, rbf, env)
        return nn.functional.softplus(self.head(h))


class Ensemble(nn.Module):
    """Mean of independently trained predictors: averaging removes much of each one's
    overfitting to a few hundred labelled crystals."""
    def __init__(self, members: list[SiteDOSPredictor]):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    @property
    def elem(self) -> torch.Tensor:
        # read through, so that .to(device) (which replaces the members' buffers) is followed
        return self.members[0].elem

    def forward(self, g: Graph) -> torch.Tensor:
        return torch.stack([m(g) for m in self.members]).mean(0)


def _upgrade(sd: dict, config: dict) -> dict:
    """Checkpoints from before dropout joined the MLPs (no 'dropout' in their config): their last
    Linear sat one place earlier in each Sequential."""
    if "dropout" in config:
        return sd
    return {re.sub(r"^(layers\.\d+\.upd|head)\.2\.", r"\1.3.", k): v for k, v in sd.items()}


def model_from_blob(blob) -> nn.Module:
    def one(sd):
        m = SiteDOSPredictor(PredictorConfig(**blob["config"]), elem=sd["elem"])
        m.load_state_dict(_upgrade(sd, blob["config"]))
        return m
    model = Ensemble([one(sd) for sd in blob["members"]]) if "members" in blob else one(blob["state_dict"])
    return model.eval()


SPREAD_SCALE_RANGE = (1.0, 50.0)     # a card outside these was edited by hand or fitted on nothing
SPREAD_FLOOR_RANGE = (0.0, 1.0)      # states/eV


def spread_calibration(card: dict) -> tuple[float, float] | None:
    """(scale, floor) from the card (benchmarks.band_calibration): the band scale·spread + floor
    holds the DFT curve at 68 % of the energies with states, on candidates the predictor never
    trained on, about evenly whatever the spread. The raw spread of a few members trained on the
    same labels is several times too narrow, and near zero where they agree but are wrong. None
    for a card without one, or with values out of range (said once)."""
    k, b = card.get("spread_scale"), card.get("spread_floor", 0.0)
    if k is None:
        return None
    ok = all(isinstance(x, (int, float)) and not isinstance(x, bool) and lo <= x <= hi
             for x, (lo, hi) in ((k, SPREAD_SCALE_RANGE), (b, SPREAD_FLOOR_RANGE)))
    if not ok:
        warnings.warn(f"the predictor card's spread_scale {k!r} / spread_floor {b!r} are out of range "
                      f"({SPREAD_SCALE_RANGE}, {SPREAD_FLOOR_RANGE}); its spread is shown uncalibrated", stacklevel=2)
        return None
    return float(k), float(b)


@dataclass
class LoadedPredictor:
    model: nn.Module          # a SiteDOSPredictor or an Ensemble of them
    card: dict

    @property
    def spread_calibration(self) -> tuple[float, float] | None:
        return spread_calibration(self.card)

    def calibrated(self, spread: np.ndarray) -> np.ndarray:
        """A spread as the band the app draws: calibrated on DFT where the card says how, else raw."""
        if (cal := self.spread_calibration) is None:
            return spread
        return cal[0] * np.asarray(spread) + cal[1]

    def predict(self, crystals) -> list[np.ndarray]:
        """Site DOS (n_i, 400) for each (numbers, frac, lattice); NaN rows for a collapsed cell
        (under MIN_VOLUME_PER_ATOM), which has no DOS to predict and whose neighbour lists would
        grow without bound."""
        return self.predict_with_spread(crystals)[0]

    def spread(self, crystals) -> list[np.ndarray]:
        """The ensemble members' standard deviation per site and energy (n_i, 400): where they
        disagree, the predicted curve is least to be trusted. Zeros for a single model."""
        return self.predict_with_spread(crystals)[1]

    def predict_with_spread(self, crystals) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(predict, spread) from one pass over the members: the ensemble's mean is the mean of
        the same member outputs whose standard deviation is the spread."""
        from dosmatgen_core.structures import MIN_VOLUME_PER_ATOM
        crystals = list(crystals)
        ok = [abs(float(np.linalg.det(np.asarray(lat, float)))) / max(len(z), 1) >= MIN_VOLUME_PER_ATOM
              for z, _, lat in crystals]
        members = iter(self._member_outputs([c for c, k in zip(crystals, ok) if k]))
        means, spreads = [], []
        for c, k in zip(crystals, ok):
            if k:
                m = next(members)
                means.append(m.mean(0))
                spreads.append(m.std(0))
            else:
                means.append(np.full((len(c[0]), dosmod.NPTS), np.nan, np.float32))
                spreads.append(np.full((len(c[0]), dosmod.NPTS), np.nan, np.float32))
        return means, spreads

    def _member_outputs(self, crystals) -> list[np.ndarray]:
        """Per crystal, every member's site DOS stacked (members, n_i, 400); one graph for all."""
        if not crystals:
            return []
        members = list(self.model.members) if isinstance(self.model, Ensemble) else [self.model]
        fea = chgnet_atom_features(crystals) if self.model.cfg.chgnet else None
        with torch.no_grad():
            g = collate_graphs(crystals, features=fea)
            p = np.stack([m(g).numpy() for m in members])
        out, off = [], 0
        for numbers, _, _ in crystals:
            out.append(p[:, off:off + len(numbers)])
            off += len(numbers)
        return out


def load_predictor(path, trust: bool = False) -> LoadedPredictor:
    """Load a site-DOS predictor: a shipped one, or with trust=True any file whose card matches it."""
    blob, card, _ = read_checkpoint(path, trust, kind="site-DOS predictor", train_verb="train-predictor")
    with building(path, "site-DOS predictor"):
        model = model_from_blob(blob)
    return LoadedPredictor(model, card)
