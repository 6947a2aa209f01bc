"""What the pages load once per process: models, the reference db and its search rows, the MP
structures, the job manager, the DFT verifier and certifier."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from dosmatgen_core.candidates import pipeline, rounds
from dosmatgen_core.candidates.chain import Chain
from dosmatgen_core.candidates.jobs import JobManager
from dosmatgen_core.candidates.runs import RunStore
from dosmatgen_core.labels.reference_db import open_db
from dosmatgen_core.paths import missing_mp_tables
from dosmatgen_core.model.checkpoint import load_model
from dosmatgen_core.scoring import certify
from dosmatgen_core.scoring.certify import Certifier
from dosmatgen_core.scoring.predictor import load_predictor
from dosmatgen_core.scoring.stability import Hull
from dosmatgen_core.scoring.reference_dft import ReferenceChecks
from dosmatgen_core.scoring.verify import Verifier
from dosmatgen_core.training.dataset import mp_tables_parsed
from dosmatgen_core.model.guide import load_guide
from studio import catalogue, results
from studio import shared as studio


@st.cache_resource(show_spinner="Loading the models and the reference database…")
def resources() -> dict:
    """Model, predictor, guide, reference db, hull cache and job manager; a part that fails to
    load is None and its reason is listed in 'errors'."""
    out = {"errors": []}
    for key, fn in (("model", lambda: load_model(studio.MODEL_PATH)),
                    ("predictor", lambda: load_predictor(studio.PREDICTOR_PATH)),
                    ("guide", lambda: load_guide(studio.GUIDE_PATH)),
                    ("db", lambda: open_db(studio.DB_URL))):
        try:
            out[key] = fn()
        except Exception as exc:
            out[key] = None
            out["errors"].append(f"{key}: {exc}")
    out["hull"] = Hull(studio.HULL_PATH, studio.DB_URL)
    out["jobs"] = JobManager()
    out["chains"] = {}          # id → candidates.chain.Chain; a session keeps the id of its own
    return out


def submit(req, store: RunStore, dft: dict, rounds_left: int = 0):
    """Queue a generation as the Generate page's job, in a chain of rounds (candidates.chain): its
    thread DFT-checks its top candidates (dft: "top", "relaxed", "per_source") and, with rounds
    left, the checks' thread starts the next round from the best check so far. The session's
    earlier chain starts no further round. A bad request raises before anything is queued."""
    R = resources()

    def queue(r, then):
        return R["jobs"].submit(r, R["model"], R["predictor"], store, studio.DB_URL, hull=R["hull"], guide=R["guide"],
                                then=then)
    chain = Chain(queue, certifier(str(studio.RUNS_PATH)), store, top=int(dft["top"]), relaxed=bool(dft["relaxed"]),
                  per_source=bool(dft["per_source"]), labelled=labelled_ids(studio.DB_URL), left=int(rounds_left))
    job = chain.start(req)
    if (old := current_chain()) is not None:
        old.stop()
    R["chains"][chain.id] = chain
    st.session_state["chain"] = chain.id
    return job


def current_chain() -> Chain | None:
    """The session's chain of rounds: its latest Generate or grow, and the rounds that followed. A
    session with none (a new tab, or a closed one opened again) takes the process's chain still
    at work, if any: generation runs one at a time here, and a walk's new tab showed an idle form
    while round 2 generated."""
    chains = resources()["chains"]
    if (mine := chains.get(st.session_state.get("chain", ""))) is not None:
        return mine
    # a copy: other sessions' threads add chains meanwhile
    if (live := next((c for c in reversed(list(chains.values())) if not c.finished), None)) is not None:
        st.session_state["chain"] = live.id
    return live


def current_job():
    """The generation of the session's chain now queued, running or last ended; None before any."""
    chain = current_chain()
    return chain.job if chain is not None else None


def start_round(src: dict, store: RunStore) -> str:
    """A card's "Grow from this candidate" as the Generate page's next job: grown from it alone,
    towards the target of the run it belongs to, DFT-checked as shipped (rounds.grow_request). The
    note says so; a stored run or candidate that cannot be read raises ValueError or KeyError."""
    parent = store.get(src["run"])
    submit(rounds.grow_request(parent, src), store, {"top": certify.DEFAULT_TOP, "relaxed": studio.SHIPPED.dft_relaxed,
                                                     "per_source": studio.SHIPPED.dft_per_source})
    return (f"Growing from {src['name']} alone, towards the target of run {src['run']} "
            f"({rounds.target_of(parent.get('title') or '')}): the model's draws and the swaps, then DFT checks of the top.")


@st.cache_resource(show_spinner="Listing the reference materials…")
def reference_rows(db_url: str) -> list[dict]:
    return catalogue.reference_rows(open_db(db_url))


