"""Generation seeded by known matches: seeds from the site search, each candidate's conditioned
site is its seed's matching site (in the seed's own order), and the run records where it came from."""
import numpy as np
import pytest

from dosmatgen_core.candidates.pipeline import Request, run_generation
from dosmatgen_core.candidates.runs import RunStore, structure_of
from dosmatgen_core.candidates.seeding import drop_copies, find_seeds, seeded_specs
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.names import formula
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.paths import DB_URL, MODEL_PATH, PREDICTOR_PATH
from dosmatgen_core.scoring import evaluate
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.search import site_index
from dosmatgen_core.structures import to_structure
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Composition, Lattice, Structure
from dosmatgen_core.settings import PRESET_ID


@pytest.fixture(scope="module")
def ni_target():
    ref = open_db(DB_URL).get(PRESET_ID)
    return ref.site_dos[ref.symbols.index("Ni")]


def test_seeds_are_the_closest_known_sites_and_keep_their_site_order(ni_target):
    seeds = find_seeds(ni_target, DB_URL, k=3, exclude={PRESET_ID})
    assert len(seeds) == 3 and PRESET_ID not in {s.hit.material_id for s in seeds}
    assert [s.hit.mae for s in seeds] == sorted(s.hit.mae for s in seeds)
    db = open_db(DB_URL)
    for s in seeds:
        ref = db.get(s.hit.material_id)
        # the seed's crystal is the labelled cell in its label order: site i has DOS row i
        assert [int(z) for z in s.crystal.numbers] == list(ref.atoms.numbers)
        assert ref.symbols[s.hit.site] == s.hit.element
        assert s.hit.mae == pytest.approx(float(np.abs(ref.site_dos[s.hit.site] - ni_target).mean()), abs=1e-4)
        assert len(ref.symbols) <= 8
    # without the exclusion, the target's own structure is the exact hit
    assert find_seeds(ni_target, DB_URL, k=1)[0].hit.material_id == PRESET_ID


def test_seeded_specs_condition_each_seeds_matching_site(ni_target):
    seeds = find_seeds(ni_target, DB_URL, k=2, exclude={PRESET_ID})
    specs = seeded_specs(ni_target, seeds, 5, 0.5, fix_element=True)
    assert [sp.tag["seed"]["material_id"] for sp in specs] == [seeds[i % 2].hit.material_id for i in range(5)]
    for sp in specs:
        seed = next(s for s in seeds if s.hit.material_id == sp.tag["seed"]["material_id"])
        site = seed.hit.site
        assert np.flatnonzero(sp.cond_mask).tolist() == [site] and sp.tag["site_to_target"] == {site: 0}
        assert np.allclose(sp.cond_dos[site], ni_target, atol=1e-5)
        assert sp.fixed_z[site] == seed.crystal.numbers[site] and sp.template is seed.crystal
    with pytest.raises(ValueError, match="at least one seed"):
        seeded_specs(ni_target, [], 2, 0.5)
    kept = seeded_specs(ni_target, seeds, 2, 0.5, keep_composition=True)
    assert [sp.fixed_z.tolist() for sp in kept] == [[int(z) for z in s.crystal.numbers] for s in seeds]


def test_a_seeded_run_records_its_seeds_and_scores_the_seed_site(tmp_path, ni_target):
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=3, steps=8, particles=1,
                  seed_exclude=[PRESET_ID], fix_element=True, baseline=False, substitutions=False)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=False)
    assert run["status"] == "done" and len(run["candidates"]) == 3
    for c in run["candidates"]:
        (site, row), = c["site_to_target"].items()
        assert row == 0 and int(site) == c["seed"]["site"]
        s = structure_of(c)
        assert s[int(site)].specie.symbol == c["seed"]["element"]          # fix_element held it
        assert c["dos_mae"] == pytest.approx(c["dos_match"][int(site)]["mae"])


def test_substitutions_join_the_drawn_candidates_with_their_seed_and_swap(tmp_path, ni_target):
    """substitutions=True: each seed's same-group swaps are candidates beside the draws, scored on
    the seed's matching site, in the seed's site order, and a baseline partners only the draws."""
    from studio import shared as studio_shared
    from dosmatgen_core.candidates.words import origin_text
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=8, particles=1,
                  seed_exclude=[PRESET_ID], substitutions=True, baseline=True)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=False)
    subs = [c for c in run["candidates"] if c["origin"] == "substitution"]
    drawn = [c for c in run["candidates"] if c["origin"] == "generator"]
    assert len(drawn) == 2 and 1 <= len(subs) <= 2 and len(run["baseline"]) == 2
    seeds = {s.hit.material_id: s for s in req.seeds()}
    for c in subs:
        seed, sub = seeds[c["seed"]["material_id"]], c["seed"]["substitution"]
        before = [x.specie.symbol for x in seed.crystal.to_structure()]
        after = [x.specie.symbol for x in structure_of(c)]
        assert after == [sub["by"] if k in sub["sites"] else e for k, e in enumerate(before)]
        assert all(before[k] == sub["replaced"] for k in sub["sites"]) and seed.hit.site not in sub["sites"]
        assert sub["kind"] == "element"
        (site, row), = c["site_to_target"].items()
        assert int(site) == seed.hit.site and row == 0
        assert c["dos_mae"] == pytest.approx(c["dos_match"][int(site)]["mae"])
        named = studio_shared.material_name(seed.hit.material_id, seed.hit.formula)
        assert origin_text(c).startswith(f"Substitution of {named}") and f"→ {sub['by']}" in origin_text(c)
    assert origin_text(drawn[0]).startswith("Grown by the generator from")
    assert [c["rank"] for c in run["candidates"]] == list(range(1, len(run["candidates"]) + 1))
    # the command line says it too (a walk: "site 2: predicted DOS MAE" with no element, no seed)
    from dosmatgen_core.cli.generate import ranked_lines
    lines = ranked_lines(run, True)
    for c in run["candidates"]:
        (site, _), = c["site_to_target"].items()
        head = next(ln for ln in lines if ln.startswith(f"#{c['rank']:>2} "))
        assert f"site {site} ({structure_of(c)[int(site)].specie.symbol}): predicted DOS MAE" in head
        assert lines[lines.index(head) + 1] == f"    {origin_text(c)}"


