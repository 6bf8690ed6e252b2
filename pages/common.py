"""Widgets every page shares: pagination, errors as plain text, form state, config-driven widgets, formatting."""

import logging
import math
import re
from collections.abc import Callable, Sequence
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

import streamlit as st
from pydantic import BaseModel

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


def paginate(items: Sequence[T], key: str, page_size: int | None = None) -> Sequence[T]:
    """Show page controls under a table and return the current page's slice; the page survives reruns.

    The page size is the Settings page's "Rows per page" unless a caller needs its own."""
    if page_size is None:
        from services.settings import get_settings

        page_size = get_settings().page_size
    total = len(items)
    pages = max(1, -(-total // page_size))
    page = min(st.session_state.get(key, 1), pages)
    start = (page - 1) * page_size
    left, right = st.columns([4, 1], vertical_alignment="center")
    left.caption(f"Showing {start + 1 if total else 0}–{min(start + page_size, total)} of {total:,}")
    right.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=page, step=1, key=key)
    return items[start : start + page_size]


def show_error(error: Exception | str, retry_key: str | None = None) -> None:
    """An error as plain text, never a traceback or Markdown of its text.

    A ConsoleError already says what to do, and retrying cannot fix it. Anything else is unexpected: its traceback
    goes to the server log and a Retry is offered (with `retry_key`), since the cause may be passing.
    """
    if isinstance(error, str):
        st.error(plain(error), icon=":material/error:")
        return
    if isinstance(error, ConsoleError):
        st.error(plain(str(error)), icon=":material/error:")
        return
    logging.getLogger("rmn_console").error("unexpected error on a page", exc_info=error)
    st.error(
        plain(f"Unexpected error ({type(error).__name__}): {error}") + "  \nThe server log has the details.",
        icon=":material/error:",
    )
    if retry_key is not None and st.button("Retry", key=retry_key, icon=":material/refresh:"):
        st.rerun()


def attempt(action: Callable[[], T], retry_key: str) -> T | None:
    """Run a service call; on failure show the error (with a retry where one may help) and return None."""
    try:
        return action()
    except Exception as error:  # noqa: BLE001 — the page must never show a stack trace
        show_error(error, retry_key)
        return None


def done(message: str, rerun: Literal["app", "fragment"] | None = None) -> None:
    """The confirmation every action that changes something ends with, naming what changed. With `rerun`, the page
    (or the fragment) is redrawn at once so no table lags behind the change, and the toast shows after the rerun."""
    if rerun is None:
        st.toast(plain(message), icon=":material/check_circle:")
        return
    st.session_state.setdefault("flash_messages", []).append(message)
    st.rerun(scope=rerun)


def show_flash() -> None:
    """Toasts for the actions of the previous run (called by app.py and by fragments that act)."""
    for message in st.session_state.pop("flash_messages", []):
        st.toast(plain(message), icon=":material/check_circle:")


# ---- forms -------------------------------------------------------------------------------------------------------
# One rule for form state. A form's values live in one plain session entry, never only in widget keys: Streamlit
# drops the state of widgets it did not draw in a run (a fragment's timer run included), and after a fragment run the
# browser sends back what its widgets showed. Widget keys name the record being edited (a staged file, a job, a
# preset), so loading another record (a clone, a preset, the next upload) always repopulates every widget.


def record_key(form: str, record: str, field: str) -> str:
    """The key of `field`'s widget in `form` while it edits `record`."""
    return f"{form}[{record}].{field}"


def form_values(form: str, initial: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The values `form` holds (`initial()` the first time); widgets write into this dict as they are drawn."""
    if f"{form}.values" not in st.session_state:
        load_form(form, "new", initial())
    return st.session_state[f"{form}.values"]


def load_form(form: str, record: str, values: dict[str, Any]) -> None:
    """Put a record's values into `form` (a clone, a preset): every widget repopulates on the next run."""
    count = st.session_state.get(f"{form}.loads", 0) + 1
    st.session_state[f"{form}.loads"] = count
    st.session_state[f"{form}.record"] = f"{record}#{count}"
    st.session_state[f"{form}.values"] = dict(values)


def current_values(form: str) -> dict[str, Any]:
    """The form's values with what its widgets hold right now (in a callback, before they are drawn again)."""
    values = st.session_state[f"{form}.values"]
    return {name: st.session_state.get(form_key(form, name), value) for name, value in values.items()}


def form_key(form: str, field: str) -> str:
    return record_key(form, st.session_state[f"{form}.record"], field)


def _bounds(field: Any, kind: type) -> tuple[Any, Any]:
    """The widget's inclusive min and max from the field's ge / gt / le / lt constraints."""
    low = high = None
    for rule in field.metadata:
        if getattr(rule, "ge", None) is not None:
            low = rule.ge
        if getattr(rule, "gt", None) is not None:
            low = rule.gt + 1 if kind is int else math.nextafter(rule.gt, math.inf)
        if getattr(rule, "le", None) is not None:
            high = rule.le
        if getattr(rule, "lt", None) is not None:
            high = rule.lt - 1 if kind is int else math.nextafter(rule.lt, -math.inf)
    return low, high


def field_shape(model: type[BaseModel], name: str) -> tuple[type | None, tuple, bool]:
    """(int, float, bool or str; the Literal's choices; whether None is allowed) of a model field."""
    annotation = model.model_fields[name].annotation
    parts = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    optional = NoneType in parts
    parts = tuple(part for part in parts if part is not NoneType)
    if len(parts) == 1 and get_origin(parts[0]) is Literal:
        return str, get_args(parts[0]), optional
    if len(parts) == 1 and parts[0] in (int, float, bool, str):
        return parts[0], (), optional
    return None, (), optional


def config_widget(
    form: str, model: type[BaseModel], name: str, label: str, *, container: Any = st, **options: Any
) -> Any:
    """The widget of one config field: bounds, choices, help and whether it may be empty all come from the pydantic
    field, so the form cannot offer what the config refuses (H2O LLM Studio builds its form the same way).
    `options` adds presentation only (step, format, placeholder, format_func, or `choices` for a field whose
    choices depend on the data). The value comes from and goes back to `form_values(form)`."""
    values = st.session_state[f"{form}.values"]
    field = model.model_fields[name]
    kind, choices, optional = field_shape(model, name)
    common = {"key": form_key(form, name), "help": field.description}
    value = values.get(name)
    if "choices" in options or choices:
        choices = list(options.pop("choices", choices))
        if value not in choices:
            value = choices[0] if choices else None
        result = container.selectbox(
            label, choices, index=choices.index(value) if value in choices else None, **common, **options
        )
    elif kind is bool:
        result = container.toggle(label, value=bool(value), **common, **options)
    elif kind in (int, float):
        low, high = _bounds(field, kind)
        if value is None and not optional:
            value = field.get_default(call_default_factory=True)
        result = container.number_input(
            label,
            min_value=kind(low) if low is not None else None,
            max_value=kind(high) if high is not None else None,
            value=kind(value) if value is not None else None,
            **common,
            **options,
        )
    else:
        result = container.text_input(label, value="" if value is None else str(value), **common, **options)
    values[name] = result
    return result


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
    # Two columns: three sliders side by side clip their labels in the Playground's narrow form column.
    left, right = st.columns(2)
    left.number_input(
        "Max new tokens",
        min_value=1,
        max_value=2048,
        step=16,
        key=prefix + "max_new_tokens",
        help=fields["max_new_tokens"].description,
    )
    left.number_input(
        "Seed", min_value=0, max_value=2**31 - 1, step=1, key=prefix + "seed", help=fields["seed"].description
    )
    right.slider(
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
    right.slider(
        "Repetition penalty",
        min_value=1.0,
        max_value=2.0,
        step=0.05,
        key=prefix + "repetition_penalty",
        help=fields["repetition_penalty"].description,
    )
    st.text_area("System message", key=prefix + "system", height=68, max_chars=4000, help=fields["system"].description)
    return GenerationSettings(**{name: st.session_state[prefix + name] for name in fields})
