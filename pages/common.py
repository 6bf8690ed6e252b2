"""Widgets every page shares: pagination, readable errors with a retry, and formatting."""

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import streamlit as st

from services import ConsoleError, CorruptFile

if TYPE_CHECKING:  # imported where used: the playground service pulls in the inference engine, which Home need not load
    from services.playground import GenerationSettings

T = TypeVar("T")

BAND_COLORS = {"Excellent": "green", "Good": "blue", "Fair": "orange", "Poor": "red"}
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")


def plain(text: object) -> str:
    """User text (names, descriptions, file names) made inert inside st.markdown / caption / alerts: every
    Markdown and HTML character is escaped, so `![x](http://host/p.png)` shows as typed and loads nothing."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")


def show_broken(broken: Sequence[CorruptFile]) -> None:
    """Name each unreadable registry file with its path and the way to repair or remove it; the rest of the page
    goes on."""
    for error in broken:
        st.warning(plain(str(error)), icon=":material/broken_image:")


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
    st.error(plain(message), icon="⚠️")
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


def put_generation_settings(prefix: str, settings: "GenerationSettings") -> None:
    """Put decoding settings into the widgets of `generation_settings(prefix)` (e.g. from a history entry)."""
    for name, value in settings.model_dump().items():
        st.session_state[prefix + name] = value


def generation_settings(prefix: str) -> "GenerationSettings":
    """The decoding settings as widgets, each with its field's description as help; one form for every page."""
    from services.playground import GenerationSettings

    if prefix + "max_new_tokens" not in st.session_state:
        put_generation_settings(prefix, GenerationSettings())
    fields = GenerationSettings.model_fields
    left, middle, right = st.columns(3)
    left.number_input(
        "Max new tokens",
        min_value=1,
        max_value=2048,
        step=16,
        key=prefix + "max_new_tokens",
        help=fields["max_new_tokens"].description,
    )
    middle.slider(
        "Temperature",
        min_value=0.0,
        max_value=2.0,
        step=0.05,
        key=prefix + "temperature",
        help=fields["temperature"].description,
    )
    right.slider(
        "Top-p", min_value=0.05, max_value=1.0, step=0.05, key=prefix + "top_p", help=fields["top_p"].description
    )
    left.slider(
        "Repetition penalty",
        min_value=1.0,
        max_value=2.0,
        step=0.05,
        key=prefix + "repetition_penalty",
        help=fields["repetition_penalty"].description,
    )
    middle.number_input(
        "Seed", min_value=0, max_value=2**31 - 1, step=1, key=prefix + "seed", help=fields["seed"].description
    )
    st.text_area("System message", key=prefix + "system", height=68, max_chars=4000, help=fields["system"].description)
    return GenerationSettings(**{name: st.session_state[prefix + name] for name in fields})