def test_a_new_candidate_says_whether_it_keeps_its_seeds_arrangement(tmp_path, ni_target):
    """Every swap keeps its seed's arrangement of sites, a split or merged sublattice too
    (fit_anonymous called AgAu2Ni → NiAu3 another structure type), and rock salt does not; each new
    candidate of a run says which it is, on its record and in its origin line."""
    from dosmatgen_core.candidates.pipeline import supported_elements
    from dosmatgen_core.candidates.seeding import substituted_variants
    from dosmatgen_core.candidates.words import origin_text
    from dosmatgen_core.scoring.evaluate import matcher, same_arrangement
    seed = find_seeds(ni_target, DB_URL, k=1, exclude={PRESET_ID})[0]
    cell = seed.crystal.to_structure()
    swaps = [v.to_structure() for v, _ in substituted_variants(seed, supported_elements())]
    assert any(not matcher().fit_anonymous(v, cell) for v in swaps)       # a merged sublattice: AgAu2Ni → NiAu3
    assert swaps and all(same_arrangement(v, cell) for v in swaps)
    rock_salt = Structure(Lattice.cubic(5.6), ["Na"] * 4 + ["Cl"] * 4,
                          [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0], [.5, .5, .5], [.5, 0, 0], [0, .5, 0], [0, 0, .5]])
    assert not same_arrangement(rock_salt, cell)
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=3, steps=8, particles=1,
                  seed_exclude=[PRESET_ID], substitutions=True, baseline=False)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=True)
    new = [c for c in run["candidates"] if c.get("novel")]
    assert new and all("seed_type" not in c for c in run["candidates"] if not c.get("novel"))
    for c in new:
        assert isinstance(c["seed_type"], bool)
        f = formula(c["seed"]["formula"])           # written as the cards write it: TiH, not H2Ti2
        words = (f"It keeps {f}'s arrangement of sites, with other elements on them."
                 if c["seed_type"] else f"Its sites are arranged unlike {f}'s.")
        assert origin_text(c).endswith(words)
    assert formula("H2Ti2") == "TiH" and origin_text({"seed": {"material_id": "mp-1", "formula": "H2Ti2", "element": "Ti",
                                                             "site": 0, "mae": 0.1}, "seed_type": False}).endswith(
        "Its sites are arranged unlike TiH's.")
    assert all(c["seed_type"] for c in new if c["origin"] == "substitution")


def test_distant_swaps_keep_the_matched_sites_neighbours_in_the_run(tmp_path, ni_target):
    """distant_swaps=True: each substituted candidate changes one atom outside its matched site's
    first shell (a doubled cell where needed), and its card says so."""
    from dosmatgen_core.candidates.seeding import first_shell
    from dosmatgen_core.candidates.words import origin_text
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=8, particles=1,
                  seed_exclude=[PRESET_ID], substitutions=True, distant_swaps=True, baseline=False)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=False)
    subs = [c for c in run["candidates"] if c["origin"] == "substitution"]
    assert 1 <= len(subs) <= 2
    seeds = {s.hit.material_id: s for s in req.seeds()}
    for c in subs:
        seed, sub = seeds[c["seed"]["material_id"]], c["seed"]["substitution"]
        s = structure_of(c)
        (site, _), = c["site_to_target"].items()
        (k,) = sub["sites"]
        assert int(site) == seed.hit.site and s[k].specie.symbol == sub["by"] and len(s) == sub["cell_atoms"] <= 8
        assert sub["kind"] == "distant"
        assert k not in first_shell(s, int(site))
        assert "beyond the matching atom's neighbours" in origin_text(c)


def test_seeded_request_needs_one_target():
    with pytest.raises(ValueError, match="one target"):
        Request(mode="seeded", targets=[], n_candidates=2).specs()


