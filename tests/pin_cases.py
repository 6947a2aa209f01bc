"""The pinned sampler cases: each mode, with and without DOS steering, a few steps, fixed seeds."""
import gzip
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _au3ni():
    with gzip.open(ROOT / "data" / "labels" / "seed-000.jsonl.gz", "rt") as fh:
        for line in fh:
            d = json.loads(line)
            if d.get("material_id") == "L12-Au3Ni-chgnet":
                return d
    raise LookupError("L12-Au3Ni-chgnet is not in the seed shard")


def draw_all():
    from dosmatgen_core.sampling import sampler as sampling
    from dosmatgen_core.sampling import modes
    from dosmatgen_core.model.checkpoint import load_model
    from dosmatgen_core.model.guide import load_guide
    from dosmatgen_core.structures import Crystal, atoms_from_cif, to_structure
    loaded = load_model(ROOT / "assets" / "denoiser.pt")
    guide = load_guide(ROOT / "assets" / "guide.pt")
    d = _au3ni()
    atoms = atoms_from_cif(d["cif"])
    ni = atoms.get_chemical_symbols().index("Ni")
    g = np.asarray(d["site_dos"][ni])
    tpl = Crystal.from_structure(to_structure(atoms))
    cases = {
        "masked": (modes.masked(4, {0: g}, 3), {}),
        "fixed_type": (modes.fixed_type(5, {0: g}, {0: "Ni"}, 2), {}),
        "template": (modes.template(tpl, 0.5, {ni: g}, pinned=[i for i in range(len(atoms)) if i != ni], n_candidates=2), {}),
        "unconditional": (modes.unconditional(4, 2), {}),
        "steered": (modes.masked(4, {0: g}, 2), {"guide": guide, "particles": 3}),
    }
    return {name: sampling.sample(loaded, specs, steps=12, guidance=1.0, seed=7, device="cpu", **kw)
            for name, (specs, kw) in cases.items()}
