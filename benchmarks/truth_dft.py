"""The truth bench's DFT of a candidate (the GPAW fast recipe, rows read in the candidate's own
site order), on the drawn cell or the cell relaxed with a potential, cached by its CIF in
runs/truth/ (dft.jsonl, relaxed.jsonl), and its score against a target site's curve."""
from __future__ import annotations

import hashlib

import numpy as np

from benchmarks.common import append_jsonl, read_jsonl
from benchmarks.truth_settings import CACHE, RELAXED
from dosmatgen_core import dos as dosmod
from dosmatgen_core.labels.labeller import FAST_RECIPE, ShardWriter
from dosmatgen_core.scoring.evaluate import known_match
from dosmatgen_core.scoring.stability import DEFAULT_POTENTIAL
from dosmatgen_core.scoring.verify import dft_in_site_order, relax_in_site_order
from dosmatgen_core.structures import atoms_from_cif, to_structure


def cif_key(cif: str) -> str:
    return hashlib.sha256(cif.encode()).hexdigest()[:20]


def calculate(cand: dict, dft_cache: dict, writer: ShardWriter, provenance: dict) -> dict:
    key = cif_key(cand["cif"])
    if key not in dft_cache:
        line = dft_in_site_order(cand["cif"], FAST_RECIPE, 1500, cpu=True)      # labelled gen:<key>
        rec = {"key": key, "failed": line["failed"]} if "failed" in line else \
              {"key": key, "site_dos": np.round(np.asarray(line["site_dos"]), 5).tolist(), "seconds": line["seconds"]}
        append_jsonl(CACHE / "dft.jsonl", rec)
        dft_cache[key] = rec
        if "failed" not in line:
            writer.add({**line, "source": provenance})        # a DFT result is a label too
    return dft_cache[key]


def calculate_relaxed(cand: dict, cache: dict, writer: ShardWriter, potential: str = DEFAULT_POTENTIAL,
                      provenance: dict | None = None) -> dict:
    """The DFT of the candidate after relaxation with the potential (positions and cell; the site
    order is kept), and the relaxed cell's CIF, cached in runs/truth/relaxed.jsonl by the drawn
    candidate's key. The same two steps as the app's relaxed check (scoring/verify.py)."""
    cand = {**cand, "key": cand.get("key") or cif_key(cand["cif"])}
    if cand["key"] in cache:
        return cache[cand["key"]]
    try:
        cif, rec = relax_in_site_order(cand["cif"], potential)
    except Exception as exc:      # a potential that crashes on one cell is recorded, like a DFT failure
        rec = {"potential": potential, "failed": f"{type(exc).__name__}: {exc}"[:300]}
    rec = {"key": cand["key"], **rec}
    if "failed" not in rec:
        line = dft_in_site_order(cif, FAST_RECIPE, 1500, cpu=True)
        if "failed" in line:
            rec["failed"] = str(line["failed"])[:300]
        else:
            rec.update(site_dos=np.round(np.asarray(line["site_dos"]), 5).tolist(), dft_seconds=line["seconds"],
                       cif=cif)
            writer.add({**line, "source": {**(provenance or {"bench": "relax_effect"}), "relaxed_from": cand["key"],
                                           "potential": potential}})
    append_jsonl(RELAXED, rec)
    cache[cand["key"]] = rec
    return rec


def checked_candidates(methods, generated: list[dict] | None = None,
                       dft: dict | None = None) -> list[tuple[dict, list[dict]]]:
    """The bench's generated records of these methods, each with those of its candidates that have
    a drawn-cell DFT result: each CIF once over all records (two runs can draw the same one), with
    its cache `key`, `method`, `target_site` and `dft_dos` (its conditioned site's DFT row) added.
    Defaults: the cache files."""
    dft = dft if dft is not None else {r["key"]: r for r in read_jsonl(CACHE / "dft.jsonl")}
    generated = generated if generated is not None else read_jsonl(CACHE / "generated.jsonl")
    out, seen = [], set()
    for g in generated:
        _, method, site_key = g["key"].split("/", 2)
        if method not in methods:
            continue
        group = []
        for c in g["candidates"]:
            key = cif_key(c["cif"])
            if key in seen or "site_dos" not in dft.get(key, {}):
                continue
            seen.add(key)
            group.append({**c, "key": key, "method": method, "target_site": site_key,
                          "dft_dos": np.asarray(dft[key]["site_dos"])[c["site"]]})
        out.append((g, group))
    return out


def relaxed_known(calc: dict | None) -> str | None:
    """The known structure (the shared MP tables) that a relaxed check's cell matches, or None.
    Novelty is judged on the drawn cell; a drawn cell can relax into a known compound, and then
    the DFT curve is that compound's, no novel candidate's."""
    if not calc or "cif" not in calc:
        return None
    hit = known_match(to_structure(atoms_from_cif(calc["cif"])), None, relaxed=True)
    return hit[0] if hit else None


def whole_metrics(target, row) -> dict:
    """A windowed target's match on the whole grid (the bench knows the whole DFT curve)."""
    return {"dft_mae_whole": dosmod.mae(target, row), "dft_cosine_whole": dosmod.cosine(target, row)}


def score_candidate(cand: dict, target: np.ndarray, calc: dict | None, window=None) -> dict:
    """window: the target's known energies; the DFT scores compare there, and on the whole grid as
    dft_mae_whole / dft_cosine_whole."""
    out = {k: cand.get(k) for k in ("formula", "element", "site", "predicted_mae", "predicted_cosine", "novel", "seed",
                                    "material_id", "dft_mae", "dft_cosine", "dft_mae_whole", "dft_cosine_whole")}
    if calc is not None and "site_dos" in calc:
        row = np.asarray(calc["site_dos"])[cand["site"]]
        out["dft_mae"] = dosmod.mae(target, row, window)
        out["dft_cosine"] = dosmod.cosine(target, row, window)
        if window is not None:
            out.update(whole_metrics(target, row))
        out["relaxed_into"] = relaxed_known(calc) if out.get("novel") else None
    elif calc is not None:
        out["dft_failed"] = calc["failed"][:200]
    return {k: v for k, v in out.items() if v is not None}


def novel_after_check(c: dict) -> bool:
    """Novel as drawn, and its checked cell (relaxed) still no known structure (relaxed_known)."""
    return bool(c.get("novel")) and not c.get("relaxed_into")