def test_a_request_searches_its_seeds_once_per_target(monkeypatch, ni_target):
    # the CLI and the job queue validate with specs() before the run calls it again: the seed
    # search (a scan of every labelled site) must not run once per call
    import dosmatgen_core.candidates.pipeline as pipeline
    calls = []

    def counting(target, *a, **kw):
        calls.append(np.asarray(target).copy())
        return find_seeds(target, *a, **kw)
    monkeypatch.setattr(pipeline, "find_seeds", counting)
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, seed_exclude=[PRESET_ID])
    first = [s.tag["seed"] for s in req.specs()]
    assert [s.tag["seed"] for s in req.specs()] == first and len(calls) == 1
    req.targets = [(np.asarray(ni_target) * 0.5).tolist()]     # a new target is searched afresh
    req.specs()
    assert len(calls) == 2 and np.allclose(calls[1], np.asarray(ni_target) * 0.5)


def test_keep_shell_pins_the_matched_sites_nearest_neighbours_in_a_doubled_cell(ni_target):
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.candidates.seeding import shell_template
    from dosmatgen_core.structures import Crystal
    # CsCl: Cs at the corner, 8 Cl neighbours at √3/2·a (one atom each, so one Cl site in the cell)
    cscl = Crystal.from_structure(Structure(Lattice.cubic(4.1), ["Cs", "Cl"], [[0, 0, 0], [.5, .5, .5]]))
    cell, shell = shell_template(cscl, 0, max_atoms=8)
    s = cell.to_structure()
    assert len(s) == 4 and s.volume == pytest.approx(2 * 4.1 ** 3)
    assert [x.specie.symbol for x in s][:2] == ["Cs", "Cl"]          # the first image keeps the seed's order
    assert sorted(s[k].specie.symbol for k in shell) == ["Cl", "Cl"]   # both Cl images sit at the first shell
    assert 0 not in shell
    # no room to double: the seed's own cell, same shell
    same, shell1 = shell_template(cscl, 0, max_atoms=3)
    assert np.allclose(same.frac, cscl.frac) and shell1 == [1]
    assert shell_template(Crystal.from_structure(Structure(Lattice.cubic(3.0), ["Cu"], [[0, 0, 0]])), 0, max_atoms=1)[1] == []
    # in specs: the matched site conditioned, its shell pinned, its seed recorded
    seeds = find_seeds(ni_target, DB_URL, k=2, exclude={PRESET_ID})
    for sp, seed in zip(seeded_specs(ni_target, seeds, 2, 0.5, keep_shell=True), seeds):
        site = seed.hit.site
        cell, shell = shell_template(seed.crystal, site)
        assert np.flatnonzero(sp.cond_mask).tolist() == [site] and sp.tag["site_to_target"] == {site: 0}
        assert np.flatnonzero(sp.pinned).tolist() == shell and shell and site not in shell
        assert sp.template.numbers[site] == seed.crystal.numbers[site] and sp.n_atoms == len(cell.numbers)


def test_substituted_variants_swap_same_group_neighbours_and_leave_the_matched_site_alone():
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.candidates.seeding import Seed, isovalent_partners, substituted_variants
    from dosmatgen_core.labels.labeller import supported_elements
    from dosmatgen_core.scoring.search import SiteHit
    from dosmatgen_core.structures import Crystal
    allowed = supported_elements()
    assert isovalent_partners("Au", allowed) == ["Ag"]
    assert isovalent_partners("Al", allowed) == ["Ga"]          # B is no metal: a different bonding
    assert isovalent_partners("Li", allowed) == ["Na"]          # not H
    assert isovalent_partners("Ni", {"Ni", "Cu"}) == []         # only what the DFT recipe calculates
    assert isovalent_partners("La", allowed) == []
    # Au3Ni (L1_2), Ni listed second: the matched Ni keeps its index, species and position
    s = Structure(Lattice.cubic(3.8), ["Au", "Ni", "Au", "Au"], [[.5, .5, 0], [0, 0, 0], [.5, 0, .5], [0, .5, .5]])
    hit = SiteHit("mp-x", "Au3Ni", 1, "Ni", 4, 0.1, 0.95, 0.0)
    got = {r["by"]: (c.to_structure(), r) for c, r in substituted_variants(Seed(hit, Crystal.from_structure(s)), allowed)}
    assert set(got) == {"Ag"}                                    # Ni is the only Ni: nothing else to swap
    v, rec = got["Ag"]
    assert [x.specie.symbol for x in v] == ["Ag", "Ni", "Ag", "Ag"] and rec["sites"] == [0, 2, 3]
    assert np.allclose(v.frac_coords, s.frac_coords)
    assert v.volume == pytest.approx(s.volume, rel=1e-6)        # Ag and Au: the same metallic radius
    # Pt2 → PtPd: the volume follows the summed atomic volumes (the like atom is not the matched one)
    cs = Structure(Lattice.cubic(6.0), ["Cs", "Pt", "Pt"], [[0, 0, 0], [.5, .5, .5], [.5, .5, 0]])
    hit = SiteHit("mp-y", "CsPt2", 1, "Pt", 3, 0.1, 0.95, 0.0)
    by = {r["by"]: (c.to_structure(), r) for c, r in substituted_variants(Seed(hit, Crystal.from_structure(cs)), allowed)}
    assert set(by) == {"Pd", "Rb"}
    pd, rec = by["Pd"]
    assert [x.specie.symbol for x in pd] == ["Cs", "Pt", "Pd"] and rec == {"kind": "element", "replaced": "Pt", "by": "Pd", "sites": [2]}
    assert 0.97 < pd.volume / cs.volume < 1.0                   # Pd is a little smaller than Pt
    assert by["Rb"][0].volume < 0.9 * cs.volume                 # Rb is much smaller than Cs


