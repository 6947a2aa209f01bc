"""Pseudo-labels: the site-DOS predictor's DOS for the unlabelled training crystals.

DFT labels cover ~1.5k of the ~17k training crystals, so the conditional branch of the generator
sees few (structure, site DOS) pairs. The predictor (held-out MAE about half that of the mean DOS)
turns every unlabelled training crystal into such a pair; training draws them as a share of each
epoch beside the DFT labels (self-training / distillation). Only training-split crystals get one:
validation crystals, and so every held-out benchmark site, stay out, and the predictor itself was
trained on DFT labels of its own training split only (a superset of the generator's held-out
split is excluded from it).

Because the benchmark's scorer is the same predictor, a generator trained this way must also be
checked by DFT (`bench dft`) before its predictor-scored gain is believed.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dosmatgen_core import dos as dosmod
from dosmatgen_core.model.checkpoint import sha256_file
from dosmatgen_core.paths import LABEL_DIR
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.training import dataset as datamod


def predictor_elements(card: dict, label_dir: str | Path) -> set[int]:
    """Atomic numbers in the DFT labels the predictor was trained on: the shards its card names,
    training split only (the predictor holds out 15 %), failed calculations left out."""
    # imported here: `dosmatgen train` imports this module, and from a pack it runs without pymatgen
    from pymatgen.core import Composition
    from dosmatgen_core.labels.labeller import iter_label_lines
    shards = [Path(label_dir) / s for s in card.get("label_shards", [])]
    missing = [s.name for s in shards if not s.exists()]
    if not shards or missing:
        raise FileNotFoundError(f"the predictor card names label shards not in {label_dir}: "
                                f"{missing or 'none named'}; pass the labels folder it was trained on")
    return {el.Z for _, d in iter_label_lines(shards)
            if "failed" not in d and not datamod.is_validation(d["material_id"], datamod.PREDICTOR_HOLDOUT)
            for el in Composition(d["formula"]).elements}


def pseudo_label(pack: str | Path, predictor_path: str | Path, out: str | Path, chunk: int = 512,
                 label_dir: str | Path = LABEL_DIR,
                 log=print, trust: bool = False) -> dict:
    """Predict the site DOS of every unlabelled training crystal of PACK; write OUT (npz: ids,
    offsets, dos as float16). Resumable: chunks already written under OUT's `.parts` folder are kept.

    Crystals holding an element with no DFT label in the predictor's training split (lanthanides and
    actinides, which the recipe excludes, and a few rare ones) get none: the predictor has nothing
    to go on there, and a made-up DOS would teach the generator a false element–DOS link. That split
    is read from the shards the predictor's card names (in LABEL_DIR), not from the pack, whose
    labels may be newer than the predictor. trust: load a predictor that was not shipped."""
    _, unlabelled, meta = datamod.load_pack(pack)
    todo = [e for e in unlabelled if not datamod.is_validation(e.material_id)]
    pred = load_predictor(predictor_path, trust=trust)
    known = predictor_elements(pred.card, label_dir)
    out = Path(out)
    parts = out.with_suffix(".parts")
    parts.mkdir(parents=True, exist_ok=True)
    for k in range(0, len(todo), chunk):
        part = parts / f"{k:06d}.npy"
        if part.exists():
            continue
        rows = pred.predict([(e.z, e.frac, e.lattice) for e in todo[k:k + chunk]])
        np.save(part.with_suffix(".tmp.npy"), np.concatenate(rows).astype(np.float16))
        part.with_suffix(".tmp.npy").replace(part)
        log(f"pseudo-labels: {min(k + chunk, len(todo))}/{len(todo)} crystals")
    dos = np.concatenate([np.load(parts / f"{k:06d}.npy") for k in range(0, len(todo), chunk)])
    offs = np.cumsum([0] + [len(e.z) for e in todo])
    if len(dos) != offs[-1]:
        raise ValueError(f"{parts}: {len(dos)} predicted sites for {offs[-1]} atoms; delete it and rerun")
    finite = np.array([np.isfinite(dos[a:b].astype(np.float32)).all() for a, b in zip(offs[:-1], offs[1:])])
    seen = np.array([set(map(int, e.z)) <= known for e in todo], bool)
    ok = finite & seen
    info = {"pack": str(pack), "predictor": str(predictor_path), "predictor_sha256": sha256_file(predictor_path),
            "n_crystals": int(ok.sum()), "n_unscorable": int((~finite).sum()),
            "n_unlabelled_element": int((finite & ~seen).sum()),
            "pack_label_shards": meta.get("label_shards", [])}
    keep = [i for i in range(len(todo)) if ok[i]]
    kept_offs = np.cumsum([0] + [len(todo[i].z) for i in keep])
    np.savez(out, ids=np.array([todo[i].material_id for i in keep]), offsets=kept_offs,
             dos=np.concatenate([dos[offs[i]:offs[i + 1]] for i in keep]) if keep else np.zeros((0, dosmod.NPTS), np.float16),
             meta=np.array(json.dumps(info)))
    return info


def attach(path: str | Path, entries: list[datamod.Entry]) -> tuple[list[datamod.Entry], dict]:
    """Copies of ENTRIES that have a pseudo-label in PATH, carrying it as their site DOS (validation
    crystals are refused even if the file has them); and the file's provenance."""
    with np.load(path, allow_pickle=False) as d:
        ids, offs, dos, meta = d["ids"], d["offsets"], d["dos"], json.loads(str(d["meta"]))
    if dos.shape[1:] != (dosmod.NPTS,):
        raise ValueError(f"{path}: pseudo-label DOS has shape {dos.shape}, expected (n, {dosmod.NPTS})")
    at = {str(m): (a, b) for m, a, b in zip(ids, offs[:-1], offs[1:])}
    out = []
    for e in entries:
        ab = at.get(e.material_id)
        if ab is None or datamod.is_validation(e.material_id):
            continue
        a, b = ab
        if b - a != len(e.z):
            raise ValueError(f"{path}: {e.material_id} has {b - a} pseudo-labelled sites, the crystal {len(e.z)}")
        out.append(datamod.Entry(e.material_id, e.z, e.frac, e.lattice, np.clip(dos[a:b].astype(np.float32), 0, None)))
    return out, meta
