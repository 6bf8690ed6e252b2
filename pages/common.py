"""Widgets every page shares: pagination, readable errors with a retry, and formatting."""

from collections.abc import Callable, Sequence
from typing import TypeVar

import streamlit as st

from services.errors import ConsoleError

T = TypeVar("T")

BAND_COLORS = {"Excellent": "green", "Good": "blue", "Fair": "orange", "Poor": "red"}


def paginate(items: Sequence[T], key: str, page_size: int = 25) -> Sequence[T]:
    """Show page controls under a table and return the current page's slice; the page survives reruns."""
    total = len(items)
    pages = max(1, -(-total // page_size))
    page = min(st.session_state.get(key, 1), pages)
    start = (page - 1) * page_size
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(f"Showing {start + 1 if total else 0}–{min(start + page_size, total)} of {total:,}")
    right.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=page, step=1, key=key)
    return items[start : start + page_size]


def show_error(error: Exception, retry_key: str) -> None:
    """A readable error and a retry, never a traceback; unexpected errors still name their type."""
    message = str(error) if isinstance(error, ConsoleError) else f"Unexpected error ({type(error).__name__}): {error}"
    st.error(message, icon="⚠️")
    if st.button("Retry", key=retry_key):
        st.rerun()


def attempt(action: Callable[[], T], retry_key: str) -> T | None:
    """Run a service call; on failure show the error with a retry and return None."""
    try:
        return action()
    except Exception as error:  # noqa: BLE001 — the page must never show a stack trace
        show_error(error, retry_key)
        return None


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
