"""Judging candidates: validity, DOS match of conditioned sites, symmetry, uniqueness, novelty.

Every check is a plain function of a pymatgen Structure (or of arrays) so it can be tested on
constructed cases. `evaluate_candidates` runs them all and returns one dict per candidate.
"""
from __future__ import annotations

import hashlib
import time
import warnings
from collections import OrderedDict
from functools import lru_cache

import numpy as np
from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from smact.screening import smact_validity

from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.scoring.elements import element_crystals
from dosmatgen_core.structures import to_structure
from dosmatgen_core.training.dataset import mp_structures

MIN_DISTANCE = 0.5            # Å
STRAINED = 0.8                # a closest contact below this share of the covalent radii' sum is strained
# ... and below this, pressed: the predictor's error against the relaxed cell's DFT rises from 0.18
# (0.8 and above) to 0.24-0.29 states/eV (benchmarks/results/strain.json), so a run ranks such cells
# after the rest (pipeline.rank_key); walk 14's masked runs put O–Ti at 0.79 Å first
PRESSED = 0.7
VOLUME_PER_ATOM = (5.0, 80.0)  # Å³ per atom: from dense oxides to alkali metals, with margin


def min_distance(s: Structure) -> float:
    """Shortest interatomic distance with periodic images, an atom's own images included (the
    shortest lattice translation: a generated cell can repeat every 0.7 Å while its distinct
    atoms stay apart; DiffCSP's check misses that)."""
    try:
        shortest = float(min(s.lattice.get_niggli_reduced_lattice().abc))
    except ValueError:          # pymatgen gives up on some near-singular cells: LLL still bounds it
        shortest = float(min(s.lattice.get_lll_reduced_lattice().abc))
    if len(s) == 1:
        return shortest
    d = s.distance_matrix
    return min(float(d[~np.eye(len(s), dtype=bool)].min()), shortest)


def shortest_contact(s: Structure, reach: float = 4.0) -> dict | None:
    """The closest pair of atoms measured against their covalent radii: {"pair": "Na–Cl",
    "distance": Å, "ratio": distance / (r_a + r_b)}. A drawn cell is unrelaxed: a ratio well
    below 1 (0.74 for Na–Cl at 1.99 Å) is a strained contact that relaxation will open, though the
    0.5 Å validity check passes it. None when no pair is within reach (or a radius is unknown)."""
    best = None
    for i, nbrs in enumerate(s.get_all_neighbors(reach)):
        a = s[i].specie.symbol
        for n in nbrs:
            b = n.specie.symbol
            if a not in CovalentRadius.radius or b not in CovalentRadius.radius:
                continue
            ratio = n.nn_distance / (CovalentRadius.radius[a] + CovalentRadius.radius[b])
            if best is None or ratio < best["ratio"]:
                best = {"pair": "–".join(sorted((a, b))), "distance": float(n.nn_distance), "ratio": float(ratio)}
    return best


def pressed(c: dict) -> bool:
    """A candidate record whose closest contact is below PRESSED of the two covalent radii."""
    sc = c.get("shortest_contact")
    return bool(sc) and sc["ratio"] < PRESSED


def intermetallic(chem_formula: str) -> bool:
    """Every element a metal: a cell that needs no charge balance (SMACT counts it as an alloy)."""
    elements = Composition(chem_formula).elements
    return bool(elements) and all(el.is_metal for el in elements)


def charge_neutral(s: Structure) -> tuple[bool, str]:
    """SMACT's test (oxidation states that sum to zero and Pauling-consistent); all-metal
    compositions count as valid alloys."""
    comp = s.composition
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ok = bool(smact_validity(comp, use_pauling_test=True, include_alloys=True))
    except Exception as exc:  # unusual elements SMACT has no data for
        return False, f"no oxidation-state data ({type(exc).__name__})"
    return ok, "some oxidation states balance" if ok else "no oxidation states balance"


def validity(s: Structure) -> dict:
    dmin = min_distance(s)
    vpa = s.volume / len(s)
    neutral, why = charge_neutral(s)
    reasons = []
    if dmin < MIN_DISTANCE:
        reasons.append(f"atoms {dmin:.2f} Å apart (< {MIN_DISTANCE} Å)")
    if not VOLUME_PER_ATOM[0] <= vpa <= VOLUME_PER_ATOM[1]:
        reasons.append(f"volume {vpa:.1f} Å³/atom outside {VOLUME_PER_ATOM[0]:.0f}–{VOLUME_PER_ATOM[1]:.0f}")
    if not neutral:
        reasons.append(why)
    return {"valid": not reasons, "structurally_valid": dmin >= MIN_DISTANCE and VOLUME_PER_ATOM[0] <= vpa <= VOLUME_PER_ATOM[1],
            "charge_neutral": neutral, "min_distance": dmin, "volume_per_atom": vpa, "reasons": reasons,
            "shortest_contact": shortest_contact(s)}