def test_distant_variants_swap_one_atom_beyond_the_matched_sites_first_shell():
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.candidates.seeding import Seed, distant_variants, first_shell
    from dosmatgen_core.labels.labeller import supported_elements
    from dosmatgen_core.scoring.search import SiteHit
    from dosmatgen_core.structures import Crystal
    allowed = supported_elements()
    # Au3Ni (L1_2): every Au touches the Ni, so the cell is doubled along a; there the Ni image and
    # the Au image at (a, a/2, a/2) lie beyond the Ni's 12 Au neighbours
    s = Structure(Lattice.cubic(3.8), ["Au", "Ni", "Au", "Au"], [[.5, .5, 0], [0, 0, 0], [.5, 0, .5], [0, .5, .5]])
    seed = Seed(SiteHit("mp-x", "Au3Ni", 1, "Ni", 4, 0.1, 0.95, 0.0), Crystal.from_structure(s))
    got = {r["by"]: (c.to_structure(), r) for c, r in distant_variants(seed, allowed)}
    assert {b: r["sites"] for b, (_, r) in got.items()} == {"Pd": [5], "Ag": [7]}
    for v, rec in got.values():
        assert len(v) == 8 and rec["cell_atoms"] == 8 and rec["seed_atoms"] == 4
        assert v[1].specie.symbol == "Ni" and np.allclose(v[1].frac_coords, [0, 0, 0])  # the matched site keeps its row
        shell = first_shell(v, 1) - {1}
        assert {v[k].specie.symbol for k in shell} == {"Au"} and rec["sites"][0] not in shell    # its shell intact
        assert np.isclose(v.distance_matrix[1][sorted(shell)].max(), 3.8 / 2 ** 0.5, rtol=0.02)
    assert got["Pd"][0].composition.formula == "Ni1 Pd1 Au6"
    assert distant_variants(seed, allowed, max_atoms=4) == []           # no far atom fits in 4 atoms
    # a Ni chain with Au layers along c: the two Au layers 3 Å away are alike around the Ni (one
    # variant of the two), the one 6 Å away is another
    t = Structure(Lattice.tetragonal(2.5, 12.0), ["Ni", "Au", "Au", "Au"], [[0, 0, 0], [0, 0, .25], [0, 0, .5], [0, 0, .75]])
    seed = Seed(SiteHit("mp-y", "Au3Ni", 0, "Ni", 4, 0.1, 0.95, 0.0), Crystal.from_structure(t))
    got = distant_variants(seed, allowed)
    assert sorted(r["sites"][0] for _, r in got) == [1, 2] and {r["by"] for _, r in got} == {"Ag"}
    for c, r in got:
        v = c.to_structure()
        assert len(v) == 4 and v[0].specie.symbol == "Ni" and v[r["sites"][0]].specie.symbol == "Ag"


def test_the_cli_passes_substitutions_to_the_request():
    import argparse
    from dosmatgen_core.cli import generate as cli_generate
    from dosmatgen_core.settings import SHIPPED
    p = argparse.ArgumentParser()
    cli_generate.add_parsers(p.add_subparsers())
    for flag, want in (([], SHIPPED.substitutions), (["--substitutions"], True), (["--no-substitutions"], False)):
        kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", *flag]), DB_URL)
        assert kw["substitutions"] is want and Request(mode="seeded", **kw).substitutions is want
    for flag, want in (([], SHIPPED.distant_swaps), (["--distant-swaps"], True), (["--no-distant-swaps"], False)):
        kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", *flag]), DB_URL)
        assert kw["distant_swaps"] is want and Request(mode="seeded", **kw).distant_swaps is want
    for flag, want in (([], SHIPPED.top_up), (["--top-up", "0"], 0.0), (["--top-up", "0.3"], 0.3)):
        kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", *flag]), DB_URL)
        assert kw["top_up"] == want and Request(mode="seeded", **kw).top_up == want
    from dosmatgen_core.checks import UserError
    for bad in ("1.5", "-0.1", "nan"):
        with pytest.raises(UserError, match="top-up is"):
            cli_generate._targets_and_template(p.parse_args(["generate", "--top-up", bad]), DB_URL)


def test_a_distant_swaps_card_says_the_cell_grew_and_the_neighbours_stayed():
    from dosmatgen_core.candidates.words import origin_text
    seed = {"material_id": "mp-1", "formula": "Au3Ni", "site": 1, "element": "Ni", "mae": 0.1, "cosine": 0.95}
    far = {**seed, "substitution": {"replaced": "Ni", "by": "Pd", "sites": [5], "cell_atoms": 8, "seed_atoms": 4}}
    text = origin_text({"origin": "substitution", "seed": far})
    assert "Ni → Pd on site 5, in its cell enlarged to 8 atoms, beyond the matching atom's neighbours." in text
    same = {**seed, "substitution": {"replaced": "K", "by": "Na", "sites": [0], "cell_atoms": 5, "seed_atoms": 5}}
    assert "enlarged" not in origin_text({"origin": "substitution", "seed": same})
    near = {**seed, "substitution": {"replaced": "Au", "by": "Ag", "sites": [0, 2, 3]}}
    assert origin_text({"origin": "substitution", "seed": near}).endswith("Au → Ag on sites 0, 2, 3.")
    # the kind the record names wins; records from before it was stored fall back on the cell
    tagged = {**seed, "substitution": {"kind": "distant", "replaced": "K", "by": "Na", "sites": [0]}}
    assert origin_text({"origin": "substitution", "seed": tagged}).endswith("beyond the matching atom's neighbours.")
    whole = {**seed, "substitution": {"kind": "element", "replaced": "K", "by": "Na", "sites": [0], "cell_atoms": 5}}
    assert "neighbours" not in origin_text({"origin": "substitution", "seed": whole})


