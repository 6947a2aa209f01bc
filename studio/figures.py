"""Pictures: plotly DOS overlays, the same overlays as PNG/SVG files (matplotlib, drawn on the
server: the app is offline and plotly's own image export needs kaleido), and 3Dmol.js supercell
views (served from assets/, offline)."""
from __future__ import annotations

import html
import io
import json
import re
import textwrap
from functools import lru_cache
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from pymatgen.core import Element, Structure

from dosmatgen_core import dos as dosmod
from dosmatgen_core.paths import THREEDMOL_JS

THREEDMOL = THREEDMOL_JS
# One palette for every page: a kind of curve has the same colour wherever it is drawn.
PALETTE = {
    "target": dict(color="#111111", width=2.6),                       # what was asked for
    "source": dict(color="#8c8c8c", width=1.4, dash="dot"),           # the curve the target was shaped from
    "predicted": dict(color="#1f77b4", width=2.0),                    # site-DOS predictor on a candidate
    "dft": dict(color="#d62728", width=2.2),                          # a DFT calculation of a candidate
    "stored": dict(color="#2ca02c", width=2.0, dash="dash"),          # a stored DFT label (reference db)
    "baseline": dict(color="rgba(120,120,120,0.5)", width=1.2),       # unconditional sample
    "hit": dict(color="#9467bd", width=1.6),                          # a known site from the search
}
SITE_COLOURS = {"picked": "#ff3b30", "conditioned": "#ff3b30", "fixed": "#007aff", "pinned": "#34c759"}
ENERGY_AXIS, DOS_AXIS = "E − E_F (eV)", "DOS (states/eV)"


def plot_config(filename: str) -> dict:
    """Plotly toolbar: the camera button downloads the plot as a PNG named after what it shows."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}


BAND_ALPHA = 0.18      # the ensemble-spread band: the predicted curve's colour, faint


def rgba(hex_colour: str, alpha: float) -> str:
    """'#1f77b4', 0.18 → 'rgba(31,119,180,0.18)'."""
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{alpha:g})"


def band_name(c: dict) -> str:
    """The band's legend: calibrated on DFT when the run's spreads are (predictor.spread_calibration:
    the raw spread of three members held the DFT curve at 19 % of energies, not 68 %), else that it
    is not."""
    if c.get("band_calibrated"):
        return f"{c['name']} ± 1σ (ensemble spread calibrated on DFT)"
    return f"{c['name']} ± ensemble spread (not calibrated: narrower than its error)"


def band_edges(c: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """(lower, upper) of a curve's ±1σ band, or None where it has none. A DOS is never negative,
    so the band stops at zero."""
    if c.get("band") is None:
        return None
    y, sd = np.asarray(c["y"], float), np.asarray(c["band"], float)
    return np.clip(y - sd, 0.0, None), y + sd


def line_of(c: dict, site: int = 0) -> dict:
    """A curve's line: its kind's PALETTE entry, for a later conditioned site (site ≥ 1, see
    site_groups) in that site's dash and a lighter shade, with the curve's own `line` overrides (a
    compared run's colour, its source's dash)."""
    return {**site_line(PALETTE[c.get("style", "predicted")], site), **(c.get("line") or {})}


# the 2nd, 3rd, ... conditioned site of one chart: every curve of a site shares its dash, so a
# site's target pairs with its prediction; the shade keeps two sites' curves of one kind apart
# where they overlap. None of these is a PALETTE dash ('dot', 'dash'), so no kind is mistaken.
SITE_DASHES = ["dashdot", "longdash", "longdashdot"]
SITE_LIGHTEN = 0.4       # share of white mixed into a later site's colour


def lighter(colour: str, share: float) -> str:
    """'#rrggbb' mixed with white by share; any other colour (an 'rgba(...)' baseline) as is."""
    if not re.fullmatch(r"#[0-9a-fA-F]{6}", colour):
        return colour
    rgb = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#%02x%02x%02x" % tuple(round(v + (255 - v) * share) for v in rgb)


def site_line(line: dict, site: int) -> dict:
    """A kind's line for conditioned site `site` of its chart: site 0 exactly as the palette says."""
    if site <= 0:
        return line
    return {**line, "color": lighter(line["color"], SITE_LIGHTEN), "dash": SITE_DASHES[(site - 1) % len(SITE_DASHES)]}


