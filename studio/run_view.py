"""Section 5 of the Generate page: the job in progress, its DFT checks and rounds, and the run
being viewed. Drawn under the form, or alone under the error of an input that stops the form (a
refused file must not take the results on screen with it)."""
from __future__ import annotations

import streamlit as st

from dosmatgen_core.candidates import rounds
from dosmatgen_core.scoring import certify
from studio import figures as viz
from studio import shared as studio
from studio import state
from studio.charts import dos_chart
from studio.results import no_new_text, show_run


def job_panel(was_live: bool, shown: str | None, note: str | None = None) -> None:
    """The job in progress: its progress bar and Cancel, then its outcome. It ticks while a job
    runs, and slowly while its chain's DFT checks decide on a next round (started in their own
    thread: the page only follows it); an idle tick reruns the fragment for nothing (and a plot's
    PNG/SVG button, still a callable, can lose its file to a rerun cut short). shown, note: the id
    of the job and the chain's note this page run drew, so that a round started meanwhile, or the
    rounds' end, is drawn at once."""
    chain = state.current_chain()
    waiting = chain is not None and chain.asked_rounds and not chain.finished and not was_live

    @st.fragment(run_every=1.0 if was_live else 5.0 if waiting else None)
    def panel():
        job = state.current_job()
        if job is None:
            return
        if job.id != shown or (chain is not None and chain.status_note != note) or \
                (was_live and not job.active and job.status != "done"):
            st.rerun(scope="app")          # a round started, or the job ended: draw it once, without the tick
        if job.active:
            # an ETA of 0 means "not known yet" (sampling's first steps, scoring's first chunk); it is
            # the phase's own (sampling, baseline, scoring), and says so: a walk read "about 1 s left"
            # at sampling's last step, then "about 4 min left" for the baseline
            left = f" · about {studio.duration(job.eta)} left in this phase" if job.eta > 0.5 else ""
            st.progress(min(job.progress, 1.0), text=f"{job.message or 'starting'}{left}")
            # a callback: a click on a button in a ticking fragment could be lost to the next tick
            st.button("Cancel", key=f"cancel_{job.id}", on_click=state.resources()["jobs"].cancel, args=(job.id,))
        elif job.status == "done":
            if st.session_state.get("shown_job") != job.id:
                # the job started its DFT checks itself when it ended (chain.Chain._checks): show its run once
                st.session_state["shown_job"] = job.id
                after = job.followup or {}
                if not after.get("ranks") and chain is not None and chain.top:
                    why = after.get("why") or f"they could not be started ({after.get('error', 'no reason given')})"
                    st.session_state["dft_skipped"] = (job.run_id, why)
                st.query_params["run"] = job.run_id
                st.rerun()
        elif job.status == "cancelled":
            # named: the note stays until the next Generate, while the form may already say something else
            st.warning(f"Generation of “{studio.plain(job.request.title or 'the last run')}” cancelled. Any candidates "
                       "scored before the cancel are kept, unranked, as a cancelled run on the Runs page.")
        elif job.status == "failed":
            st.error(f"Generation of “{studio.plain(job.request.title or 'the last run')}” failed: {job.error}. Your "
                     "settings are unchanged; adjust them and try again.")
    panel()


DFT_TICK = 4.0      # s between looks at running checks: each takes minutes, and every tick reruns the panel


def dft_panel(run_id: str, n_done: int, live: bool):
    @st.fragment(run_every=DFT_TICK if live else None)
    def panel():
        cert = state.certifier(str(studio.RUNS_PATH))
        p = cert.progress(run_id)
        if p is None:
            return
        now = len(p["done"]) + len(p["failed"])
        if now != n_done or (live and not p["active"]):
            st.rerun(scope="app")          # a result landed, or the batch ended: redraw cards and ranking
        _dft_progress(cert, p, now, run_id)
    panel()


def _dft_progress(cert, p: dict, now: int, run_id: str) -> None:
    n = len(p["ranks"])
    st.progress(now / max(n, 1), text=certify.status_line(p, studio.duration))
    if p["active"] and not p["cancelled"]:
        # a callback: a walk's clicks, under load, were lost to the fragment's next tick
        st.button("Stop the DFT checks", key=f"dft_cancel_{run_id}", on_click=cert.cancel, args=(run_id,),
                  help="The calculation already running finishes; the rest are not started.")


