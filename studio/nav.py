"""The app's page list, and the guard that keeps every page inside it.

Streamlit decides once per server process whether an app is a legacy `pages/` folder app: until
some session has called st.navigation, a `pages/` folder beside the entry script makes it run
the page file named by the URL on its own (http://host/Runs → pages/1_Runs.py, without app.py),
under Streamlit's default page list ('app', 'Runs', …, 'generate'). The folder must stay where
it is, so each page starts with `inside_app()`: a page run outside the app's navigation runs the
app's navigation instead (which resolves the same URL to the same page), then stops.
"""
from __future__ import annotations

import threading

import streamlit as st

from studio.shared import ROOT

TITLE = "DOSMatGen Studio"
_run = threading.local()     # one script thread per session: set while the app runs a page


def pages() -> list:
    """Generate first. Absolute paths, so the list is the same whatever script Streamlit started with."""
    # no page icons: emoji need a font the browser may lack, and Material icons are fetched from Google
    p = ROOT / "pages"
    generate = st.Page(p / "generate.py", title="Generate", default=True)

    def to_generate():
        """/Generate, as the other pages have /Runs: the default page itself lives at /."""
        st.switch_page(generate)
    return [generate,
            st.Page(p / "1_Runs.py", title="Runs", url_path="Runs"),
            st.Page(p / "2_Verify.py", title="Verify", url_path="Verify"),
            st.Page(p / "3_Model.py", title="Model", url_path="Model"),
            st.Page(to_generate, title="Generate", url_path="Generate", visibility="hidden")]


def run_app() -> None:
    """What app.py does: the page config, the navigation, and the page the URL names."""
    st.set_page_config(page_title=TITLE, layout="wide")
    page = st.navigation(pages())
    _run.inside = True
    try:
        page.run()
    finally:
        _run.inside = False


def inside_app() -> None:
    """Called first by every page: outside the app's navigation, run the app instead and stop."""
    if getattr(_run, "inside", False):
        return
    run_app()
    st.stop()
