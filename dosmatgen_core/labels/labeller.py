"""DFT site-DOS labels: the GPAW/PBE recipe of RECIPE.md, run through Dask, written as shards.

One structure is one task. Each task runs GPAW in a child process so that a crash, a hang
(time limit) or a memory blow-up costs that structure only; its failure is recorded and it is
never retried unless asked. Output goes to gzip JSON-lines shards (the seed format) that are
sealed once and never rewritten, so a restart only has to skip what the shards already hold.
"""
from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from dosmatgen_core import dos as dosmod
from dosmatgen_core.structures import (ACTINIDES, LANTHANIDES, StructureError, atoms_from_cif, atoms_to_cif,
                         elements_of, iter_mp_csv, niggli_atoms, read_structure, to_atoms)

HARTREE_EV = 27.211386


# How every DFT curve here was made, in words (the pages and the CLI name it once, from here). Not
# spin-polarised: a magnetic site's curves are those of a non-magnetic solution (RECIPE.md).
SPIN_WORDS = ("not spin-polarised (spin-degenerate, both spins counted; a magnetic site's curve is that of a "
              "non-magnetic solution)")
RECIPE_WORDS = f"GPAW, PBE, LCAO dzp, Löwdin site projection, {SPIN_WORDS}"


@dataclass(frozen=True)
class Recipe:
    """GPAW settings. The defaults are RECIPE.md's seed recipe; change them only with measurements."""
    h: float = 0.3
    kpt_density: float = 2.0
    basis: str = "dzp"
    # Levers for speed, off in the seed recipe: cap the k-points per direction, reduce the
    # k-density for cells with many atoms.
    max_kpts: int = 0              # 0 = no cap
    large_cell_atoms: int = 0      # 0 = off; from this many atoms on, use large_cell_density
    large_cell_density: float = 2.0
    conv_density: float = 1e-4     # SCF density criterion (electrons per valence electron)
    conv_energy: float = 1e-4      # eV per valence electron
    maxiter: int = 333             # SCF iterations before GPAW gives up (GPAW's default)
    name: str = "seed"

    def kpts_for(self, natoms: int) -> dict:
        d = self.kpt_density
        if self.large_cell_atoms and natoms >= self.large_cell_atoms:
            d = self.large_cell_density
        return {"density": d, "gamma": True}

    def record(self) -> dict:
        """The `recipe` field of a label line (seed keys, plus our own settings)."""
        out = {"engine": "gpaw", "mode": "lcao", "xc": "PBE", "basis": self.basis, "h": self.h,
               "kpts": {"density": self.kpt_density, "gamma": True},
               "occupations": "fermi-dirac 0.1 eV", "nbands": "all basis functions",
               "spin": "non-polarised", "projection": "Loewdin", "broadening": "gaussian 0.2 eV"}
        if self.name != "seed":
            out["variant"] = asdict(self)
        return out


SEED_RECIPE = Recipe()
# The faster variant measured by `dosmatgen bench label`: a looser SCF criterion only. Measured and
# rejected: h = 0.4 (MAE up to 0.054 states/eV, and 4×4×4 grids that GPAW cannot interpolate on
# the smallest cells); SCF on a coarser k-mesh + non-self-consistent DOS on the full one (MAE
# 0.07-0.09 on NiZn: metal densities need the full k-mesh).
FAST_RECIPE = Recipe(conv_density=1e-3, conv_energy=5e-4, name="fast-scf1e-3")


def supported_elements() -> frozenset[str]:
    """Elements with PBE setups and dzp basis sets in gpaw-data, without lanthanides/actinides."""
    import gpaw_data
    have = {p.name.split(".")[0] for p in gpaw_data.datapath().glob("*.dzp.basis*")}
    return frozenset(have - LANTHANIDES - ACTINIDES)


# ---- one structure -----------------------------------------------------------------------------