def site_groups(curves: list[dict]) -> list[int]:
    """Each curve's conditioned site within its chart (0, 1, ...). Curves carry no site: a card's
    come in one block per site, each led by its target (results.candidate_curves), so a curve
    belongs to the last target before it; a chart with one target (or none) is all site 0."""
    out, site = [], -1
    for c in curves:
        site += c.get("style") == "target"
        out.append(max(site, 0))
    return out


def chart_lines(curves: list[dict]) -> list[dict]:
    """Each curve's line as drawn in one chart (line_of with its site)."""
    return [line_of(c, site) for c, site in zip(curves, site_groups(curves))]


def shown_y(c: dict) -> np.ndarray:
    """A curve's values as drawn: a curve known on a window only (its `window`, (lo, hi) eV) is
    not drawn outside it, where the file said nothing (not zero)."""
    return dosmod.only_in_window(c["y"], c.get("window"))


def unknown_spans(curves: list[dict]) -> list[tuple[float, float]]:
    """The energy ranges outside the first windowed curve's window (shaded: not compared)."""
    w = next((c["window"] for c in curves if c.get("window") is not None), None)
    if w is None:
        return []
    lo, hi = dosmod.check_window(w)
    return [(a, b) for a, b in ((float(dosmod.EMIN), lo), (hi, float(dosmod.EMAX))) if b - a > 1e-9]


# curves drawn for context only: they do not set the y axis (an unconditional sample's peak at 9
# states/eV squashed a 0-1 states/eV target flat); where one goes higher it is clipped
BACKGROUND = {"baseline"}
Y_HEADROOM = 1.08        # the axis ends this far above the highest curve that sets it


def y_top(curves: list[dict]) -> float | None:
    """The top of the DOS axis (which starts at 0): the highest value, ±1σ bands included, of the
    curves that matter (targets, a candidate's predicted, DFT and stored curves), with headroom;
    of all curves where every one is background. None where nothing is above zero (plotly's own)."""
    shown = [c for c in curves if c.get("style") not in BACKGROUND] or curves
    tops = [np.nanmax(shown_y(c), initial=0.0) for c in shown]
    tops += [float(np.max(e[1], initial=0.0)) for c in shown if (e := band_edges(c)) is not None]
    top = max(tops, default=0.0)
    return float(top) * Y_HEADROOM if np.isfinite(top) and top > 0 else None


UNKNOWN_NOTE = "outside the target's window: not compared"
SHORT_UNKNOWN_NOTE = "not compared"


def legend_name(name: str, wrap: int | None) -> str:
    """A legend entry broken into lines of at most wrap characters (plotly cuts a long entry at the
    plot's edge: in a card at 800 px, 'predicted for candidate #2 ± 1σ (ensemble s'); as is without wrap."""
    return "<br>".join(textwrap.wrap(name, wrap, break_long_words=False)) if wrap and len(name) > wrap else name


