"""Generation seeded by known matches: the labelled sites closest to the target, used as templates.

A lookup among the labels already beats unguided generation under DFT (the nearest labelled
site has cosine >= 0.9 for most held-out targets), so the seeded mode starts from there: the
top-k structures of the site search become templates, noised to a measured strength, with the
matching site conditioned on the target (and optionally held to its element). Each candidate
carries the seed it came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.sampling import modes
from dosmatgen_core.sampling.sampler import SampleSpec
from dosmatgen_core.scoring.search import SiteHit, site_index
from dosmatgen_core.structures import Crystal, to_atoms, to_structure


@dataclass(frozen=True)
class Seed:
    hit: SiteHit            # the known site and how close its DFT DOS is to the target
    crystal: Crystal        # its labelled cell, sites in the label's order (row i = site i)

    def record(self) -> dict:
        return {"material_id": self.hit.material_id, "formula": self.hit.formula, "site": self.hit.site,
                "element": self.hit.element, "mae": self.hit.mae, "cosine": self.hit.cosine}


def find_seeds(target, db_url: str, k: int = 3, by: str = "mae", exclude=(), max_atoms: int = 8,
               index=None, crystal_of=None) -> list[Seed]:
    """The k labelled structures (at most max_atoms atoms) whose best site is closest to target.

    index, crystal_of: a SiteIndex to search and a material id → Crystal lookup, instead of the
    reference database's own (a benchmark searches every label shard, which the db may lag)."""
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"the number of seeds must be a whole number >= 1, not {k!r}")
    index = index if index is not None else site_index(db_url)
    small = set(np.unique(index.material_ids[index.n_atoms > max_atoms]).tolist())
    hits = index.search(target, top=k, by=by, exclude=set(exclude) | small, per_structure=True)
    if not hits:
        raise ValueError(f"no labelled structure of at most {max_atoms} atoms to seed from")
    if crystal_of is None:
        db = open_db(str(db_url))

        def crystal_of(mid: str) -> Crystal:
            return Crystal.from_structure(to_structure(db.get(mid).atoms))
    return [Seed(h, crystal_of(h.material_id)) for h in hits]


def shell_template(crystal: Crystal, site: int, max_atoms: int = 8, tol: float = 1.15) -> tuple[Crystal, list[int]]:
    """The seed's cell, doubled along its shortest axis when that fits in max_atoms (so that atoms
    beyond the matched site's first shell can change), and that first shell: the atoms within tol
    of the nearest-neighbour distance (minimum image), to pin. The matched site keeps its index:
    ASE's repeat puts the first image's atoms first, in their order."""
    s = crystal.to_structure()
    if 2 * len(s) <= max_atoms:
        reps = [1, 1, 1]
        reps[int(np.argmin(s.lattice.abc))] = 2
        s = to_structure(to_atoms(s).repeat(reps))
    if len(s) == 1:
        return Crystal.from_structure(s), []
    d = s.distance_matrix[site].copy()
    d[site] = np.inf
    shell = [int(k) for k in np.flatnonzero(d <= tol * d.min())]
    return Crystal.from_structure(s), shell


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
