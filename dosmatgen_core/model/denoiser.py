"""E(3)-invariant denoiser over periodic crystals with per-atom DOS conditioning (CSPNet-style).

Inputs are a flat batch of atoms: noisy type vectors A_t (N, n_types), fractional coordinates
X_t (N, 3), the lattice of each crystal L_t (B, 3, 3; rows are a, b, c), the diffusion time of each
crystal, and for each atom a standardised DOS (N, 400) with a condition mask (N,), 0 = free atom.

Invariance: messages see only the lattice metric L·Lᵀ (unchanged by rotations) and Fourier
features of fractional differences x_j − x_i (unchanged by translations, periodic by
construction); atoms are a set (sums over neighbours). The lattice output ε_L = M·L with M built
from invariant features, so ε_L rotates with L.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

N_TYPES = 100          # one-hot over Z = 1..100
MASK_TOKEN = N_TYPES   # D3PM's absorbing state: an extra input column, never an output
DOS_POINTS = 400


@dataclass
class DenoiserConfig:
    hidden: int = 256
    layers: int = 4
    n_freqs: int = 16          # Fourier frequencies per fractional axis
    time_dim: int = 64
    dos_hidden: int = 256
    # How atom types diffuse: "d3pm" (absorbing-state discrete diffusion; the model reads a
    # one-hot over 100 elements + MASK and returns logits over the elements) or "continuous"
    # (DDPM on the one-hot vector; the model returns ε). Cards written before this field
    # existed are continuous models.
    types: str = "continuous"
    # The condition reaches the other atoms only through mean-aggregated messages, so its weight
    # in a free atom's update (and in the pooled lattice feature) falls as 1/N. With cond_context
    # each layer also gets (i) the conditioned atom's DOS embedding again and (ii) the mean DOS
    # embedding of the crystal's conditioned atoms, broadcast to every atom and to the lattice
    # head, whatever N is. Zero-initialised, so a warm start begins as the model it came from.
    # Cards written before this field existed have no such path.
    cond_context: bool = False

    @property
    def type_inputs(self) -> int:
        return N_TYPES + 1 if self.types == "d3pm" else N_TYPES

    def to_dict(self) -> dict:
        return asdict(self)


def sinusoidal(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Embedding of t ∈ [0, 1] (one value per row)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / (half - 1))
    arg = 1000.0 * t[:, None] * freqs[None, :]
    return torch.cat([arg.sin(), arg.cos()], dim=-1)


def fourier_frac(d: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """sin/cos(2πk·d) for k = 1..n_freqs on each axis: periodic in every fractional difference."""
    k = torch.arange(1, n_freqs + 1, device=d.device, dtype=d.dtype)
    arg = 2 * math.pi * d[..., None] * k            # (E, 3, K)
    return torch.cat([arg.sin(), arg.cos()], dim=-1).flatten(1)


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.SiLU(), nn.Linear(h, o))


class DOSEncoder(nn.Module):
    """Standardised 400-point site DOS → an embedding added to that atom's features."""

    def __init__(self, hidden: int, out: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(DOS_POINTS, hidden), nn.SiLU(), nn.Linear(hidden, hidden),
                                 nn.SiLU(), nn.Linear(hidden, out))

    def forward(self, dos: torch.Tensor) -> torch.Tensor:
        return self.net(dos)


class MessageLayer(nn.Module):
    """h_i ← h_i + φ_h(h_i, mean_j φ_e(h_i, h_j, e_ij)).

    φ_e's first linear map acts on the concatenation [h_i, h_j, e_ij]; it is applied as three
    maps so that the node parts run once per atom instead of once per pair (same function,
    about half the cost).
    """

    def __init__(self, hidden: int, edge_in: int):
        super().__init__()
        self.e_dst = nn.Linear(hidden, hidden)
        self.e_src = nn.Linear(hidden, hidden, bias=False)
        self.e_feat = nn.Linear(edge_in, hidden, bias=False)
        self.e_out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU())
        self.node = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h, src, dst, edge_feat, inv_deg):
        m = self.e_out(self.e_dst(h)[dst] + self.e_src(h)[src] + self.e_feat(edge_feat))
        agg = torch.zeros_like(h).index_add_(0, dst, m) * inv_deg[:, None]   # mean over neighbours
        return h + self.node(torch.cat([self.norm(h), agg], dim=-1))