def test_the_progress_line_says_what_is_being_sampled(tmp_path, ni_target):
    seen = []
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=3, steps=4, particles=2,
                  seed_exclude=[PRESET_ID], substitutions=False, baseline=True)
    from dosmatgen_core.candidates.pipeline import shipped_guide
    run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), guide=shipped_guide("cpu"),
                   store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=False,
                   progress=lambda f, eta, msg: seen.append((f, msg)))
    msgs = [m for _, m in seen]
    assert "sampling 3 candidates × 2 steered trajectories: step 4/4" in msgs
    # 6 structures in two chunks: the bar moves on between them (it sat at 90 % through scoring)
    scoring = [f for f, m in seen if m.startswith("scoring structures")]
    assert len(scoring) == 2 and 0.9 <= scoring[0] < scoring[1] < 1.0
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_the_bar_moves_through_the_baseline_and_the_novelty_check(tmp_path, ni_target):
    """A steered run draws its baseline apart and then asks which draws are new: both say so, and
    the bar never goes back (the page sat at 'step 100/100' for minutes through both)."""
    seen = []
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=4, particles=2,
                  seed_exclude=[PRESET_ID], substitutions=False, baseline=True, stability=False)
    from dosmatgen_core.candidates.pipeline import shipped_guide
    run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH), guide=shipped_guide("cpu"),
                   store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=True,
                   progress=lambda f, eta, msg: seen.append((f, msg)))
    msgs = [m for _, m in seen]
    base = [f for f, m in seen if m.startswith("drawing 2 unconditional baseline samples")]
    assert base and any(m.endswith("step 4/4") for m in msgs if m.startswith("drawing 2 unconditional"))
    assert "checking which draws are new crystals (against the known structures)" in msgs
    steered = [f for f, m in seen if m.startswith("sampling 2 candidates × 2 steered")]
    assert max(steered) <= min(base) and max(base) <= 0.9 + 1e-9
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions)


def test_a_request_takes_its_seeds_in_the_order_it_names_and_refuses_an_unknown_one(ni_target):
    import argparse
    from dosmatgen_core import checks
    from dosmatgen_core.cli import generate as cli_generate
    from dosmatgen_core.scoring.search import site_index
    by_cos = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, seed_exclude=[PRESET_ID],
                     seed_by="cosine")
    got = [s.hit for s in by_cos.seeds()]
    assert [h.cosine for h in got] == sorted((h.cosine for h in got), reverse=True)
    # the first seed is the search's best shape among cells the DFT check takes, copies of the
    # left-out preset (candidates that relaxed into it) left out too
    db = open_db(DB_URL)
    hits = drop_copies(site_index(DB_URL).search(ni_target, top=50, by="cosine", exclude={PRESET_ID}),
                       [to_structure(db.get(PRESET_ID).atoms)], lambda mid: to_structure(db.get(mid).atoms))
    best = next(h for h in hits if db.get(h.material_id).atoms.get_global_number_of_atoms() <= 8)
    assert (got[0].material_id, got[0].site) == (best.material_id, best.site)
    # shape does not depend on height: half the curve takes the same seeds by cosine, other ones by MAE
    half = (np.asarray(ni_target) * 0.5).tolist()
    by_cos.targets = [half]
    assert [s.hit.material_id for s in by_cos.seeds()] == [h.material_id for h in got]
    by_mae = Request(mode="seeded", targets=[half], n_candidates=2, seed_exclude=[PRESET_ID])
    assert [s.hit.material_id for s in by_mae.seeds()] != [h.material_id for h in got]
    with pytest.raises(checks.UserError, match="seeds cannot be chosen by 'shape'") as exc:
        Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, seed_by="shape").specs()
    assert exc.value.field == "seed_by"
    p = argparse.ArgumentParser()
    cli_generate.add_parsers(p.add_subparsers())
    kw, _ = cli_generate._targets_and_template(p.parse_args(["generate", "--seed-by", "cosine"]), DB_URL)
    assert Request(mode="seeded", **kw).seed_by == "cosine"


