"""Generation seeded by known matches: the labelled sites closest to the target, used as templates.

A lookup among the labels already beats unguided generation under DFT (the nearest labelled
site has cosine >= 0.9 for most held-out targets), so the seeded mode starts from there: the
top-k structures of the site search become templates, noised to a measured strength, with the
matching site conditioned on the target (and optionally held to its element). Each candidate
carries the seed it came from. Beside the generator's draws, a seed can also give substituted
variants: one of its elements swapped for its same-group neighbour, the matched site untouched
(the classic route to a new compound one chemical step from a known one). A candidate can be a
seed too (candidate_seed): the next round grown from what DFT has confirmed.
"""
from __future__ import annotations

import functools
import itertools
import warnings
from dataclasses import dataclass

import numpy as np
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, DummySpecies, Element

from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.sampling import modes
from dosmatgen_core.sampling.sampler import SampleSpec
from dosmatgen_core.scoring.search import SiteHit, site_index
from dosmatgen_core.structures import Crystal, atoms_from_cif, to_atoms, to_structure


@dataclass(frozen=True)
class Seed:
    hit: SiteHit            # the known site and how close its DFT DOS is to the target
    crystal: Crystal        # its labelled cell, sites in the label's order (row i = site i)
    known: bool = True      # a labelled structure; False: a candidate (candidate_seed), which a draw can return
    source: str = "DFT"     # where hit.mae and hit.cosine come from: "DFT" or "predicted"

    def record(self) -> dict:
        rec = {"material_id": self.hit.material_id, "formula": self.hit.formula, "site": self.hit.site,
               "element": self.hit.element, "mae": self.hit.mae, "cosine": self.hit.cosine}
        return rec if self.known else {**rec, "known": False, "source": self.source}


def candidate_seed(cif: str, site: int, mae: float, cosine: float, name: str, source: str = "DFT") -> Seed:
    """A candidate as the seed of the next round (the app's "Grow from this candidate",
    benchmarks.refine): its cell read in the CIF's own site order (ASE; pymatgen would regroup the
    sites by element and move the conditioned one), the site that carries the target, and that
    site's match to the target, by DFT once the candidate is checked, else predicted."""
    if source not in ("DFT", "predicted"):
        raise ValueError(f"a seed's match comes from 'DFT' or 'predicted', not {source!r}")
    s = to_structure(atoms_from_cif(cif))
    if not isinstance(site, (int, np.integer)) or not 0 <= site < len(s):
        raise ValueError(f"site {site!r} is not one of the candidate's {len(s)} sites")
    hit = SiteHit(name, s.composition.reduced_formula, int(site), s[int(site)].specie.symbol, len(s), float(mae),
                  float(cosine), 0.0)
    return Seed(hit, Crystal.from_structure(s), known=False, source=source)