def dos_figure(curves: list[dict], title: str = "", height: int = 300, wrap: int | None = None) -> go.Figure:
    """curves: dicts with `y` (400 values), `name` (which says where the curve comes from) and
    `style`, a PALETTE key; optional `band` (400 values): ±1σ drawn as a shaded area under the
    curve's legend entry; optional `window` ((lo, hi) eV): where the curve is known (a target from
    a file that covers part of the grid): outside it the curve is not drawn and the plot is shaded.
    Energies are E − E_F; the Fermi level is the dashed vertical line. wrap: legend entries broken
    into lines of this many characters (a narrow plot: a card's), and the shading's note kept short."""
    fig = go.Figure()
    spans = unknown_spans(curves)
    for a, b in spans:
        fig.add_vrect(x0=a, x1=b, fillcolor="gray", opacity=0.12, line_width=0)
    if spans:
        # one note, centred over the widest span (at a span's corner it ran into the E_F label); the
        # long one only where it fits
        a, b = max(spans, key=lambda ab: ab[1] - ab[0])
        fig.add_annotation(x=(a + b) / 2, y=0.92, yref="paper", showarrow=False, font=dict(size=10, color="gray"),
                           text=UNKNOWN_NOTE if not wrap and b - a >= 6.0 else SHORT_UNKNOWN_NOTE)
    for k, (c, line) in enumerate(zip(curves, chart_lines(curves))):
        style = c.get("style", "predicted")
        if (edges := band_edges(c)) is not None:
            lo, hi = edges
            group = f"band{k}"
            fig.add_trace(go.Scatter(x=dosmod.GRID, y=lo, mode="lines", line=dict(width=0), hoverinfo="skip",
                                     legendgroup=group, showlegend=False))
            # the alpha in the fill colour itself: plotly.js 3 drew a filled trace's `opacity` solid, and
            # the band hid the DFT curve under it (walk 13)
            fig.add_trace(go.Scatter(x=dosmod.GRID, y=hi, mode="lines", line=dict(width=0), fill="tonexty",
                                     fillcolor=rgba(PALETTE["predicted"]["color"], BAND_ALPHA),
                                     hoverinfo="skip", legendgroup=group, name=legend_name(band_name(c), wrap)))
        fig.add_trace(go.Scatter(x=dosmod.GRID, y=shown_y(c), name=legend_name(c["name"], wrap), mode="lines",
                                 line=line, opacity=0.6 if style == "baseline" else 1.0))
    # E_F labelled inside the plot, beside its line: above the plot the toolbar covers it
    fig.add_vline(x=0.0, line_dash="dash", line_color="gray", annotation_text="E_F", annotation_position="top right")
    # the legend hangs from below the axis title (anchored by its top, it grows downwards; with
    # plotly's default anchor a two-row legend climbed over the title)
    names = [c["name"] for c in curves] + [band_name(c) for c in curves if band_edges(c) is not None]
    extra_lines = sum(legend_name(n, wrap).count("<br>") for n in names)      # once wrapped
    top = y_top(curves)        # set by the curves that matter: a taller baseline is clipped
    fig.update_layout(title=title or None, height=height + 24 * max(0, len(names) - 2) + 14 * extra_lines, margin=dict(l=40, r=10, t=35 if title else 10, b=40),
                      # the grid's range, whatever the notes: a note over a narrow shaded band widened it
                      xaxis=dict(title=ENERGY_AXIS, range=[float(dosmod.EMIN), float(dosmod.EMAX)]),
                      yaxis=dict(title=DOS_AXIS, **({"range": [0.0, top]} if top else {"rangemode": "tozero"})),
                      showlegend=True,
                      legend=dict(orientation="h", yanchor="top", y=-0.3), template="plotly_white")
    return fig


MPL_DASH = {None: "-", "solid": "-", "dot": ":", "dash": "--", "dashdot": "-.",
            "longdash": (0, (8, 3)), "longdashdot": (0, (8, 3, 1, 3))}


def _mpl_line(c: dict, p: dict) -> dict:
    """A curve's line p (chart_lines) as matplotlib line settings (plotly's 'rgba(r,g,b,a)' → colour and alpha)."""
    style = c.get("style", "predicted")
    colour, alpha = p["color"], (0.6 if style == "baseline" else 1.0)
    m = re.fullmatch(r"rgba\((\d+),\s*(\d+),\s*(\d+),\s*([\d.]+)\)", colour)
    if m:
        colour, alpha = "#%02x%02x%02x" % tuple(int(m.group(i)) for i in (1, 2, 3)), float(m.group(4))
    # plotly widths are pixels; matplotlib's are points (0.75 px)
    return {"color": colour, "alpha": alpha, "linewidth": p["width"] * 0.75, "linestyle": MPL_DASH[p.get("dash")]}