def test_a_copy_of_the_left_out_material_under_another_id_is_no_seed():
    """The reference is left out of the seeds; a DFT-checked candidate that relaxed into the very
    same structure is a label of its own id, and must go too. The preset's Au3Ni has such copies."""
    db = open_db(DB_URL)
    ref = db.get(PRESET_ID)
    ni = ref.symbols.index("Ni")
    own = to_structure(ref.atoms)
    hits = site_index(DB_URL).search(ref.site_dos[ni], top=12, per_structure=True, exclude={PRESET_ID})
    copies = [h for h in hits if Composition(h.formula).reduced_formula == own.composition.reduced_formula
              and StructureMatcher().fit(to_structure(db.get(h.material_id).atoms), own)]
    assert copies, "the shipped database has no copy of the preset to test with"
    kept = drop_copies(hits, [own], lambda mid: to_structure(db.get(mid).atoms))
    assert not {h.material_id for h in copies} & {h.material_id for h in kept}
    assert len(kept) == len(hits) - len(copies)
    seeds = find_seeds(ref.site_dos[ni], DB_URL, k=3, exclude={PRESET_ID})
    assert len(seeds) == 3 and not any(StructureMatcher().fit(s.crystal.to_structure(), own) for s in seeds)


def test_no_swap_hands_back_the_reference_and_a_draw_that_does_is_marked(ni_target):
    """Au3Ni's Ni site: a same-group swap of a seed (Ag3Ni's Ag for Au) can rebuild the reference
    itself, whose stored curve is the target. The run's swaps leave it out; a draw that comes back
    as it is marked is_reference, and its stored label is not ranked as a result."""
    from dosmatgen_core.candidates import pipeline
    from dosmatgen_core.candidates.seeding import is_one_of, substitution_specs
    from dosmatgen_core.labels.labeller import supported_elements
    from dosmatgen_core.sampling.sampler import Generated
    from dosmatgen_core.structures import Crystal
    from studio.results import stored_labels
    req = Request(mode="seeded", targets=[ni_target.tolist()], seed_exclude=[PRESET_ID], n_seeds=3,
                  substitutions=True, distant_swaps=False, n_candidates=10)
    (au3ni,) = pipeline.left_out(req)
    assert au3ni.composition.reduced_composition == Composition("Au3Ni")
    seeds = req.seeds()
    every = substitution_specs(ni_target, seeds, supported_elements(), 50)
    back = [c for c, _ in every if is_one_of(c.to_structure(), [au3ni])]
    assert back, "a swap of the preset's seeds rebuilds Au3Ni (Ag3Ni with Au for Ag)"
    kept = substitution_specs(ni_target, seeds, supported_elements(), 50, left_out=[au3ni])
    assert len(kept) == len(every) - len(back) and not any(is_one_of(c.to_structure(), [au3ni]) for c, _ in kept)
    assert not any(is_one_of(c.to_structure(), [au3ni]) for c, _ in pipeline.substituted(req))
    assert pipeline.left_out(Request(mode="seeded", targets=[ni_target.tolist()], seed_exclude=["mp-0"])) == []
    # a draw that is the reference: known, and marked so
    spec = req.specs()[0]
    rec = pipeline._candidate_record(0, Generated(Crystal.from_structure(back[0].to_structure()), 0), spec,
                                     {"novel": False, "matches": PRESET_ID}, [], [au3ni])
    assert rec["is_reference"] is True
    other = pipeline._candidate_record(0, Generated(seeds[0].crystal, 0), spec,
                                       {"novel": False, "matches": seeds[0].hit.material_id}, [], [au3ni])
    assert "is_reference" not in other
    # a new draw of the reference's compound (Au3Ni, another arrangement): flagged, as walk 18 asked
    own = pipeline.reference_formula(Request(mode="seeded", targets=[ni_target.tolist()], reference_id=PRESET_ID,
                                             seed_exclude=[PRESET_ID, seeds[0].hit.material_id]))
    assert own == Composition("Au3Ni").reduced_formula
    new_au3ni = pipeline._candidate_record(0, Generated(Crystal.from_structure(back[0].to_structure()), 0), spec,
                                           {"novel": True, "matches": None}, [], [au3ni], None, own)
    assert new_au3ni["reference_compound"] is True and "reference_compound" not in other
    # a new polymorph of a seed left out (a later round's tried seed) is not the target's own compound
    assert "reference_compound" not in pipeline._candidate_record(
        0, Generated(seeds[0].crystal, 0), spec, {"novel": True, "matches": None}, [],
        [au3ni, to_structure(open_db(DB_URL).get(seeds[0].hit.material_id).atoms)], None, own)
    db = open_db(DB_URL)
    run = {"settings": {"targets": [ni_target.tolist()]}, "candidates": [{**rec, "rank": 1}, {**other, "rank": 2}]}
    assert set(stored_labels(run, db, {PRESET_ID, seeds[0].hit.material_id})) == {2}