def find_seeds(target, db_url: str, k: int = 3, by: str = "mae", exclude=(), max_atoms: int = 8,
               index=None, crystal_of=None, admit=None, window=None) -> list[Seed]:
    """The k labelled structures (at most max_atoms atoms) whose best site is closest to target.

    index, crystal_of: a SiteIndex to search and a material id → Crystal lookup, instead of the
    reference database's own (a benchmark searches every label shard, which the db may lag).
    admit: a test each hit must pass (beats: a round's seeds must be closer than its best check).
    window: (lo, hi) eV, where the target is known (dos.window_slice); compared there only."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"the number of seeds must be a whole number >= 1, not {k!r}")
    index = index if index is not None else site_index(db_url)
    if crystal_of is None:
        db = open_db(str(db_url))

        def crystal_of(mid: str) -> Crystal:
            return Crystal.from_structure(to_structure(db.get(mid).atoms))
    crystal_of = functools.lru_cache(maxsize=None)(crystal_of)    # a hit checked for copies is read once
    small = set(np.unique(index.material_ids[index.n_atoms > max_atoms]).tolist())
    left_out = [crystal_of(m).to_structure() for m in exclude if m in index.code_of]
    hits = known_hits(index, target, k, left_out, lambda mid: crystal_of(mid).to_structure(), by=by,
                      exclude=set(exclude) | small, admit=admit, window=window)
    if not hits:
        raise ValueError(f"no labelled structure of at most {max_atoms} atoms to seed from")
    return [Seed(h, crystal_of(h.material_id)) for h in hits]


def grow_source(run: dict, c: dict, dft: dict | None) -> dict:
    """What growing from a stored candidate starts from: its DFT-checked cell when it has one
    (relaxed, so it is what DFT confirmed), else its drawn cell; its conditioned sites; a name; and
    its first conditioned site's match to the target (the run's targets[target_row]), by DFT once
    checked, else predicted. "cif",
    "mae", "cosine", "name", "source" and sites[0] are candidate_seed's arguments. dft: the
    candidate's DFT status (scoring.verify), or None."""
    done = bool(dft and dft.get("status") == "done" and (dft.get("result") or {}).get("cif"))
    cell = ("relaxed, DFT-checked" if dft["result"].get("relaxed") else "DFT-checked") if done else "as drawn"
    sites = sorted(int(k) for k in c["site_to_target"])
    if not sites:
        raise ValueError(f"candidate #{c['rank']} has no site carrying a target, so there is nothing to grow around")
    match = (dft["result"].get("dos_match") if done else c.get("dos_match")) or {}
    first = match.get(str(sites[0])) or match.get(sites[0]) or {}
    rows = {int(k): int(v) for k, v in c["site_to_target"].items()}
    return {"cif": dft["result"]["cif"] if done else c["cif"], "sites": sites, "target_row": rows[sites[0]],
            "rank": int(c["rank"]), "run": run["id"],
            "name": f"candidate #{c['rank']} {c['formula']} of run {run['id']} ({cell})",
            "mae": float(first.get("mae", np.nan)), "cosine": float(first.get("cosine", np.nan)),
            "source": "DFT" if done else "predicted"}


def seed_arguments(src: dict) -> dict:
    """candidate_seed's keyword arguments from grow_source's answer: a seed carries one site, so a
    candidate with several conditioned atoms cannot be one (template mode can take it)."""
    if len(src["sites"]) != 1:
        raise ValueError(f"{src['name']} has {len(src['sites'])} atoms carrying a target; a round grows around one "
                         "(use template mode with it on the Generate page, or --mode template)")
    return {"cif": src["cif"], "site": src["sites"][0], "mae": src["mae"], "cosine": src["cosine"],
            "name": src["name"], "source": src["source"]}


def known_hits(index, target, top: int, left_out: list, structure_of, admit=None, **search) -> list[SiteHit]:
    """The top labelled structures for target, one hit each (index.search per_structure), with no
    copy of a left-out structure under another id (drop_copies): what the seeds and the page's
    known-sites table both show. admit: a test each hit must pass (None: any); search:
    index.search's other options."""
    return known_search(index, target, top, left_out, structure_of, admit, **search)[0]


def known_search(index, target, top: int, left_out: list, structure_of, admit=None, per_structure: bool = True,
                 **search) -> tuple[list[SiteHit], list[SiteHit]]:
    """known_hits' hits, and the copies of left-out structures it dropped above its last hit kept
    (the CLI names them). per_structure=False lists every site; twins are then not dropped, since
    one structure's sites would read as twins of each other."""
    want = top
    while True:
        hits = index.search(target, top=want, per_structure=per_structure, **search)
        admitted = [h for h in hits if admit is None or admit(h)]
        unique = drop_copies(admitted, left_out, structure_of) if left_out else admitted
        kept = drop_twins(unique, structure_of) if per_structure else unique
        if len(kept) >= top or len(hits) < want:
            break
        want *= 2
    kept = kept[:top]
    shown, copied = {id(h) for h in kept}, {id(h) for h in unique}
    last = max((k for k, h in enumerate(hits) if id(h) in shown), default=len(hits) - 1)
    return kept, [h for h in admitted if id(h) not in copied and hits.index(h) <= last]


