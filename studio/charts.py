"""Streamlit: a DOS plot with its downloads. The plotly toolbar's camera gives a quick PNG; the
PNG and SVG buttons give files drawn on the server from the same curves (figures.dos_image)."""
from __future__ import annotations

from functools import partial

import streamlit as st

from studio import figures as viz


def dos_chart(curves: list[dict], key: str, filename: str, title: str = "", height: int = 300,
              wrap: int | None = None) -> None:
    """The plot, then 'PNG' and 'SVG' download buttons under it. filename: without extension.
    wrap: legend entries broken into lines of this many characters (a narrow plot)."""
    st.plotly_chart(viz.dos_figure(curves, title=title, height=height, wrap=wrap), width="stretch", key=key,
                    config=viz.plot_config(filename))
    with st.container(horizontal=True, key=f"{key}_files"):
        # the files are drawn only when a button is clicked (a callable), and a download needs no rerun
        for fmt, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
            st.download_button(fmt.upper(), partial(viz.dos_image, curves, title, fmt), f"{filename}.{fmt}",
                               mime=mime, key=f"{key}_{fmt}", on_click="ignore",
                               help=f"Download this plot as {fmt.upper()} (legend and axes as shown)")