def test_a_second_batch_is_drawn_further_from_the_seeds_only_when_too_few_draws_are_new(ni_target):
    """Once earlier checks made a target's neighbourhood labels, the seeds' draws come back as those
    labels: then (and only then) top_up_specs draws n_candidates more at strength + top_up."""
    from dosmatgen_core.candidates import pipeline
    from dosmatgen_core.settings import SHIPPED
    req = Request(mode="seeded", targets=[ni_target.tolist()], seed_exclude=[PRESET_ID], n_candidates=4)
    seeds = req.seeds()
    known = [s.crystal.to_structure() for s in seeds]          # every seed is a labelled structure
    assert pipeline.checkable_new(known, DB_URL) == 0
    more = pipeline.top_up_specs(req, known, DB_URL, check_novelty=True)
    assert len(more) == 4 and {sp.tag["top_up"] for sp in more} == {round(SHIPPED.strength + SHIPPED.top_up, 3)}
    assert [sp.tag["seed"]["material_id"] for sp in more] == [seeds[i % len(seeds)].hit.material_id for i in range(4)]
    # three new crystals (the seeds with the matched Ni swapped for Ti: no known structure) are enough
    new = []
    for s in seeds:
        t = s.crystal.to_structure()
        t.replace(s.hit.site, "Ti")
        new.append(t)
    assert pipeline.checkable_new(new, DB_URL) == 3
    assert pipeline.top_up_specs(req, new, DB_URL, check_novelty=True) == []
    # ... two copies of one are not: a copy is no check of its own
    assert pipeline.checkable_new([new[0], new[0].copy(), new[1]], DB_URL) == 2
    # ... nor is a cell too large for a check (certify's rule: the same as the checks' own)
    big = new[0].copy()
    big.make_supercell([3, 3, 1])
    assert len(big) > SHIPPED.max_dft_atoms and pipeline.checkable_new([big], DB_URL) == 0
    # never without novelty, for a round, or with top_up off
    assert pipeline.top_up_specs(req, known, DB_URL, check_novelty=False) == []
    off = Request(mode="seeded", targets=[ni_target.tolist()], seed_exclude=[PRESET_ID], top_up=0.0)
    assert pipeline.top_up_specs(off, known, DB_URL, check_novelty=True) == []
    rnd = Request(mode="seeded", targets=[ni_target.tolist()], seed_exclude=[PRESET_ID], seed_above=0.5)
    assert pipeline.top_up_specs(rnd, known, DB_URL, check_novelty=True) == []


def test_a_topped_up_run_keeps_its_baseline_paired_with_the_first_draws(tmp_path, monkeypatch, ni_target):
    """With too few new crystals (forced here: checkable_new says 0), the run holds the first draws,
    the second batch (tagged with its strength) and one baseline per first draw, and says so."""
    from dosmatgen_core.candidates import pipeline
    from studio.results import count_text, origin_text
    monkeypatch.setattr(pipeline, "checkable_new", lambda structs, db_url: 0)
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=2, steps=8, particles=1,
                  seed_exclude=[PRESET_ID], substitutions=False, baseline=True)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=True)
    later = [c for c in run["candidates"] if c.get("top_up")]
    assert len(run["candidates"]) == 4 and len(later) == 2 and len(run["baseline"]) == 2
    assert {c["top_up"] for c in later} == {0.7} and run["summary"]["top_up"] == {"strength": 0.7, "drawn": 2}
    assert "drawn further from it (strength 0.7)." in origin_text(later[0])
    assert count_text(run["candidates"], run["summary"]).startswith(
        "4 drawn by the generator; 2 of the draws are a second batch")
    # a first draw's card plots its unconditional partner; the second batch has none
    from studio.results import candidate_curves
    first = next(c for c in run["candidates"] if not c.get("top_up"))
    names = [k["name"] for k in candidate_curves(run, first, None, None)]
    assert f"predicted for unconditional sample #{first['index'] + 1} (no target, {first['n_atoms']} atoms like this one)" \
        in names
    assert not [k for k in candidate_curves(run, later[0], None, None) if k["style"] == "baseline"]
    stored = RunStore(tmp_path / "r.db").get(run["id"])
    assert stored["summary"]["top_up"]["drawn"] == 2 and sum(bool(c.get("top_up")) for c in stored["candidates"]) == 2


def test_two_labels_of_one_crystal_take_one_row_and_one_seed():
    """The walk: two DFT checks of one Ag3Ni (two labels, equal MAE and cosine) took two rows of the
    known-sites table; drop_twins keeps the better-ranked one, and never drops a different crystal."""
    from pymatgen.core import Lattice, Structure
    from dosmatgen_core.candidates.seeding import drop_twins
    from dosmatgen_core.scoring.search import SiteHit
    l12 = Structure(Lattice.cubic(4.1), ["Ni", "Ag", "Ag", "Ag"], [[0, 0, 0], [0, .5, .5], [.5, 0, .5], [.5, .5, 0]])
    moved = l12.copy()
    moved.translate_sites(range(4), [0.25, 0.25, 0.25])        # the same crystal, another origin
    layered = Structure(Lattice.tetragonal(4.1, 8.2), ["Ni", "Ag", "Ag", "Ag"],
                        [[0, 0, 0], [.5, .5, .25], [0, 0, .5], [.5, .5, .75]])
    cells = {"a": l12, "b": moved, "c": layered}
    hits = [SiteHit(m, "Ag3Ni", 0, "Ni", 4, 0.2, 0.99, 0.0) for m in "abc"]
    assert [h.material_id for h in drop_twins(hits, cells.get)] == ["a", "c"]
    other = SiteHit("d", "Au3Ni", 0, "Ni", 4, 0.3, 0.9, 0.0)        # another formula is never read
    assert [h.material_id for h in drop_twins([hits[0], other], lambda m: cells[m])] == ["a", "d"]