def beats(hit: SiteHit, cosine: float | None = None, mae: float | None = None) -> bool:
    """Whether a known site is closer to the target than a check of DFT cosine `cosine` and MAE
    `mae` (None: not bounded): shaped more closely, and no farther off in size. Shape alone would
    take a Cl p band for a Ni d band (cosine 0.97, MAE 0.49); on the pool bench's 16 hard targets
    (benchmarks.pool guard), the rounds whose seeds were within the check's MAE gave both
    rescues, the others never beat their check by more than 0.003."""
    return (cosine is None or hit.cosine > cosine) and (mae is None or not np.isfinite(mae) or hit.mae <= mae)


def bound_text(cosine: float | None, mae: float | None) -> str:
    """'a DFT cosine above 0.870 and a DFT MAE of at most 0.200 states/eV' (beats' bounds)."""
    parts = ([f"a DFT cosine above {cosine:.3f}"] if cosine is not None else []) + \
        ([f"a DFT MAE of at most {mae:.3f} states/eV"] if mae is not None and np.isfinite(mae) else [])
    return " and ".join(parts) or "any"


def drop_copies(hits: list[SiteHit], left_out: list, structure_of) -> list[SiteHit]:
    """The hits whose structure is none of left_out (pymatgen Structures; is_one_of). A material
    left out of a search (the reference) can come back under another id: a candidate that relaxed
    into it and was DFT-checked is a label of its own. A hit's structure is read only when its
    formula is one of left_out's."""
    formulas = {s.composition.reduced_formula for s in left_out}
    return [h for h in hits if Composition(h.formula).reduced_formula not in formulas
            or not is_one_of(structure_of(h.material_id), left_out)]


def drop_twins(hits: list[SiteHit], structure_of) -> list[SiteHit]:
    """The hits whose structure no better hit already has: two DFT checks of one crystal (the app's
    runs can check the same candidate twice) are two labels, and would take two of the table's rows
    and two of the seeds. Only hits sharing a reduced formula are read and compared."""
    kept: list[SiteHit] = []
    read: dict = {}         # each hit's structure read once, however many later hits it is compared with

    def cell(mid):
        if mid not in read:
            read[mid] = structure_of(mid)
        return read[mid]
    for h in hits:
        same = [k for k in kept if Composition(k.formula).reduced_formula == Composition(h.formula).reduced_formula]
        if same and is_one_of(cell(h.material_id), [cell(k.material_id) for k in same]):
            continue
        kept.append(h)
    return kept


def is_one_of(s, structures: list) -> bool:
    """Whether StructureMatcher matches s to any of structures (same reduced formula only)."""
    same = [x for x in structures if x.composition.reduced_formula == s.composition.reduced_formula]
    return bool(same) and any(StructureMatcher().fit(s, x) for x in same)


def shell_template(crystal: Crystal, site: int, max_atoms: int = 8, tol: float = 1.15) -> tuple[Crystal, list[int]]:
    """The seed's cell, doubled along its shortest axis when that fits in max_atoms (so that atoms
    beyond the matched site's first shell can change), and that first shell: the atoms within tol
    of the nearest-neighbour distance (minimum image), to pin. The matched site keeps its index:
    ASE's repeat puts the first image's atoms first, in their order."""
    cells = list(itertools.islice(_supercells(crystal, max_atoms), 2))
    s = cells[-1]           # doubled along the shortest axis where it fits, else the seed's own cell
    return Crystal.from_structure(s), sorted(first_shell(s, site, tol) - {site})