def dos_image(curves: list[dict], title: str = "", fmt: str = "svg") -> bytes:
    """The dos_figure overlay as an image file ('svg' or 'png'): same curves, names, colours and
    axes. SVG text stays text, so the legend can be read and edited."""
    import matplotlib
    from matplotlib.figure import Figure     # not pyplot: no global state, safe in the app's threads
    # names are user text (file names, titles): '$' is a character, not mathtext
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "dosmatgen", "text.parse_math": False}):
        fig = Figure(figsize=(7.0, 4.2), layout="constrained")
        ax = fig.add_subplot()
        for k, (a, b) in enumerate(unknown_spans(curves)):
            ax.axvspan(a, b, color="gray", alpha=0.12, linewidth=0, label=UNKNOWN_NOTE if k == 0 else None)
        for c, line in zip(curves, chart_lines(curves)):
            if (edges := band_edges(c)) is not None:
                ax.fill_between(dosmod.GRID, *edges, color=PALETTE["predicted"]["color"], alpha=BAND_ALPHA,
                                linewidth=0, label=band_name(c))
            ax.plot(dosmod.GRID, shown_y(c), label=c["name"], **_mpl_line(c, line))
        ax.axvline(0.0, color="gray", linestyle="--", linewidth=0.8)
        ax.text(0.0, 1.01, "E_F", transform=ax.get_xaxis_transform(), ha="center", va="bottom", color="gray")
        ax.set_xlabel(ENERGY_AXIS)
        ax.set_ylabel(DOS_AXIS)
        ax.set_xlim(float(dosmod.GRID[0]), float(dosmod.GRID[-1]))
        ax.set_ylim(0.0, y_top(curves))   # a DOS is never negative: the axis starts at 0; its top as on screen
        ax.grid(alpha=0.3)
        if title:
            ax.set_title(title, pad=18)
        if curves:
            fig.legend(loc="outside lower center", ncol=1, frameon=False, fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=200, metadata={"Date": None} if fmt == "svg" else None)
    return buf.getvalue()


# ---- the Model page's training curve -----------------------------------------------------------

SPIKE_RATIO = 1.5        # a leading epoch this many times the later epochs' median would flatten the rest
LOSS_NOTE = ("The loss sums the lattice, coordinate and atom-type terms. Training is each epoch's mean over "
             "its batches, with augmentation and the target dropped at random (the unconditional branch); "
             "validation uses the averaged (EMA) weights on untouched crystals, so it can sit below training. "
             "The labelled crystals' validation is the conditional branch's health: it rises if their DOS "
             "labels are memorised.")


def leading_spike(df, columns: list[str], ratio: float = SPIKE_RATIO) -> int:
    """How many leading epochs (rows of the log) to leave off the chart: each, in turn, whose highest
    loss is over ratio × the median of the later epochs' highest (a run from scratch starts at 10-25
    against 2-3); none where they sit with the rest (a fine-tune starts where its source ended). The
    chart's axis is shared, so an epoch counts by its highest curve. At most half the epochs."""
    top = df[columns].max(axis=1).to_numpy(float)
    n = 0
    while n < len(top) // 2 and top[n] > ratio * np.nanmedian(top[n + 1:]):
        n += 1
    return n


