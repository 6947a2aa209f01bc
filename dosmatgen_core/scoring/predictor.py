"""Site-DOS forward model: structure → predicted DOS of every site (states/eV on the model grid).

A CGCNN-style graph network over neighbours within 6 Å (periodic images included), with atoms
described by physical element features (group, period, electronegativity, valence shells,
radius) plus a learned element embedding, so that sparse labels generalise across chemistry.
Used to score generated candidates; its held-out error is the floor such scores are read against.
"""
from __future__ import annotations

import copy
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dosmatgen_core import dos as dosmod
from dosmatgen_core.structures import MIN_VOLUME_PER_ATOM

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
    import warnings

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
    """Periodic neighbour list (i, j, d) within the cutoff; self-images count as neighbours."""
    from ase import Atoms
    from ase.neighborlist import neighbor_list
    atoms = Atoms(numbers=numbers, scaled_positions=np.mod(frac, 1.0), cell=lattice, pbc=True)
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


# ---- training ----------------------------------------------------------------------------------

@dataclass
class PredictorTrainConfig:
    run_dir: str = "runs/predictor/default"
    label_dirs: list = field(default_factory=list)
    epochs: int = 300
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    threads: int = 0
    device: str = "cpu"
    pack: str = ""             # a training pack (data.save_pack) instead of the label shards
    seed: int = 0
    max_minutes: float = 0.0
    model: dict = field(default_factory=lambda: asdict(PredictorConfig()))


def _batches(entries, bs, rng):
    order = rng.permutation(len(entries))
    for i in range(0, len(order), bs):
        yield [entries[j] for j in order[i:i + bs]]


def _graph_and_target(chunk, nbr_cache: dict | None = None, fea: dict | None = None):
    """fea: CHGNet atom features by material_id, for models that read them."""
    nbrs = None
    if nbr_cache is not None:
        for e in chunk:
            if e.material_id not in nbr_cache:
                nbr_cache[e.material_id] = neighbour_graph(e.z, e.frac, e.lattice)
        nbrs = [nbr_cache[e.material_id] for e in chunk]
    g = collate_graphs([(e.z, e.frac, e.lattice) for e in chunk], nbrs,
                       None if fea is None else [fea[e.material_id] for e in chunk])
    y = torch.from_numpy(np.concatenate([e.site_dos for e in chunk]).astype(np.float32))
    return g, y


def heldout_metrics(model, entries, fea: dict | None = None) -> dict:
    """MAE, MAE near E_F and cosine on held-out sites, overall and per element family; the
    mean-DOS baseline alongside."""
    if not entries:
        return {}
    model.eval()
    preds, ys, fams = [], [], []
    if fea is None and model.cfg.chgnet:      # fea: CHGNet features by id, when the caller has them
        fea = _features_for(entries)
    table = model.elem.cpu().numpy()
    with torch.no_grad():
        for i in range(0, len(entries), 32):
            g, y = _graph_and_target(entries[i:i + 32], fea=fea)
            preds.append(model(g.to(_device_of(model))).cpu().numpy())
            ys.append(y.numpy())
            fams += [family(z, table) for e in entries[i:i + 32] for z in e.z]
    p, y = np.concatenate(preds), np.concatenate(ys)
    fams = np.array(fams)
    out = {}
    for name, sel in [("all", np.ones(len(y), bool))] + [(f, fams == f) for f in FAMILIES]:
        if sel.sum() == 0:
            continue
        out[name] = {"sites": int(sel.sum()),
                     "mae": float(np.abs(p[sel] - y[sel]).mean()),
                     "mae_ef2": float(np.mean([dosmod.mae_near_ef(a, b) for a, b in zip(y[sel], p[sel])])),
                     "cosine": float(np.mean([dosmod.cosine(a, b) for a, b in zip(y[sel], p[sel])]))}
    return out