def spacegroups(s: Structure) -> dict:
    """Space group symbol at a tight (0.01 Å) and a loose (0.1 Å) tolerance."""
    out = {}
    for tol in (0.01, 0.1):
        try:
            sga = SpacegroupAnalyzer(s, symprec=tol)
            out[str(tol)] = f"{sga.get_space_group_symbol()} ({sga.get_space_group_number()})"
        except Exception:
            out[str(tol)] = "P1 (1)"
    return out


def matcher() -> StructureMatcher:
    return StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5)


# A relaxed cell is "that known compound" only closer than novelty's tolerances: novelty's matcher
# (ltol 0.2, stol 0.3) pairs walk 11's Au3Ni stretched to c/a 1.22 with L1₂, another crystal with
# another DOS. Two relaxed cells of one compound agree in shape; their volumes can differ by the
# potential's error against the PBE cell the label was calculated on (layered VS2: 23 %), so the
# volume is scaled away and reported beside the match (benchmarks/results/relaxed-match.json: the
# two DFT curves lie a median 0.034 states/eV apart within 5 % of volume, 0.177 beyond it).
RELAXED_VOLUME_TOL = 0.05          # volume per atom, relative: beyond it the card says the curves may differ


def relaxed_matcher() -> StructureMatcher:
    return StructureMatcher(ltol=0.1, stol=0.2, angle_tol=5)


def same_compound(relaxed: Structure, known: Structure) -> bool:
    """Whether a relaxed cell is the known structure itself: a match at relaxed_matcher's
    tolerances (shape and positions; the volume scaled away, volume_ratio says it)."""
    return bool(relaxed_matcher().fit(relaxed, known))


def corresponding_site(s: Structure, i: int, t: Structure, tolerances=((0.1, 0.2), (0.2, 0.3))) -> int | None:
    """The site of t (a cell that matches s, a supercell of either allowed) that is s's site i, by
    elements and positions: the matcher lays one cell on the other (get_s2_like_s1) and the site
    laid on i is it. Tried at each (ltol, stol) in turn, the relaxed match's then novelty's.
    Surroundings alone took one of YMg3's two Mg sites for the other. None when the cells do not
    match."""
    for ltol, stol in tolerances:
        sm = StructureMatcher(ltol=ltol, stol=stol, angle_tol=5, primitive_cell=False, attempt_supercell=True)
        if len(s) >= len(t):       # t laid on s, site for site, carrying its own indices
            tagged = t.copy()
            tagged.add_site_property("index", list(range(len(t))))
            like = sm.get_s2_like_s1(s, tagged)
            if like is not None:
                return int(like[i].properties["index"])
        else:                      # s laid on t: any image of i is the site
            tagged = s.copy()
            tagged.add_site_property("index", list(range(len(s))))
            like = sm.get_s2_like_s1(t, tagged)
            if like is not None:
                return next((j for j, x in enumerate(like) if x.properties["index"] == i), None)
    return None


def volume_ratio(a: Structure, b: Structure) -> float:
    """Volume per atom of a over b's."""
    return (a.volume / len(a)) / (b.volume / len(b))


def same_arrangement(a: Structure, b: Structure) -> bool:
    """Whether two cells place their atoms alike, whatever the elements: a decoration of one
    framework (a swap, a sublattice split or merged: Ni3Al → NiPd2Al) reads True, another
    arrangement False. Every site is taken as one element and the cells compared with the novelty
    matcher (fit_anonymous would call a split sublattice another structure type)."""
    def bare(s: Structure) -> Structure:
        return Structure(s.lattice, ["Cu"] * len(s), s.frac_coords)
    return bool(matcher().fit(bare(a), bare(b)))


def duplicate_of(structs: list[Structure]) -> list[int | None]:
    """For each structure, the index of the earlier one it copies (the first of its group of
    equivalent structures in the list), or None for that first one."""
    sm = matcher()
    firsts: list[int] = []
    out: list[int | None] = []
    for k, s in enumerate(structs):
        rep = next((j for j in firsts if s.composition.reduced_formula == structs[j].composition.reduced_formula
                    and sm.fit(s, structs[j])), None)
        out.append(rep)
        if rep is None:
            firsts.append(k)
    return out


def unique_flags(structs: list[Structure]) -> list[bool]:
    """True for the first of each group of equivalent structures in the list."""
    return [rep is None for rep in duplicate_of(structs)]


@lru_cache(maxsize=1)
def _known_by_formula(db_url: str | None) -> dict:
    """Known structures (the shared MP tables, the elements' reference crystals and the reference
    database) by reduced formula, each id once: a labelled MP structure is in both (and some ids in
    both MP tables), and a card listed 'Rh3Sn · mp-978974, Rh3Sn · mp-978974'."""
    known: dict[str, list] = {}
    seen: set = set()

    def add(mid, s):
        if mid not in seen:
            seen.add(mid)
            known.setdefault(s.composition.reduced_formula, []).append((mid, s))
    for mid, s in mp_structures():
        add(mid, s)
    for mid, s in element_crystals():
        add(mid, s)
    if db_url:
        db = open_db(db_url)
        for row in db.db.select():
            add(row.material_id, to_structure(row.toatoms()))
    return known


def load_known_tables(db_url: str | None) -> None:
    """Build the known-structure tables now rather than at the first novelty check."""
    _known_by_formula(db_url)