@st.cache_resource(show_spinner=False)
def labelled_ids(db_url: str) -> frozenset[str]:
    """The ids of the reference db's labelled structures: a candidate that is one of them shows its
    stored DFT label, and is not checked again."""
    return frozenset(r["material_id"] for r in reference_rows(db_url))


@st.cache_data(max_entries=64, show_spinner=False)
def _stored_labels(run_id: str, matches: tuple, db_url: str, n_labelled: int, _run: dict) -> dict:
    return results.stored_labels(_run, resources()["db"], labelled_ids(db_url))


def stored_labels(run: dict) -> dict[int, dict[int, dict]]:
    """results.stored_labels of a run, computed once per run and database (each matched site lays
    the candidate on the known cell: about 10 ms, on every rerun before)."""
    matches = tuple((c["rank"], c.get("matches"), c.get("novel"), bool(c.get("is_reference"))) for c in run["candidates"])
    return _stored_labels(run["id"], matches, studio.DB_URL, len(labelled_ids(studio.DB_URL)), run)


@dataclass
class WarmStart:
    """The background parse of the MP tables: its thread and when it began."""
    thread: threading.Thread
    started: float

    def running_s(self) -> float | None:
        """Seconds it has worked, while it works; None once it has ended."""
        return time.time() - self.started if self.thread.is_alive() else None


@st.cache_resource(show_spinner=False)
def warm_start() -> WarmStart | None:
    """Once per server process, where no process has parsed the MP tables yet (a fresh install):
    parse them in a background thread while the user picks a target, instead of in the first
    Generate (140 s on 2 cores; startup.json). A run that starts before it ends waits for it."""
    if missing_mp_tables() or mp_tables_parsed():
        return None
    t = threading.Thread(target=pipeline.warm_up, args=("MP structures parsed",), name="warm-mp-tables", daemon=True)
    t.start()
    return WarmStart(t, time.time())


@st.cache_resource(show_spinner="Reading the Materials Project structures that ship with the project…")
def mp_structures() -> tuple:
    """The shared MP structures; none where the tables are not installed (the page says so)."""
    from dosmatgen_core.training.dataset import mp_structures as mp
    return () if missing_mp_tables() else mp()


@st.cache_resource(show_spinner=False)
def elemental_structures(element: str) -> list:
    """catalogue.elemental over the shipped MP structures, once per element: the scan takes half a
    second, and the page reruns at every click while the search box holds the element."""
    return catalogue.elemental(element, mp_structures())


@st.cache_data(show_spinner=False)
def _truth_pairs(path: str, mtime: float) -> list:
    return studio.truth_pairs(Path(path))


def truth_pairs() -> list:
    """The truth bench's (lookup, app default) DFT MAEs per site, read again when the record changes
    (the bench rewrites it as sites land)."""
    path = studio.TRUTH_FILE
    return _truth_pairs(str(path), path.stat().st_mtime if path.exists() else 0.0)


@st.cache_data(ttl=5, show_spinner=False)
def cpu_load() -> tuple[float, int]:
    """studio.cpu_load, read at most every 5 s: it samples /proc five times (about 0.1 s), and the
    Generate page reruns on every widget change, the Verify page every 2 s."""
    return studio.cpu_load()


@st.cache_resource(show_spinner=False)
def verifier(runs_path: str) -> Verifier:
    return Verifier(RunStore(runs_path))


@st.cache_resource(show_spinner=False)
def _reference_checks(runs_path: str) -> ReferenceChecks:
    return ReferenceChecks(verifier(runs_path))


def reference_checks() -> ReferenceChecks:
    """GPAW on a reference cell without a label, on the verifier's cores and cache."""
    return _reference_checks(str(studio.RUNS_PATH))


@st.cache_resource(show_spinner=False)
def certifier(runs_path: str) -> Certifier:
    # the prior scaled by the CPU's other work when a batch starts, as the page's estimate is
    return Certifier(verifier(runs_path), studio.dft_seconds_prior(),
                     slowdown=lambda workers: studio.slowdown(workers, *studio.cpu_load()))


def activity() -> tuple:
    """What changes while runs generate and checks run, for a page that follows them (the Runs page
    showed four checks running for minutes after they had all landed, and no new round): each
    run's status, each check's, the chains at work (their round and job) and the batches of checks
    not finished (between a batch's last check and the next round's stored run, only these say
    that more is coming)."""
    chains = [c for c in list(resources()["chains"].values()) if not c.finished]
    batches = certifier(str(studio.RUNS_PATH)).batches
    return (tuple((r["id"], r["status"]) for r in store().list()),
            tuple((v["run_id"], v["rank"], v["status"]) for v in verifier(str(studio.RUNS_PATH)).all()),
            tuple((c.id, c.round, getattr(c.job, "id", None), getattr(c.job, "status", None)) for c in chains),
            tuple(rid for rid, b in list(batches.items()) if not b.finished))