def _features_for(entries) -> dict:
    return dict(zip((e.material_id for e in entries),
                    chgnet_atom_features([(e.z, e.frac, e.lattice) for e in entries])))


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _labelled(label_dirs, pack: str = ""):
    """Labelled entries, and the element table a pack carries (None: take pymatgen's)."""
    from dosmatgen_core.training import dataset as datamod
    if not pack:
        return datamod.load_labelled(label_dirs), None
    labelled, _, meta = datamod.load_pack(pack)
    return labelled, meta.get("element_table")


def train_predictor(cfg: PredictorTrainConfig, log=print) -> Path:
    from dosmatgen_core.training import dataset as datamod
    run = Path(cfg.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    labelled, table = _labelled(cfg.label_dirs, cfg.pack)
    val = [e for e in labelled if datamod.is_validation(e.material_id, datamod.PREDICTOR_HOLDOUT)]
    tr = [e for e in labelled if not datamod.is_validation(e.material_id, datamod.PREDICTOR_HOLDOUT)]
    log(f"predictor: {len(tr)} training structures, {len(val)} held out")
    model = SiteDOSPredictor(PredictorConfig(**cfg.model), elem=table).to(cfg.device)
    ema = copy.deepcopy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    state = run / "last.pt"
    epoch = 0
    if state.exists():
        st = torch.load(state, map_location=cfg.device, weights_only=True)
        model.load_state_dict(st["model"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        epoch = int(st["epoch"])
        log(f"resumed at epoch {epoch}")
    logp = run / "log.csv"
    if not logp.exists():
        logp.write_text("epoch,train_mae,val_mae,val_cosine,seconds\n")
    nbr_cache: dict = {}      # neighbour lists are fixed per structure: built once
    fea = _features_for(tr) if model.cfg.chgnet else None
    val_fea = _features_for(val) if model.cfg.chgnet and val else None   # once, not per evaluation
    t_start = time.time()
    while epoch < cfg.epochs:
        t0 = time.time()
        rng = np.random.default_rng([cfg.seed, epoch])
        model.train()
        tot, n = 0.0, 0
        for chunk in _batches(tr, cfg.batch_size, rng):
            g, y = _graph_and_target(chunk, nbr_cache, fea)
            g, y = g.to(cfg.device), y.to(cfg.device)
            loss = (model(g) - y).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(0.99).add_(pm.detach(), alpha=0.01)
            tot += loss.item() * len(chunk)
            n += len(chunk)
        epoch += 1
        if epoch % 10 == 0 or epoch == cfg.epochs:
            m = heldout_metrics(ema, val, val_fea).get("all", {"mae": float("nan"), "cosine": float("nan")})
            with logp.open("a") as fh:
                csv.writer(fh).writerow([epoch, round(tot / max(n, 1), 5), round(m["mae"], 5),
                                         round(m["cosine"], 4), round(time.time() - t0, 2)])
            torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "epoch": epoch, "config": cfg.model}, state)
            log(f"epoch {epoch}: train MAE {tot / max(n, 1):.4f}, held-out MAE {m['mae']:.4f} cos {m['cosine']:.3f}")
        if cfg.max_minutes and time.time() - t_start > cfg.max_minutes * 60:
            break
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "epoch": epoch, "config": cfg.model}, state)
    metrics = heldout_metrics(ema, val, val_fea)
    (run / "heldout.json").write_text(json.dumps(metrics, indent=2))
    return run