def known_tables_loaded() -> bool:
    """Whether this process has built the known-structure tables (its first novelty check does)."""
    return _known_by_formula.cache_info().currsize > 0


MATCH_MEMO_SIZE = 4096
_match_memo: OrderedDict = OrderedDict()


def fingerprint(s: Structure) -> bytes:
    """The cell's exact content (atoms in order, lattice, coordinates) as a key."""
    h = hashlib.sha1(np.asarray(s.atomic_numbers, np.int64).tobytes())
    h.update(np.round(s.lattice.matrix, 8).tobytes())
    h.update(np.round(s.frac_coords, 8).tobytes())
    return h.digest()


def known_match(s: Structure, db_url: str | None = None, skip=(), relaxed: bool = False) -> tuple[str, Structure] | None:
    """(id, structure) of the first known structure that StructureMatcher matches, else None.
    skip: ids not to count (a checked cell's own label, once the db holds it); relaxed: s is a
    relaxed cell, matched as the same compound (same_compound), not by novelty's tolerances.
    Remembered per cell (as the known tables, for the process): a seeded run asks for its draws
    twice, once to decide on a second batch and once when scoring them."""
    key = (db_url, fingerprint(s), tuple(sorted(skip)), relaxed)
    if key in _match_memo:
        _match_memo.move_to_end(key)
        return _match_memo[key]
    fits = relaxed_matcher().fit if relaxed else matcher().fit     # relaxed: same_compound's test
    hit = None
    for mid, t in _known_by_formula(db_url).get(s.composition.reduced_formula, []):
        if mid not in skip and fits(s, t):
            hit = mid, t
            break
    _match_memo[key] = hit
    if len(_match_memo) > MATCH_MEMO_SIZE:
        _match_memo.popitem(last=False)
    return hit


def novelty(s: Structure, db_url: str | None = None) -> tuple[bool, str | None]:
    """(novel?, id of the matching known structure)."""
    hit = known_match(s, db_url)
    return (True, None) if hit is None else (False, hit[0])


def dos_match(predicted: np.ndarray, targets: dict[int, np.ndarray], window=None) -> dict[int, dict]:
    """Metrics of each conditioned site: predicted site DOS against its target (on the targets'
    window, where they are known, if they have one)."""
    return {int(i): dosmod.match_metrics(np.asarray(g), predicted[i], window) for i, g in targets.items()}


def evaluate_candidates(structs: list[Structure], targets: list[dict[int, np.ndarray]], predictor=None,
                        db_url: str | None = None, check_novelty: bool = True, window=None) -> list[dict]:
    """All checks for a run's candidates, with seconds spent per check. window: where the targets
    are known (dos.window_slice), None for the whole grid."""
    timing = {"validity": 0.0, "dos": 0.0, "symmetry": 0.0, "uniqueness": 0.0, "novelty": 0.0}
    out = [{} for _ in structs]
    t = time.perf_counter()
    for o, s in zip(out, structs):
        o.update(validity(s))
    timing["validity"] = time.perf_counter() - t
    t = time.perf_counter()
    if predictor is not None:
        preds, spreads = predictor.predict_with_spread(
            [(np.array(s.atomic_numbers), s.frac_coords, s.lattice.matrix) for s in structs])
        for o, p, sd, tg in zip(out, preds, spreads, targets):
            o["predicted_dos"] = p
            o["predicted_spread"] = predictor.calibrated(sd)    # the app's ±1σ band (calibrated on DFT)
            o["dos_match"] = dos_match(p, tg, window)
            o["dos_mae"] = float(np.mean([m["mae"] for m in o["dos_match"].values()])) if tg else float("nan")
    timing["dos"] = time.perf_counter() - t
    t = time.perf_counter()
    for o, s in zip(out, structs):
        o["spacegroup"] = spacegroups(s)
    timing["symmetry"] = time.perf_counter() - t
    t = time.perf_counter()
    for o, u in zip(out, unique_flags(structs)):
        o["unique"] = u
    timing["uniqueness"] = time.perf_counter() - t
    if check_novelty:
        t = time.perf_counter()
        for o, s in zip(out, structs):
            # an invalid cell is not compared with known ones: neither novel nor known (None)
            if not o["structurally_valid"]:
                o["novel"], o["matches"] = None, None
                continue
            hit = known_match(s, db_url)
            o["novel"], o["matches"] = hit is None, hit[0] if hit else None
            if hit is None:     # new as drawn; known ones of its composition are what it may relax into
                same = [mid for mid, _ in _known_by_formula(db_url).get(s.composition.reduced_formula, [])]
                o["same_formula"], o["same_formula_n"] = same[:3], len(same)
            if hit is not None:
                # the matcher's tolerances are looser than the symmetry search's: a distorted copy
                # of a cubic structure can read Cm here, so the card names the known one's group too
                o["matches_spacegroup"] = spacegroups(hit[1])["0.1"]
        timing["novelty"] = time.perf_counter() - t
    n = max(len(structs), 1)
    for o in out:
        o["seconds_per_check"] = {k: v / n for k, v in timing.items()}
    return out