def seeded_specs(target, seeds: list[Seed], n_candidates: int, strength: float,
                 fix_element: bool = False, keep_composition: bool = False,
                 keep_shell: bool = False, max_atoms: int = 8) -> list[SampleSpec]:
    """n_candidates template specs, taken from the seeds in turn (best seed first): each seed's
    matching site is conditioned on the target; with fix_element it also keeps its element; with
    keep_composition every site keeps its element (novelty comes from the geometry alone); with
    keep_shell the site's nearest neighbours are pinned (species and positions) in the seed's
    cell, doubled when it fits in max_atoms, so that the rest of the crystal changes around an
    intact first shell."""
    if not seeds:
        raise ValueError("seeded generation needs at least one seed")
    if not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1:
        raise ValueError(f"number of candidates must be a whole number >= 1, not {n_candidates!r}")
    specs = []
    for i in range(n_candidates):
        seed = seeds[i % len(seeds)]
        cell, pinned = shell_template(seed.crystal, seed.hit.site, max_atoms) if keep_shell else (seed.crystal, [])
        spec = modes.template(cell, strength, {seed.hit.site: target}, pinned=pinned)[0]
        kept = range(len(cell.numbers)) if keep_composition else [seed.hit.site] if fix_element else []
        for j in kept:
            spec.fixed_z[j] = int(cell.numbers[j])
        spec.tag.update({"mode": "seeded", "seed": seed.record(), "site_to_target": {seed.hit.site: 0}})
        specs.append(spec)
    return specs


def substitution_specs(target, seeds: list[Seed], allowed, limit: int, distant: bool = False,
                       max_atoms: int = 8, left_out: list = ()) -> list[tuple[Crystal, SampleSpec]]:
    """At most limit substituted variants of the seeds (substituted_variants; with distant,
    distant_variants in cells of at most max_atoms), taken from the seeds in turn, best seed
    first, each with a spec that records where it came from (its seed and the swap) and conditions
    its matched site, as seeded_specs' do; nothing is sampled from these. A variant that is one of
    left_out (pymatgen Structures: the reference, whose own curve is the target) is no candidate: a
    swap of Ag3Ni's Ag for Au would hand the user back the Au3Ni they started from."""
    def variants(seed):
        return distant_variants(seed, allowed, max_atoms) if distant else substituted_variants(seed, allowed)
    per_seed = [[(c, s, sub) for c, sub in variants(s) if not is_one_of(c.to_structure(), left_out)] for s in seeds]
    out = []
    for c, seed, sub in [v for row in itertools.zip_longest(*per_seed) for v in row if v is not None][:limit]:
        n = len(c.numbers)
        dos, mask = np.zeros((n, len(target))), np.zeros(n, bool)
        dos[seed.hit.site], mask[seed.hit.site] = target, True
        spec = SampleSpec(n, dos, mask, np.zeros(n, np.int64), template=c, strength=0.0,
                          tag={"mode": "seeded", "origin": "substitution", "site_to_target": {seed.hit.site: 0},
                               "seed": {**seed.record(), "substitution": sub}})
        out.append((c, spec))
    return out


def isovalent_partners(symbol: str, allowed) -> list[str]:
    """The elements one row above and below in the same group (Au: Ag; Al: Ga), among allowed, and
    metal for metal: the same valence electron count, so the Fermi level of a substituted cell stays
    near the seed's (H for Li or B for Al would change the bonding, not just the size)."""
    el = Element(symbol)
    if el.is_lanthanoid or el.is_actinoid:
        return []
    out = []
    for z in range(1, 87):
        other = Element.from_Z(z)
        if (other.symbol != symbol and other.symbol in allowed and not (other.is_lanthanoid or other.is_actinoid)
                and other.group == el.group and abs(other.row - el.row) == 1 and other.is_metal == el.is_metal):
            out.append(other.symbol)
    return out


def substituted_variants(seed: Seed, allowed) -> list[tuple[Crystal, dict]]:
    """Isovalent substitutions of the seed that leave its matched site alone: for each element of
    the seed, its sites other than the matched one all take one same-group neighbour from allowed
    (the elements the DFT recipe can calculate). Positions and site order are the seed's; the
    volume follows the new radii (_volume_ratio), so that a relaxation starts near its minimum.
    Each variant's record names its kind ("element"), what replaced what, and where."""
    site = seed.hit.site
    s = seed.crystal.to_structure()
    out = []
    for old in sorted({x.specie.symbol for x in s}):
        sites = [k for k, x in enumerate(s) if x.specie.symbol == old and k != site]
        for new in isovalent_partners(old, allowed) if sites else []:
            v = s.copy()
            for k in sites:
                v.replace(k, new)
            v.scale_lattice(s.volume * _volume_ratio(s.composition, v.composition))
            out.append((Crystal.from_structure(v), {"kind": "element", "replaced": old, "by": new, "sites": sites}))
    return out