class Denoiser(nn.Module):
    def __init__(self, cfg: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        if cfg.types not in ("continuous", "d3pm"):
            raise ValueError(f"unknown type diffusion {cfg.types!r}: use 'continuous' or 'd3pm'")
        self.type_in = nn.Linear(cfg.type_inputs, h)
        self.time = mlp(cfg.time_dim, h, h)
        self.dos = DOSEncoder(cfg.dos_hidden, h)
        edge_in = 6 * cfg.n_freqs + 6
        self.layers = nn.ModuleList([MessageLayer(h, edge_in) for _ in range(cfg.layers)])
        self.out_norm = nn.LayerNorm(h)
        self.type_out = nn.Linear(h, N_TYPES)
        self.coord_out = nn.Linear(h, 3, bias=False)
        self.lattice_out = nn.Linear(h, 9, bias=False)
        if cfg.cond_context:
            self.cond_site = nn.ModuleList([_zero_linear(h) for _ in range(cfg.layers)])
            self.cond_crystal = nn.ModuleList([_zero_linear(h) for _ in range(cfg.layers)])
            self.cond_lattice = _zero_linear(h)

    def forward(self, a_t, x_t, l_t, t, batch, dos, cond_mask):
        """Returns (ε_A or type logits (N, 100), coordinate score (N, 3), ε_L (B, 3, 3))."""
        B = l_t.shape[0]
        h, ctx = self.encode(a_t, x_t, l_t, t, batch, dos, cond_mask)
        counts = torch.bincount(batch, minlength=B).clamp(min=1).to(h.dtype)
        pooled = _per_crystal_sum(h, batch, B) / counts[:, None]
        if ctx is not None:
            pooled = pooled + self.cond_lattice(ctx)
        m = self.lattice_out(pooled).view(B, 3, 3)
        eps_l = m @ l_t
        return self.type_out(h), self.coord_out(h), eps_l

    def encode(self, a_t, x_t, l_t, t, batch, dos=None, cond_mask=None):
        """Per-atom features after the message layers (N, hidden), and the per-crystal condition
        context (None without cond_context). dos=None: no atom is conditioned."""
        B = l_t.shape[0]
        # Fully connected graph within each crystal, self-pairs included (they carry the lattice
        # to one-atom cells).
        src, dst = _pairs(batch, B)
        gram = l_t @ l_t.transpose(1, 2)                               # (B, 3, 3), rotation invariant
        iu = torch.triu_indices(3, 3, device=l_t.device)
        gram_feat = gram[:, iu[0], iu[1]]                              # (B, 6)
        d = x_t[src] - x_t[dst]
        edge_feat = torch.cat([fourier_frac(d, self.cfg.n_freqs), gram_feat[batch[dst]]], dim=-1)
        deg = torch.bincount(dst, minlength=x_t.shape[0]).clamp(min=1).to(x_t.dtype)

        h = self.type_in(a_t) + self.time(sinusoidal(t, self.cfg.time_dim))[batch]
        ctx = None
        if dos is not None:
            e = cond_mask[:, None] * self.dos(dos)                      # free atoms get nothing
            h = h + e
            if self.cfg.cond_context:
                # mean over the conditioned atoms of each crystal (zero where none is conditioned)
                n_cond = _per_crystal_sum(cond_mask.to(h.dtype)[:, None], batch, B)
                ctx = _per_crystal_sum(e, batch, B) / n_cond.clamp(min=1)
        for k, layer in enumerate(self.layers):
            if ctx is not None:
                h = h + self.cond_site[k](e) + self.cond_crystal[k](ctx)[batch]
            h = layer(h, src, dst, edge_feat, 1.0 / deg)
        return self.out_norm(h), ctx


def _per_crystal_sum(v: torch.Tensor, batch: torch.Tensor, B: int) -> torch.Tensor:
    """(N, F) per-atom rows → (B, F) sums over each crystal's atoms."""
    return torch.zeros(B, v.shape[1], dtype=v.dtype, device=v.device).index_add_(0, batch, v)


def _zero_linear(h: int) -> nn.Linear:
    """A linear map that starts as zero: a new path adds nothing until training moves it."""
    lin = nn.Linear(h, h)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


_PAIR_CACHE: dict = {}


def _pairs(batch: torch.Tensor, B: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All ordered (src, dst) pairs of atoms in the same crystal."""
    counts = torch.bincount(batch, minlength=B)
    key = (tuple(counts.tolist()), batch.device)
    hit = _PAIR_CACHE.get(key)
    if hit is not None:
        return hit
    offsets = torch.cumsum(counts, 0) - counts
    srcs, dsts = [], []
    for n, off in zip(counts.tolist(), offsets.tolist()):
        idx = torch.arange(off, off + n, device=batch.device)
        srcs.append(idx.repeat_interleave(n))
        dsts.append(idx.repeat(n))
    out = (torch.cat(srcs), torch.cat(dsts))
    if len(_PAIR_CACHE) > 512:
        _PAIR_CACHE.clear()
    _PAIR_CACHE[key] = out
    return out