def gpaw_site_dos(atoms, recipe: Recipe = SEED_RECIPE, txt=None, symmetry: str | None = None) -> dict:
    """Run the LCAO calculation and return Löwdin site DOS on the model grid.

    symmetry="off": no symmetry reduction of the k-points (slower, same physics), for cells whose
    symmetry analysis GPAW gets wrong.

    W_nM = |C_nM · (S^{1/2})ᵀ|² sums to 1 for every band, so the site DOS sums exactly to the
    total DOS (unlike raw PAW projections, which over-count).
    """
    from gpaw import GPAW, FermiDirac
    t0 = time.perf_counter()
    kpts = recipe.kpts_for(len(atoms))
    if recipe.max_kpts:
        from ase.calculators.calculator import kptdensity2monkhorstpack
        mp = np.minimum(kptdensity2monkhorstpack(atoms, kpts["density"], even=False), recipe.max_kpts)
        kpts = {"size": tuple(int(n) for n in mp), "gamma": True}
    calc = GPAW(mode="lcao", xc="PBE", basis=recipe.basis, h=recipe.h, kpts=kpts,
                occupations=FermiDirac(0.1), nbands="nao",
                convergence={"energy": recipe.conv_energy, "density": recipe.conv_density,
                             "eigenstates": 1e-6}, maxiter=recipe.maxiter, txt=txt,
                **({"symmetry": symmetry} if symmetry else {}))
    atoms = atoms.copy()
    atoms.calc = calc
    energy = atoms.get_potential_energy()
    ibz = calc.dft.ibzwfs
    ef = ibz.fermi_level * HARTREE_EV
    nat = len(atoms)
    site = np.zeros((nat, dosmod.NPTS))
    total = np.zeros(dosmod.NPTS)
    nk = 0
    for wf in ibz:
        nk += 1
        C = np.asarray(wf.C_nM.data)
        S = np.asarray(wf.S_MM.data)
        w, v = np.linalg.eigh(S)
        s_half = (v * np.sqrt(np.clip(w, 0, None))) @ v.conj().T
        W = np.abs(C @ s_half.T) ** 2                      # (bands, orbitals)
        edges = list(wf.basis.M_a) + [wf.basis.Mmax]
        per_atom = np.stack([W[:, edges[a]:edges[a + 1]].sum(1) for a in range(nat)])
        eps = np.asarray(wf.eig_n) * HARTREE_EV - ef
        weight = wf.weight * ibz.spin_degeneracy
        site += np.stack([dosmod.gaussian_dos(eps, per_atom[a] * weight) for a in range(nat)])
        total += dosmod.gaussian_dos(eps, np.full(eps.shape, weight))  # no projection: the check
    return {"energy_eV": float(energy), "e_fermi_eV": float(ef), "site_dos": site,
            "total_dos": total, "n_kpts": nk, "seconds": round(time.perf_counter() - t0, 1)}


MIN_TRANSLATION = 1.5   # Å: no real crystal repeats closer (bcc Li: 3.0, diamond's primitive cell: 2.5)


def _well_shaped(s) -> bool:
    return all(30.0 <= a <= 150.0 for a in s.lattice.angles)


def _calculate(atoms, recipe: Recipe) -> tuple[str, dict]:
    """The CIF that is stored, and the recipe's result for it: labelled in the order ase.io.read
    gives for that CIF, so rows match its sites."""
    cell_cif = atoms_to_cif(atoms)
    try:
        return cell_cif, gpaw_site_dos(atoms_from_cif(cell_cif), recipe)
    except Exception as exc:
        # GPAW's symmetry analysis fails on some body-centred cells (TiPd2, HfAu2: "Sorry! Try
        # using spglib.standardize_cell"); standardising would move and reorder the sites, so
        # calculate the same cell without symmetry reduction instead
        if type(exc).__name__ != "SymmetryAnalysisBug":
            raise
        return cell_cif, gpaw_site_dos(atoms_from_cif(cell_cif), recipe, symmetry="off")


def label_structure(material_id: str, cif: str, recipe: Recipe = SEED_RECIPE, keep_cell: bool = False) -> dict:
    """One label line in the seed format, or a line with `failed` and the reason.

    keep_cell: calculate the cell as given (site order of the CIF) instead of its Niggli cell;
    used to verify candidates, whose rows must match the candidate's own sites.
    """
    try:
        s = read_structure(cif, "cif", source=material_id)
        bad = set(elements_of(s)) - supported_elements()
        if bad:
            raise StructureError(f"{material_id}: no GPAW data or excluded element(s): {sorted(bad)}")
        reduced = niggli_atoms(s)             # same sites, same order
        shortest = float(min(np.linalg.norm(reduced.cell.array, axis=1)))
        if shortest < MIN_TRANSLATION:
            raise StructureError(f"{material_id}: the shortest lattice translation is {shortest:.2f} Å, so every "
                                 f"atom sits that close to its own periodic image; not a crystal to calculate")
        # a generated cell can be valid yet so skewed (angles near 0° or 180°) that GPAW's
        # finite-difference stencil outgrows it: calculate its Niggli cell then (same sites)
        atoms = to_atoms(s) if keep_cell and _well_shaped(s) else reduced
        try:
            cell_cif, res = _calculate(atoms, recipe)
        except ValueError as exc:
            # GPAW refuses some cells that pass the angle test ("weird unit cell"): the Niggli
            # cell holds the same sites in the same order, and the site DOS does not depend on it
            if "weird unit cell" not in str(exc) or atoms is reduced:
                raise
            atoms = reduced
            cell_cif, res = _calculate(atoms, recipe)
        formula = atoms.get_chemical_formula(mode="hill", empirical=False)
    except Exception as exc:  # recorded, never raised: one bad structure must not stop a run
        return {"material_id": material_id, "failed": f"{type(exc).__name__}: {exc}"[:2000]}
    return {"material_id": material_id, "formula": formula, "cif": cell_cif,
            "recipe": recipe.record(),
            "grid": {"emin": dosmod.EMIN, "emax": dosmod.EMAX, "npts": dosmod.NPTS, "width": dosmod.SMEAR_EV},
            "energy_eV": res["energy_eV"], "e_fermi_eV": res["e_fermi_eV"], "seconds": res["seconds"],
            "n_kpts": res["n_kpts"],
            "site_dos": np.round(res["site_dos"], 6).tolist()}


