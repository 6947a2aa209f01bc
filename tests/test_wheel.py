"""The wheel built from a clean clone holds every module and the shipped assets, installs, and
runs the CLI and the sampler away from the checkout."""
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_from_a_clean_clone_installs_and_samples(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(clone)], check=True)
    wheel, = (tmp_path / "dist").glob("dosmatgen_studio-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    modules = {str(p.relative_to(clone)) for p in (clone / "dosmatgen_core").rglob("*.py")}
    assert modules <= set(names), sorted(modules - set(names))
    assert not any(n.startswith(("benchmarks/", "studio/", "tests/")) for n in names)
    for asset in ("denoiser.pt", "guide.pt", "predictor.pt", "reference.db", "denoiser.card.json"):
        assert any(n.endswith(f"share/dosmatgen-studio/assets/{asset}") for n in names), asset
    # installed as an installer does it (pip --prefix would first uninstall the checkout's own
    # editable install): the package into site-packages, the .data/data files under the prefix
    prefix = tmp_path / "prefix"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    zipfile.ZipFile(wheel).extractall(site)
    data, = site.glob("dosmatgen_studio-*.data")
    shutil.copytree(data / "data", prefix, dirs_exist_ok=True)
    shutil.rmtree(data)
    env = dict(os.environ, PYTHONPATH=str(site), DOSMATGEN_HOME=str(tmp_path / "home"))
    env.pop("DOSMATGEN_ASSETS", None)
    run = dict(cwd=tmp_path, env=env, capture_output=True, text=True)
    help_ = subprocess.run([sys.executable, "-m", "dosmatgen_core.cli", "--help"], **run)
    assert help_.returncode == 0 and "generate" in help_.stdout, help_.stderr
    code = ("import dosmatgen_core, dosmatgen_core.paths as p; from dosmatgen_core.model.checkpoint import load_model;"
            "from dosmatgen_core.sampling import modes, sampler;"
            "assert str(p.ASSETS).startswith(%r), p.ASSETS; assert dosmatgen_core.__file__.startswith(%r);"
            "g = sampler.sample(load_model(p.MODEL_PATH), modes.unconditional(3, 2), steps=5, seed=1, device='cpu');"
            "print(len(g), [len(x.crystal.numbers) for x in g])") % (str(prefix), str(site))
    out = subprocess.run([sys.executable, "-c", code], **run)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("2 [3, 3]")