def training_view(df, columns: list[str], warm_start: dict | None = None) -> tuple[object, str]:
    """(the log's rows to plot, the caption) for a training log (columns: the loss curves drawn).
    The caption says which epochs are left off and their losses, only where some are; and, for a
    fine-tune (warm_start: the model card's source model), that it starts from a trained model, so a
    flat curve is expected (the walk read a flat 16-epoch fine-tune as 'didn't learn')."""
    skip = leading_spike(df, columns)
    top = df[columns].max(axis=1)
    words = []
    if skip:
        epochs, high = [int(e) for e in df["epoch"].iloc[:skip]], top.iloc[:skip]
        which = (f"epoch {epochs[0]} reaches {high.iloc[0]:.1f}" if skip == 1 else
                 f"epochs {epochs[0]}–{epochs[-1]} reach {high.max():.1f} to {high.min():.1f}")
        words.append(f"From epoch {int(df['epoch'].iloc[skip])}: {which}, over {SPIKE_RATIO:g}× the later "
                     f"epochs' median ({float(np.nanmedian(top.iloc[skip:])):.2f}), and would flatten the rest.")
    if isinstance(warm_start, dict):
        steps = int(warm_start.get("steps") or 0)
        source = f"a trained model ({steps / 1000:.1f}k steps)" if steps else "a trained model"
        words.append(f"A fine-tune: it starts from {source}, so its losses begin near where they end and a "
                     "flat curve is expected.")
    return df.iloc[skip:], " ".join(words + [LOSS_NOTE])


@lru_cache(maxsize=1)
def _threedmol_js() -> str:
    return THREEDMOL.read_text()


def wrapped(s: Structure) -> Structure:
    """The structure with every atom moved into its cell (fractional coordinates in [0, 1)), order kept."""
    frac = np.mod(s.frac_coords, 1.0)
    frac[np.isclose(frac, 1.0, atol=1e-8)] = 0.0
    return Structure(s.lattice, s.species, frac)


def supercell_xyz(s: Structure, reps=(2, 2, 2)) -> tuple[str, list[int]]:
    """XYZ text of the supercell (atoms wrapped into it) and, for each of its atoms, the index of
    its unit-cell site."""
    sc = wrapped(s)
    sc.make_supercell(reps)
    # pymatgen repeats each site consecutively: site i of the cell → atoms i*n .. i*n+n-1
    n = int(np.prod(reps))
    origin = [i for i in range(len(s)) for _ in range(n)]
    lines = [str(len(sc)), "supercell"]
    lines += [f"{site.specie.symbol} {site.coords[0]:.5f} {site.coords[1]:.5f} {site.coords[2]:.5f}" for site in sc]
    return "\n".join(lines) + "\n", origin


# Chromium keeps this many WebGL contexts (one per 3D view) and loses the oldest past it
MAX_LIVE_VIEWS = 16
SPHERE_SCALE = 0.3       # atoms are drawn at this fraction of their van der Waals radius
STATIC_SRC = "/app/static/3Dmol-min.js"   # the app serves assets/vendor/3dmol-* through ./static


