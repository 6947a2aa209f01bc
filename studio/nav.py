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
    # the default page is served at /; its own path (reserved, unused) is not "generate", so that
    # /generate can lead to it like /Generate
    paths = ("Runs", "Verify", "Model")
    shown = [st.Page(p / "generate.py", title="Generate", default=True, url_path="home"),
             *(st.Page(p / f"{k}_{name}.py", title=name, url_path=name) for k, name in enumerate(paths, 1))]
    # the URLs people guess: /Generate (the default page lives at /), and each in lower case
    # (Streamlit's paths are case-sensitive). Built from our own names: outside a script run (a
    # process that imports app.py as __main__, e.g. a spawned worker) st.Page keeps no url_path
    aliases = [("Generate", "Generate", shown[0]), ("generate", "Generate", shown[0])] + \
        [(n.lower(), n, page) for n, page in zip(paths, shown[1:])]
    return shown + [_alias(path, title, page) for path, title, page in aliases]


def _alias(path: str, title: str, page) -> "st.Page":
    """A hidden page at /path that opens page."""
    def go():
        st.switch_page(page)
    go.__name__ = f"alias_{path}"
    return st.Page(go, title=title, url_path=path, visibility="hidden")


def run_app() -> None:
    """What app.py does: the page config, the navigation, and the page the URL names."""
    st.set_page_config(page_title=TITLE, layout="wide")
    page = st.navigation(pages())
    st.sidebar.markdown(f"**{TITLE}** · crystals whose atoms reproduce a target DOS")   # the pages name it nowhere else
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