def busy(seen: tuple) -> bool:
    """Whether activity() says a run is generating, a check is queued or running, a chain is at
    work or a batch of checks has not finished."""
    return (any(s == "running" for _, s in seen[0]) or any(s in ("queued", "running") for *_, s in seen[1])
            or bool(seen[2]) or bool(seen[3]))


def store() -> RunStore:
    """Cheap, not cached: its path follows the environment (tests point it elsewhere)."""
    return RunStore(studio.RUNS_PATH)


def dft_statuses(run: dict) -> dict[int, dict]:
    return verifier(str(studio.RUNS_PATH)).statuses(run)


def kept_upload(key: str, draw) -> tuple[str, bytes, bool] | None:
    """The file of the uploader that draw(widget_key) draws, kept past a visit to another page (a
    file uploader cannot be given its file back: it comes back empty): (name, bytes, from_earlier).
    An uploader that held the file in the run before and is empty now was emptied by its user (×):
    its file is forgotten. None when there is no file."""
    if st.session_state.pop(f"{key}_hidden", False) and (st.session_state.get(f"{key}_kept")
                                                         or st.session_state.get(f"{key}_had")):
        # not drawn in the run before (the other target source was picked): Streamlit keeps its file
        # on the server while the browser shows the box empty, with no × (walk 14); a fresh widget
        # shows what is true, and the kept file is said to be an earlier one, with a way to drop it (a
        # refused file, forgotten but still in the widget, would stop the page with no × to remove it)
        _renew(key)
    wkey = upload_widget_key(key)
    drawn_before = wkey in st.session_state       # an undrawn widget's state is dropped
    upload = draw(wkey)
    if upload is not None:
        st.session_state[f"{key}_kept"] = (upload.name, upload.getvalue())
        st.session_state[f"{key}_had"] = True
        return upload.name, upload.getvalue(), False
    if drawn_before and st.session_state.get(f"{key}_had"):
        forget_upload(key)           # it held the file in the run before: its × was clicked
    st.session_state[f"{key}_had"] = False
    kept = st.session_state.get(f"{key}_kept")
    return (*kept, True) if kept else None


def upload_widget_key(key: str) -> str:
    """The uploader's widget key now: key, then key_1, key_2, ... after each _renew."""
    gen = st.session_state.get(f"{key}_gen", 0)
    return f"{key}_{gen}" if gen else key


def _renew(key: str) -> None:
    """A new widget key for the uploader: the only way to empty a file uploader on the server."""
    st.session_state[f"{key}_gen"] = st.session_state.get(f"{key}_gen", 0) + 1
    st.session_state[f"{key}_had"] = False


def hide_upload(key: str) -> None:
    """Said by a page run that does not draw the uploader (kept_upload renews it when it returns)."""
    st.session_state[f"{key}_hidden"] = True


def forget_upload(key: str, widget: bool = False) -> None:
    """Drop the kept file; widget: the uploader's own file too (the page's "Forget it")."""
    st.session_state.pop(f"{key}_kept", None)
    if widget:
        _renew(key)


# ---- the target in the page's address: a reload (or a shared link) opens the same material and site
def linked_target(labelled: frozenset[str]) -> tuple[str, int] | None:
    """(material id, site) from the address's ?ref=ID&site=I, when ID is a labelled material and I
    a whole number; None otherwise (a reload reset the form to Au3Ni: walk 17)."""
    ref, site = st.query_params.get("ref"), st.query_params.get("site", "0")
    if ref not in labelled or not str(site).isdigit():
        return None
    return ref, int(site)


def link_target(ref: str | None, site: int | None) -> None:
    """The target's material and site written to the address (a labelled one; None: taken out, for a
    file or an upload, which a reload cannot bring back)."""
    if ref is None:
        for k in ("ref", "site"):
            st.query_params.pop(k, None)
    elif (st.query_params.get("ref"), st.query_params.get("site")) != (ref, str(site)):
        st.query_params.update(ref=ref, site=str(site))


def linked(name: str, allowed: list[str]) -> str | None:
    """A form value named in the address (?mode=template), when it is one of allowed; else None."""
    value = st.query_params.get(name)
    return value if value in allowed else None


def link(name: str, value: str) -> None:
    """A form value written to the address, so that a reload keeps it (walk 18 lost the mode)."""
    if st.query_params.get(name) != value:
        st.query_params[name] = value