def export_predictor(run_dirs, out_path: str | Path, label_dirs, pack: str = "") -> dict:
    """Ship the EMA weights of one run, or the mean of several runs (an ensemble; they must share
    an architecture), with a card holding the held-out scores of the ensemble and of each member."""
    from datetime import date

    from dosmatgen_core.training import dataset as datamod
    from dosmatgen_core.model.checkpoint import sha256_file, card_path
    runs = [Path(run_dirs)] if isinstance(run_dirs, (str, Path)) else [Path(r) for r in run_dirs]
    states = [torch.load(r / "last.pt", map_location="cpu", weights_only=True) for r in runs]
    config = states[0]["config"]
    if any(st["config"] != config for st in states):
        raise ValueError("ensemble members must share one architecture: " + ", ".join(str(r) for r in runs))
    out_path = Path(out_path)
    blob = ({"config": config, "state_dict": states[0]["ema"]} if len(states) == 1
            else {"config": config, "members": [st["ema"] for st in states]})
    torch.save(blob, out_path)
    labelled, _ = _labelled(label_dirs, pack)
    val = [e for e in labelled if datamod.is_validation(e.material_id, datamod.PREDICTOR_HOLDOUT)]
    model = _model_from_blob(blob)
    metrics = heldout_metrics(model, val)
    members = [heldout_metrics(m, val).get("all", {}).get("mae") for m in getattr(model, "members", [])]
    mean_dos = np.concatenate([e.site_dos for e in labelled if not datamod.is_validation(e.material_id, datamod.PREDICTOR_HOLDOUT)]).mean(0)
    base = float(np.mean([np.abs(r - mean_dos).mean() for e in val for r in e.site_dos])) if val else float("nan")
    shards = (datamod.load_pack(pack)[2].get("label_shards", []) if pack else datamod.label_shard_names(label_dirs))
    card = {"name": "DOSMatGen site-DOS predictor", "date": date.today().isoformat(),
            "epoch": int(states[0]["epoch"]), "members": len(states), "runs": [str(r) for r in runs],
            "n_train_structures": len(labelled) - len(val), "n_heldout_structures": len(val),
            "heldout": metrics, "heldout_member_mae": members, "heldout_mean_dos_baseline_mae": base,
            "label_shards": shards, "config": config, "file": out_path.name,
            "sha256": sha256_file(out_path), "bytes": out_path.stat().st_size}
    card_path(out_path).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")
    return card


def _upgrade(sd: dict, config: dict) -> dict:
    """Checkpoints from before dropout joined the MLPs (no 'dropout' in their config): their last
    Linear sat one place earlier in each Sequential."""
    if "dropout" in config:
        return sd
    import re
    return {re.sub(r"^(layers\.\d+\.upd|head)\.2\.", r"\1.3.", k): v for k, v in sd.items()}


def _model_from_blob(blob) -> nn.Module:
    def one(sd):
        m = SiteDOSPredictor(PredictorConfig(**blob["config"]), elem=sd["elem"])
        m.load_state_dict(_upgrade(sd, blob["config"]))
        return m
    model = Ensemble([one(sd) for sd in blob["members"]]) if "members" in blob else one(blob["state_dict"])
    return model.eval()


@dataclass
class LoadedPredictor:
    model: nn.Module          # a SiteDOSPredictor or an Ensemble of them
    card: dict

    def predict(self, crystals) -> list[np.ndarray]:
        """Site DOS (n_i, 400) for each (numbers, frac, lattice); NaN rows for a collapsed cell
        (under MIN_VOLUME_PER_ATOM), which has no DOS to predict and whose neighbour lists would
        grow without bound."""
        crystals = list(crystals)
        ok = [abs(float(np.linalg.det(np.asarray(lat, float)))) / max(len(z), 1) >= MIN_VOLUME_PER_ATOM
              for z, _, lat in crystals]
        preds = iter(self._predict([c for c, k in zip(crystals, ok) if k]))
        return [next(preds) if k else np.full((len(c[0]), dosmod.NPTS), np.nan, np.float32)
                for c, k in zip(crystals, ok)]

    def _predict(self, crystals) -> list[np.ndarray]:
        if not crystals:
            return []
        fea = chgnet_atom_features(crystals) if self.model.cfg.chgnet else None
        with torch.no_grad():
            g = collate_graphs(crystals, features=fea)
            p = self.model(g).numpy()
        out, off = [], 0
        for numbers, _, _ in crystals:
            out.append(p[off:off + len(numbers)])
            off += len(numbers)
        return out


def load_predictor(path) -> LoadedPredictor:
    from dosmatgen_core.model.checkpoint import checked_card
    path = Path(path)
    card = checked_card(path)
    return LoadedPredictor(_model_from_blob(torch.load(path, map_location="cpu", weights_only=True)), card)