def _supercells(crystal: Crystal, max_atoms: int):
    """The seed's cell, then doubled along its shortest axis, its two shortest, all three: each
    that fits in max_atoms. ASE's repeat keeps every original atom's index (the first image comes
    first, in order), so the matched site keeps its row."""
    s = crystal.to_structure()
    order = [int(i) for i in np.argsort(s.lattice.abc, kind="stable")]     # ties: the first axis, as argmin
    yield s
    for n in (1, 2, 3):
        reps = [1, 1, 1]
        for ax in order[:n]:
            reps[ax] = 2
        if len(s) * 2 ** n <= max_atoms:
            yield to_structure(to_atoms(s).repeat(reps))


def first_shell(s, site: int, tol: float = 1.15) -> set[int]:
    """The atoms within tol of the site's nearest-neighbour distance, the site itself included:
    what mostly sets its DOS. The nearest neighbour may be the site's own periodic image (a short
    axis), which no distinct-site distance matrix shows."""
    r = 6.0
    while not (nbrs := s.get_neighbors(s[site], r)):
        r *= 2
    d_min = min(n.nn_distance for n in nbrs)
    return {site} | {int(n.index) for n in nbrs if n.nn_distance <= tol * d_min}


def distant_variants(seed: Seed, allowed, max_atoms: int = 8) -> list[tuple[Crystal, dict]]:
    """Single-atom isovalent swaps beyond the matched site's first shell: in the smallest cell
    (the seed's, or doubled) with an atom outside that shell, each such atom in turn takes a
    same-group neighbour. The site's own shell is untouched, so its DOS should stay near its
    seed's (the lookup's hit) while the compound is new. One variant per symmetry-distinct swap
    (StructureMatcher); the volume follows the new radii; the record (kind "distant") names the swap and the cell."""
    site = seed.hit.site
    for s in _supercells(seed.crystal, max_atoms):
        far = [k for k in range(len(s)) if k not in first_shell(s, site)]
        if far:
            break
    else:
        return []
    matcher = StructureMatcher()
    out, kept = [], []
    for k in far:
        old = s[k].specie.symbol
        for new in isovalent_partners(old, allowed):
            v = s.copy()
            v.replace(k, new)
            v.scale_lattice(s.volume * _volume_ratio(s.composition, v.composition))
            marked = v.copy()       # the matched site marked, so two swaps count as one only if
            marked.replace(site, DummySpecies("X"))     # they sit alike around that very site
            if any(matcher.fit(marked, w) for w in kept):
                continue
            kept.append(marked)
            out.append((Crystal.from_structure(v), {"kind": "distant", "replaced": old, "by": new, "sites": [k],
                                                    "cell_atoms": len(s), "seed_atoms": len(seed.crystal.numbers)}))
    return out


def _radius(el: Element, metallic: bool) -> float:
    return float(el.metallic_radius if metallic else el.atomic_radius)


def _volume_ratio(old, new) -> float:
    """The new composition's summed atomic volumes (Σ n·r³) over the old one's, with metallic radii
    where every element has one. pymatgen's RLSVolumePredictor does not fit here: its atomic radii
    are Slater's, which put Ag 18 % above Au where their metallic radii are equal (1.44 Å), and
    its Σ r·n^⅓ rule swells a cell when one of two like atoms is swapped (Pt2 → PtPd: +60 %)."""
    els = [el for c in (old, new) for el in c]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # "no data for metallic_radius" is the answer, not a fault
        metallic = all(el.metallic_radius is not None for el in els)
        if not metallic and any(el.atomic_radius is None for el in els):
            return 1.0
        num = sum(_radius(el, metallic) ** 3 * n for el, n in new.items())
        den = sum(_radius(el, metallic) ** 3 * n for el, n in old.items())
    return num / den
