"""Streamlit: each input check's message shown under the input it is about.

The library names the field a problem belongs to (checks.request_problems → (field, line)); the
page reserves a place under each input as it draws it, and the messages fill those places once
the whole request is known. A problem whose input is not on the page shows at the fallback place."""
from __future__ import annotations

import streamlit as st


class FieldMessages:
    def __init__(self):
        self._slots = {}

    def under(self, field: str, where=None) -> None:
        """Reserve the place right under the input just drawn (in `where`, a column, if given)."""
        self._slots[field] = (where or st).empty()

    def show(self, problems: list[tuple[str, str]], fallback=None) -> list[str]:
        """One error line per problem under its input; the lines that had no input of their own
        go to `fallback` (or are returned for the caller to place)."""
        rest = []
        for field, line in problems:
            slot = self._slots.get(field)
            if slot is not None:
                slot.error(line)
            elif fallback is not None:
                fallback.error(line)
            else:
                rest.append(line)
        return rest