def current_run(target=None, title: str | None = None, live_views: int = viz.MAX_LIVE_VIEWS - 1,
                grow=None) -> None:
    """Section 5: the job in progress, its DFT checks and rounds, and the run being viewed (the
    URL's run). Drawn under the form, or alone under the error of an input that stops the form:
    a refused file must not take the results on screen with it. target, title: the form's (a job
    or run of another target says so); grow: a card's grow button's callback."""
    job = state.current_job()
    live = getattr(job, "active", False)
    chain = state.current_chain()
    # how the rounds stand (the chain's own words), else what the grow button said
    if note := (chain.status_note if chain is not None and chain.status_note else st.session_state.get("rounds_note")):
        st.info(note)
    with st.container():     # always there, so the results below keep their place (and their 3D views)
        if job is not None and job.active and job.request.targets and \
                target is not None and not rounds.same_target(job.request.targets[0], target):
            # a round started from the Runs page works towards its own run's target, not the form's
            dos_chart([{"y": job.request.targets[0], "name": f"this run's target: {rounds.target_of(job.request.title)}",
                        "style": "target", "window": job.request.window}], key="jobtarget", filename="run_target",
                      title="The target of the run in progress (the chart in 1 · Target DOS is the next Generate's)")
    job_panel(live, getattr(job, "id", None), chain.status_note if chain is not None else None)
    run_id = st.query_params.get("run")
    restored = False
    if run_id:
        st.session_state["viewed_run"] = run_id
    elif run_id := st.session_state.get("viewed_run"):
        # the sidebar's page links drop the URL's run: back on this page, the session's run and its
        # checks come back (a walk's results vanished after a look at Verify)
        st.query_params["run"] = run_id
        restored = True
    if run_id:
        try:
            run = state.store().get(run_id)
        except KeyError:
            if restored:        # deleted on the Runs page since: nothing to show, nothing to say
                st.session_state.pop("viewed_run", None)
                st.query_params.pop("run", None)
                return
            st.info(f"No stored run has the id {studio.plain(run_id)}: it may have been deleted, or the link is "
                    "mistyped. The Runs page lists the stored runs.")
        else:
            dft = state.dft_statuses(run)
            p = state.certifier(str(studio.RUNS_PATH)).progress(run_id)
            if p is not None:
                dft_panel(run_id, len(p["done"]) + len(p["failed"]), p["active"])
                # the checks pick() chose (not their replacements) against the most it could have
                # chosen: the estimate said "up to 6", and a walk's run checked 3 without a word
                if why := certify.passed_over(run, p["ranks"][:p["picked"]], labelled=state.labelled_ids(studio.DB_URL),
                                              top=p["asked"]):
                    st.caption(why + " Known ones show their stored DFT label instead.")
                with st.container():     # always there: a note that comes later must not move the cards (and
                    # their 3D views, which a browser then reloads and drops) down the page
                    if not p["active"] and (none_new := no_new_text(run, dft)):
                        st.info(none_new)
            elif (skipped := st.session_state.get("dft_skipped")) and skipped[0] == run_id:
                st.info(f"No DFT check was started: {skipped[1]}."
                        + (" Known candidates show their stored DFT label instead." if "known" in skipped[1] else ""))
            if live:
                st.caption(f"Showing the last run, `{run_id}` ({studio.plain(run.get('title') or 'untitled')}), "
                           "until the run in progress ends.")
            elif " · grown from " in (run.get("title") or ""):       # a round (rounds.round_title)
                what = "known sites" if " · grown from known sites" in run["title"] else "a candidate"
                st.caption(f"Showing run `{run_id}` ({studio.plain(run['title'])}): a round grown from {what}, not "
                           "from the form above, which sets up a new run.")
            elif run.get("title") != title:       # a run opened by its link, or the form changed since
                st.caption(f"Showing the stored run `{run_id}` ({studio.plain(run.get('title') or 'untitled')}); "
                           "the form above sets up the next run.")
            # the reference view and the known sites' views above are live 3D views too
            waiting = ({r for r in p["ranks"] if r not in dft and r not in p["skipped"]}
                       if p is not None and p["active"] and not p["cancelled"] else set())
            # one check skipped, the batch's others go on (walk 18 could only stop them all)
            skip = (lambda rank, rid=run_id: state.certifier(str(studio.RUNS_PATH)).skip(rid, rank))
            # checks that will not run say so at once: a stop's reached the others only a redraw later (walk 18)
            stopped = certify.unstarted(p, dft) if p is not None and p["cancelled"] else set()
            not_run = {**{r: "DFT check stopped before it started" for r in stopped},
                       **{r: "DFT check skipped" for r in (p["skipped"] if p is not None else [])}}
            show_run(run, dft, state.stored_labels(run), live_views=live_views, grow=grow, waiting=waiting,
                     skip=skip, skippable=certify.skippable(p, dft), not_run=not_run)


def stop_form(error: str | None = None) -> None:
    """The form cannot go on (a refused file, no target yet): one error saying why, then the job
    in progress and the run being viewed, as they were, and nothing else."""
    if error:
        st.error(error)
    current_run()
    st.stop()