def structure_html(s: Structure, highlight: dict[int, str] | None = None, reps=(2, 2, 2),
                   height: int = 320, element_id: str = "v", script_src: str | None = None) -> str:
    """A self-contained HTML page with the 2×2×2 supercell, its outline (solid) and the unit cell
    (thin), and highlighted sites.

    highlight: unit-cell site index → colour (every image of that site gets a halo).
    3Dmol.js comes from `script_src` on the same server (the app: STATIC_SRC, cached by the
    browser once for all viewers) or, without it, is inlined from assets/; never from a CDN.
    """
    xyz, origin = supercell_xyz(s, reps)
    lines = cell_edges(s.lattice.matrix * np.asarray(reps, float)[:, None]) + cell_edges(s.lattice.matrix)
    halos = []
    for site, colour in (highlight or {}).items():
        for k, o in enumerate(origin):
            if o == site:
                halos.append({"serial": k, "color": colour, "radius": halo_radius(s[site].specie.symbol)})
    eid = html.escape(element_id)
    script = f'<script src="{html.escape(script_src)}"></script>' if script_src else f"<script>{_threedmol_js()}</script>"
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">{script}</head>
<body style="margin:0"><div id="{eid}" class="viewer3d" style="width:100%;height:{height}px;position:relative"></div>
<script>
const viewer = $3Dmol.createViewer(document.getElementById({json.dumps(element_id)}), {{backgroundColor: "white"}});
viewer.addModel({json.dumps(xyz)}, "xyz");
viewer.setStyle({{}}, {{sphere: {{scale: {SPHERE_SCALE}, colorscheme: "Jmol"}}, stick: {{radius: 0.12, colorscheme: "Jmol"}}}});
const halos = {json.dumps(halos)};
const atoms = viewer.getModel().selectedAtoms({{}});
for (const h of halos) {{
  const a = atoms[h.serial];
  viewer.addSphere({{center: {{x: a.x, y: a.y, z: a.z}}, radius: h.radius, color: h.color, opacity: 0.55}});
}}
const lines = {json.dumps(lines)};
lines.forEach((l, k) => {{
  viewer.addLine({{start: {{x: l[0][0], y: l[0][1], z: l[0][2]}}, end: {{x: l[1][0], y: l[1][1], z: l[1][2]}},
                   color: k < 12 ? "#333333" : "#9a9a9a", dashed: k >= 12}});
}});
viewer.rotate(-20, "x"); viewer.rotate(25, "y");      // a little off-axis: rows of atoms do not hide each other
// zoomTo fits the height: a view narrower than tall (a card's column at 800 px) cut the cell's sides
function fit() {{
  const el = document.getElementById({json.dumps(element_id)});
  viewer.zoomTo();
  const aspect = el.clientWidth / Math.max(el.clientHeight, 1);
  if (aspect > 0 && aspect < 1) viewer.zoom(aspect);     // 0: laid out hidden (a closed expander)
  viewer.render();
}}
fit();
window.addEventListener("resize", () => {{ viewer.resize(); fit(); }});
</script></body></html>"""


def halo_radius(symbol: str) -> float:
    """A halo clearly wider than its atom as drawn (0.3 × the van der Waals radius, Å), so it shows
    around the atom instead of inside it."""
    vdw = Element(symbol).van_der_waals_radius or 2.0
    return round(SPHERE_SCALE * float(vdw) + 0.45, 2)


def cell_edges(m) -> list[list[list[float]]]:
    """The 12 edges of the cell spanned by the rows of m, as [start, end] points."""
    m = np.asarray(m, float)
    box = [np.zeros(3), m[0], m[1], m[2], m[0] + m[1], m[0] + m[2], m[1] + m[2], m[0] + m[1] + m[2]]
    edges = [(0, 1), (0, 2), (0, 3), (1, 4), (1, 5), (2, 4), (2, 6), (3, 5), (3, 6), (4, 7), (5, 7), (6, 7)]
    return [[box[a].tolist(), box[b].tolist()] for a, b in edges]


def site_table(s: Structure) -> list[dict]:
    """Rows for the site table: element, Wyckoff letter (spglib, 0.1 Å; '?' where the symmetry
    search fails), fractional coordinates. The letter before the coordinates: at 800 px the
    table's last columns scroll out of sight."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
    try:
        ds = SpacegroupAnalyzer(s, symprec=0.1).get_symmetry_dataset()
        wyckoffs = list(ds.wyckoffs)
    except Exception:
        wyckoffs = ["?"] * len(s)
    def wrapped(x: float) -> float:
        # 0.99999 rounds to 1: the same point as 0, written as 0 (a walk read x = 1 for a wrapped atom)
        return round(float(x) % 1.0, 4) % 1.0 + 0.0
    return [{"site": i, "element": site.specie.symbol, "wyckoff": wyckoffs[i],
             "x": wrapped(site.frac_coords[0]), "y": wrapped(site.frac_coords[1]),
             "z": wrapped(site.frac_coords[2])} for i, site in enumerate(s)]