def test_new_structures_rank_above_known_ones(tmp_path, ni_target):
    """Near the preset every seed's neighbourhood is labelled: draws at a low strength come back as
    known crystals, and so do most swaps. Those are the lookup's answer (stored DFT labels), so a
    run ranks its new structures first, each group by predicted MAE."""
    req = Request(mode="seeded", targets=[ni_target.tolist()], n_candidates=4, steps=8, particles=1, strength=0.05,
                  seed_exclude=[PRESET_ID], substitutions=True, baseline=False, stability=False)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=True)
    cands = [c for c in run["candidates"] if c["structurally_valid"]]
    known = [c["novel"] is False or bool(c.get("is_reference")) for c in cands]
    assert any(known) and not all(known)
    assert known == sorted(known)           # every new one before every known one
    for group in (False, True):     # by predicted MAE within each group (cells with pressed contacts last)
        maes = [(evaluate.pressed(c), c["dos_mae"]) for c, k in zip(cands, known) if k == group]
        assert maes == sorted(maes)
    assert [c["rank"] for c in run["candidates"]] == list(range(1, len(run["candidates"]) + 1))


def test_a_target_known_on_a_window_is_matched_there_and_completed_for_the_model(tmp_path, ni_target):
    """The occupied part of Ni in Au3Ni (−8…0 eV, as photoemission gives it, zero beyond): its seeds
    are the sites closest on the window, the model is given the curve completed outside it by the
    closest known site, and every candidate is scored on the window alone, as the run records it."""
    from dosmatgen_core import dos
    from dosmatgen_core.candidates.runs import dos_csv
    w = [-8.0, 0.0]
    sl = dos.window_slice(w)
    cut = np.zeros(dos.NPTS)
    cut[sl] = ni_target[sl]
    req = Request(mode="seeded", targets=[cut.tolist()], window=w, n_candidates=2, steps=8, particles=1,
                  seed_exclude=[PRESET_ID], baseline=False, substitutions=False)
    windowed = find_seeds(cut, DB_URL, k=req.n_seeds, exclude={PRESET_ID}, window=w)
    assert [s.hit.material_id for s in req.seeds()] == [s.hit.material_id for s in windowed]
    db = open_db(DB_URL)
    for s in windowed:        # each seed's MAE is the window's; as zeros, the states above E_F counted too
        y = db.get(s.hit.material_id).site_dos[s.hit.site]
        assert s.hit.mae == pytest.approx(dos.mae(cut, y, w), abs=1e-5) and s.hit.mae < dos.mae(cut, y) - 0.05
    completed = req.model_targets()[0]
    assert np.array_equal(completed[sl], cut[sl]) and completed[dos.GRID > 1].sum() > 1.0     # states above E_F
    for sp in req.specs():
        site = np.flatnonzero(sp.cond_mask)[0]
        assert np.allclose(sp.cond_dos[site], completed, atol=1e-5)
    run = run_generation(req, load_model(MODEL_PATH), load_predictor(PREDICTOR_PATH),
                         store=RunStore(tmp_path / "r.db"), db_url=DB_URL, check_novelty=False)
    assert run["settings"]["window"] == w and run["settings"]["targets"][0] == cut.tolist()
    for c in run["candidates"]:
        (site, _), = c["site_to_target"].items()
        p = np.asarray(c["predicted_dos"])[int(site)]
        assert c["dos_match"][int(site)]["mae"] == pytest.approx(dos.mae(cut, p, w))
        assert c["dos_match"][int(site)]["mae"] != pytest.approx(dos.mae(cut, p))
    rows = [line.split(",") for line in dos_csv(run["candidates"][0], run["settings"]["targets"], w).splitlines()[1:]]
    assert rows[sl.start][1] != "nan" and rows[sl.stop][1] == "nan" and rows[0][1] == "nan"
    # a finished check's DFT rows join the card's CSV, whole
    n = run["candidates"][0]["n_atoms"]
    text = dos_csv(run["candidates"][0], run["settings"]["targets"], w, np.full((n, dos.NPTS), 0.25))
    (site, _), = run["candidates"][0]["site_to_target"].items()
    assert text.splitlines()[0].endswith(f"dft_site{site}_states_per_eV") and text.splitlines()[1].endswith(",0.25")
    with pytest.raises(Exception, match="at least 2 eV"):
        Request(mode="seeded", targets=[cut.tolist()], window=[0.0, 0.5]).check()


def test_a_card_says_when_another_element_carries_the_target():
    """Walk 17: a Ti target carried by Zr in template mode was said only in a table header. The run
    records the target site's element; the card names the carrier when it differs."""
    from dosmatgen_core.candidates.words import carrier_text
    run = {"settings": {"target_element": "Ti"}}
    zr = {"site_to_target": {"0": 0}}
    assert carrier_text(run, zr, ["Zr", "O", "O"]).startswith(
        "The atom carrying the target here is Zr; the target is the DOS of a Ti site.")
    assert carrier_text(run, zr, ["Ti", "O", "O"]) == ""
    assert carrier_text({"settings": {"target_element": ""}}, zr, ["Zr", "O"]) == ""        # a DOS file: no element
    assert carrier_text({"settings": {}}, zr, ["Zr", "O"]) == ""                            # a run stored before