CPU_WALL_BACKSTOP = 8   # a CPU-time limit still ends a process stuck off the CPU after this many times its seconds


def _cpu_limit(seconds: float) -> Callable[[], None]:
    """The child's limit on its own CPU time: SIGXCPU at the limit, SIGKILL a little after, and no
    core file."""
    def apply() -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)     # a batch system's own limit stays the ceiling
        soft = max(1, int(seconds))
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard if hard != resource.RLIM_INFINITY else soft + 30))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def label_isolated(task: dict, recipe: Recipe = SEED_RECIPE, timeout: float = 1800.0, *, cpu: bool = False) -> dict:
    """label_structure in a fresh single-threaded Python process with a time limit. cpu: the limit
    counts the process's own CPU seconds, not the clock's: a bench or the labeller beside other
    work, or paused (SIGSTOP), then records a timeout only for a calculation that is really long,
    so the record does not depend on the machine's load."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    payload = json.dumps({"task": task, "recipe": asdict(recipe)})
    wall = timeout * CPU_WALL_BACKSTOP if cpu else timeout
    try:
        p = subprocess.run([sys.executable, "-m", "dosmatgen_core.labels.labeller"], input=payload,
                           capture_output=True, text=True, timeout=wall, env=env,
                           preexec_fn=_cpu_limit(timeout) if cpu else None)
    except subprocess.TimeoutExpired:
        return {"material_id": task["material_id"], "failed": f"timeout: no result after {wall:.0f} s"}
    except subprocess.SubprocessError as exc:          # the limit could not be set: recorded, the run goes on
        return {"material_id": task["material_id"], "failed": f"could not start the calculation: {exc}"[:2000]}
    # only SIGXCPU is the limit: a SIGKILL is someone else's (the OOM killer), said as the worker's exit
    if cpu and p.returncode == -signal.SIGXCPU:
        return {"material_id": task["material_id"], "failed": f"timeout: more than {timeout:.0f} s of CPU time"}
    if p.returncode != 0 or not p.stdout.strip():
        tail = (p.stderr or "").strip().splitlines()[-3:]
        return {"material_id": task["material_id"],
                "failed": f"worker exited with code {p.returncode}: {' | '.join(tail)}"[:2000]}
    return json.loads(p.stdout.strip().splitlines()[-1])


# ---- shards ----------------------------------------------------------------------------------

SHARD_GLOB = "*.jsonl.gz"
MAX_SHARD_BYTES = 10 * 1024 * 1024


def iter_label_lines(paths: Iterable[str | Path]) -> Iterator[tuple[Path, dict]]:
    """(shard, line) for every line of the given shards or directories of shards, in name order."""
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(p.glob(SHARD_GLOB)) if p.is_dir() else [p])
    for f in files:
        with gzip.open(f, "rt") as fh:
            for line in fh:
                if line.strip():
                    yield f, json.loads(line)


class ShardWriter:
    """Appends results to a pending file, flushed per line, and seals it into an immutable shard.

    The pending file is the crash-safe part: a killed run loses at most the line being written.
    """

    def __init__(self, out_dir: str | Path, prefix: str = "labels", shard_size: int = 50):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.shard_size = shard_size
        self.pending = self.dir / f"{prefix}.pending.jsonl"
        self._n_pending = sum(1 for _ in self._pending_lines())

    def _pending_lines(self) -> Iterator[dict]:
        if not self.pending.exists():
            return
        for line in self.pending.read_text().splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill: that structure is redone
                continue

    def done_ids(self, extra_dirs: Iterable[str | Path] = (), retry: str | None = None) -> set[str]:
        """Ids with a line already. retry: failures whose latest reason contains this text are
        not counted, so they are calculated again ("" retries every failure)."""
        lines = [d for _, d in iter_label_lines([self.dir, *extra_dirs])] + list(self._pending_lines())
        ok = {d["material_id"] for d in lines if "failed" not in d}
        reason = {d["material_id"]: d["failed"] for d in lines if "failed" in d}      # the latest wins
        return ok | {m for m, why in reason.items() if retry is None or retry not in why}

    @contextlib.contextmanager
    def _locked(self):
        # several processes write one prefix (two benches, the app's verify): without the lock a
        # line appended while another process seals would be unlinked with the pending file
        with (self.dir / f".{self.prefix}.lock").open("a") as lk:
            fcntl.flock(lk, fcntl.LOCK_EX)
            yield

    def add(self, line: dict) -> None:
        with self._locked():
            with self.pending.open("a") as fh:
                fh.write(json.dumps(line) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            self._n_pending = sum(1 for _ in self._pending_lines())
            full = self._n_pending >= self.shard_size or self.pending.stat().st_size > 3 * MAX_SHARD_BYTES
        if full:
            self.seal()

    def seal(self) -> Path | None:
        """Compress pending lines into the next numbered shard (≤ 10 MB each)."""
        with self._locked():
            return self._seal()

    def _seal(self) -> Path | None:
        lines = list(self._pending_lines())
        if not lines:
            self.pending.unlink(missing_ok=True)
            self._n_pending = 0
            return None
        existing = sorted(self.dir.glob(f"{self.prefix}-*.jsonl.gz"))
        idx = 1 + max((int(p.name.split("-")[-1].split(".")[0]) for p in existing), default=-1)
        made = None
        chunk: list[str] = []
        size = 0
        for d in lines + [None]:
            s = None if d is None else json.dumps(d) + "\n"
            if d is None or (chunk and size + len(s) > 2 * MAX_SHARD_BYTES):
                # JSON of floats gzips ~3-4x; 20 MB raw keeps shards well under 10 MB.
                made = self.dir / f"{self.prefix}-{idx:04d}.jsonl.gz"
                tmp = made.with_suffix(".tmp")
                with gzip.open(tmp, "wt", compresslevel=9) as fh:
                    fh.writelines(chunk)
                tmp.rename(made)
                idx += 1
                chunk, size = [], 0
            if s is not None:
                chunk.append(s)
                size += len(s)
        self.pending.unlink()
        self._n_pending = 0
        return made


# ---- choosing what to label ----------------------------------------------------------------

NI_PARTNER_METALS = frozenset(
    "Li Be Na Mg Al K Ca Sc Ti V Cr Mn Fe Co Cu Zn Ga Rb Sr Y Zr Nb Mo Ru Rh Pd Ag Cd In Sn "
    "Cs Ba Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi".split())


def predicted_cost(atoms, recipe: Recipe = SEED_RECIPE) -> float:
    """log(seconds) of the seed recipe, fitted on the seed labels' timings.

    The irreducible k-point count and the cell size dominate (each k-point rebuilds the density
    on the grid every SCF iteration). Fitted on 177 labels (104 seed + 73 of this project's, the
    latter with their own intercept since they ran on a shared CPU; correlation 0.72 in log t):
    log t = -3.38 + 1.60 log n_ibz + 0.30 log V + 2.05 log N.
    """
    import spglib
    from ase.calculators.calculator import kptdensity2monkhorstpack
    mp = kptdensity2monkhorstpack(atoms, recipe.kpts_for(len(atoms))["density"], even=False)
    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    try:
        mapping, _ = spglib.get_ir_reciprocal_mesh(mp, cell, is_shift=[0, 0, 0])
        n_ibz = len(np.unique(mapping))
    except Exception:
        n_ibz = int(np.prod(mp))
    return float(-3.38 + 1.60 * np.log(n_ibz) + 0.30 * np.log(atoms.get_volume()) + 2.05 * np.log(len(atoms)))


def select_tasks(csv_paths: Iterable[str | Path], max_atoms: int = 8, skip: set[str] = frozenset(),
                 limit: int | None = None, ni_bonus: float = 1.5, spread: float = 0.7) -> list[dict]:
    """Structures to label next, cheapest expected DFT first, spread over chemistries.

    Priority = predicted log-cost + `spread` × (how many cheaper structures of the same chemical
    system come before it) − `ni_bonus` for Ni intermetallics (the paper's showcase family).
    """
    ok = supported_elements()
    rows = []
    seen = set(skip)
    for path in csv_paths:
        for r in iter_mp_csv(path):
            mid = r["material_id"]
            if mid in seen or int(r["nsites"]) > max_atoms:
                continue
            try:
                st = read_structure(r["cif"], source=mid)
            except StructureError:
                continue
            els = elements_of(st)
            if not set(els) <= ok:
                continue
            seen.add(mid)
            cost = predicted_cost(niggli_atoms(st))
            ni_inter = "Ni" in els and len(els) > 1 and set(els) - {"Ni"} <= NI_PARTNER_METALS
            rows.append((cost, "-".join(els), mid, r["cif"], len(st), ni_inter))
    rows.sort(key=lambda t: (t[1], t[0], t[2]))
    keyed = []
    rank: dict[str, int] = {}
    for cost, chem, mid, cif, n, ni in rows:
        k = rank.get(chem, 0)
        rank[chem] = k + 1
        prio = cost + spread * k - (ni_bonus if ni else 0.0)
        keyed.append(((prio, hash_str(mid)), {"material_id": mid, "cif": cif, "nsites": n,
                                               "predicted_seconds": round(float(np.exp(cost)), 1)}))
    keyed.sort(key=lambda t: t[0])
    tasks = [t for _, t in keyed]
    return tasks[:limit] if limit else tasks


def put_first(tasks: list[dict], ids: list[str]) -> tuple[list[dict], list[str]]:
    """The tasks with those of `ids` moved to the front, in the order given (a bench or a user who
    needs particular structures labelled now); and the ids that are no task (labelled already,
    too large, not calculable by the recipe, or in no table)."""
    by_id = {t["material_id"]: t for t in tasks}
    ids = list(dict.fromkeys(ids))
    first = [by_id[m] for m in ids if m in by_id]
    chosen = {t["material_id"] for t in first}
    return first + [t for t in tasks if t["material_id"] not in chosen], [m for m in ids if m not in by_id]


def hash_str(s: str) -> int:
    """A stable (process-independent) hash, so task order is reproducible."""
    import zlib
    return zlib.crc32(s.encode())


# ---- the run ---------------------------------------------------------------------------------

@dataclass
class RunStats:
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    ids: list = field(default_factory=list)


def run_labelling(tasks: list[dict], out_dir: str | Path, *, recipe: Recipe = SEED_RECIPE,
                  workers: int | None = None, scheduler: str | None = None, timeout: float = 1800.0,
                  shard_size: int = 50, extra_done: Iterable[str | Path] = (),
                  on_result: Callable[[dict], None] | None = None, max_tasks: int | None = None,
                  max_seconds: float | None = None, retry_failed: str | None = None, cpu: bool = False) -> RunStats:
    """Label `tasks` (dicts with material_id, cif) not yet in `out_dir`; resumable at any point.
    cpu: timeout counts each calculation's CPU seconds (label_isolated)."""
    from dask.distributed import Client, LocalCluster, as_completed

    writer = ShardWriter(out_dir, shard_size=shard_size)
    done = writer.done_ids(extra_done, retry=retry_failed)
    todo = [t for t in tasks if t["material_id"] not in done]
    if max_tasks:
        todo = todo[:max_tasks]
    stats = RunStats()
    if not todo:
        return stats
    t0 = time.perf_counter()
    if scheduler:
        client = Client(scheduler)
        cluster = None
    else:
        n = workers or os.cpu_count() or 1
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=40)
        client = Client(cluster)
    try:
        n_slots = sum(client.nthreads().values()) or 1
        queue = iter(todo)
        # Submit only a few tasks ahead of the workers, so that stopping loses little queued work.
        futures = as_completed()
        for task in [next(queue, None) for _ in range(2 * n_slots)]:
            if task is not None:
                futures.add(client.submit(label_isolated, task, recipe, timeout, cpu=cpu, pure=False))
        for fut in futures:
            line = fut.result()
            writer.add(line)
            stats.ids.append(line["material_id"])
            if "failed" in line:
                stats.failed += 1
            else:
                stats.done += 1
            if on_result:
                on_result(line)
            if max_seconds and time.perf_counter() - t0 > max_seconds:
                continue  # let submitted tasks finish, submit no more
            task = next(queue, None)
            if task is not None:
                futures.add(client.submit(label_isolated, task, recipe, timeout, cpu=cpu, pure=False))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    stats.seconds = time.perf_counter() - t0
    return stats


if __name__ == "__main__":  # child-process entry of label_isolated
    msg = json.loads(sys.stdin.read())
    out = label_structure(msg["task"]["material_id"], msg["task"]["cif"], Recipe(**msg["recipe"]),
                          keep_cell=bool(msg["task"].get("keep_cell")))
    sys.stdout.write("\n" + json.dumps(out) + "\n")
