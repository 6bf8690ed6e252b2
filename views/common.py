"""Widgets every page shares: pagination, errors as plain text, form state, config-driven widgets, formatting."""

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from types import NoneType, UnionType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union, get_args, get_origin

import streamlit as st
from pydantic import BaseModel

from services import MAX_NAME_LENGTH, ConsoleError, CorruptFile
from services import human_size as human_size  # the pages take it from here: one size rule with the services
from services.training import JobConfig, training_stack_ready, warm_training_stack

if TYPE_CHECKING:  # imported where used: the playground service pulls in the inference engine, which Home need not load
    from streamlit.navigation.page import StreamlitPage

    from services.datasets import DatasetRecord
    from services.playground import GenerationSettings

T = TypeVar("T")

BAND_COLORS = {"Excellent": "green", "Good": "blue", "Fair": "orange", "Poor": "red"}
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$&])")


def plain(text: object) -> str:
    """User text (names, descriptions, file names) made inert inside st.markdown / caption / alerts: every
    Markdown and HTML character is escaped, so `![x](http://host/p.png)` shows as typed and loads nothing."""
    return _MARKDOWN.sub(r"\\\1", str(text)).replace("\n", " ")


def latency(milliseconds: float) -> str:
    """A latency with its unit, at most five characters of figures: seven cards share a row, and a CPU run's
    "135,512" milliseconds showed as "135,5…"."""
    if milliseconds < 1000:
        return f"{milliseconds:.0f} ms"
    seconds = milliseconds / 1000
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s" if seconds < 1000 else f"{seconds:,.0f} s"


def show_answer(text: str) -> None:
    """A model's answer exactly as generated, line breaks kept, in a box with a copy button: never Markdown, where
    an answer holding `![x](http://host/p.png)` would make the browser fetch that address."""
    st.code(text or "(empty answer)", language=None, wrap_lines=True)


def stream_answer(chunks: Iterable[str]) -> str:
    """Draw an answer as its tokens arrive (the same plain box as `show_answer`); returns the whole text."""
    slot, text = st.empty(), ""
    for chunk in chunks:
        text += chunk
        with slot:
            show_answer(text)
    if not text:
        with slot:
            show_answer(text)
    return text


def show_broken(broken: Sequence[CorruptFile]) -> None:
    """Name each unreadable registry file with its path and the way to repair or remove it; the rest of the page
    goes on."""
    for error in broken:
        st.warning(plain(str(error)), icon=":material/broken_image:")


PAGE_BOX_WIDTH = 160  # pixels: "Page (of 999)", a 3-digit page and its - and + (shown only above 120 px)


def paginate(items: Sequence[T], key: str, page_size: int | None = None) -> Sequence[T]:
    """Show page controls above a table and return the current page's slice; the page survives reruns.

    The page box is on the left: at the right edge it sat where the table's hover toolbar is drawn, which then
    covered its - and +. It has a width of its own, wide enough for its - and + (Streamlit hides them in a box of
    7.5 rem or less): a fifth of a narrow column left only the number. "Showing ..." goes beside it, or under it
    where the column is too narrow for both. The page size is the Settings page's "Rows per page" unless a caller
    needs its own."""
    if page_size is None:
        from services.settings import get_settings

        page_size = get_settings().page_size
    total = len(items)
    pages = max(1, -(-total // page_size))
    page = min(st.session_state.get(key, 1), pages)
    start = (page - 1) * page_size
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="medium")
    row.number_input(
        f"Page (of {pages})", min_value=1, max_value=pages, value=page, step=1, key=key, width=PAGE_BOX_WIDTH
    )
    row.caption(f"Showing {start + 1 if total else 0}–{min(start + page_size, total)} of {total:,}")
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


PAGE_ICON = "page_icon"
PAGE_OPENED = "page_opened"  # (url path of the page the session shows, time.monotonic() when it was opened)


def run_page(page: "StreamlitPage") -> None:
    """Run the page the navigation chose, handing on its icon for `page_title`: app.py's st.Page icons are the one
    list of them (Streamlit tells a page script nothing about its navigation entry). It notes when the session
    opened the page, for `page_open_for`."""
    st.session_state[PAGE_ICON] = page.icon
    if st.session_state.get(PAGE_OPENED, ("",))[0] != page.url_path:
        st.session_state[PAGE_OPENED] = (page.url_path, time.monotonic())
    page.run()


def page_open_for() -> float:
    """Seconds since this session opened the page it shows (infinite when a test runs a page's file alone, without
    the navigation)."""
    opened = st.session_state.get(PAGE_OPENED)
    return math.inf if opened is None else time.monotonic() - opened[1]


STAY_BEFORE_WARMING_S = 3.0


def warm_training_stack_on_a_stay() -> None:
    """Start importing the training stack (services' `warm_training_stack`) once the user has stayed on a page that
    submits jobs for a few seconds: its import holds the server's GIL for seconds, and started on the first draw it
    ran while the browser still drew this page, and through the next pages of a user who only passed through
    (Settings or Models opened right after Training Jobs rendered about 0.4 s later). A user who fills the form
    stays longer than this; one whose first Start Training comes sooner waits for the import, as before it."""
    if training_stack_ready():
        return
    if page_open_for() >= STAY_BEFORE_WARMING_S:
        warm_training_stack()
        return

    @st.fragment(run_every=STAY_BEFORE_WARMING_S)
    def on_a_stay() -> None:  # its timer runs only while the page stays open in this session
        if page_open_for() >= STAY_BEFORE_WARMING_S:
            warm_training_stack()

    on_a_stay()


def page_title(text: str) -> None:
    """Every page's title, with its navigation icon (none when a test runs the page's file alone)."""
    icon = st.session_state.get(PAGE_ICON)
    st.title(f"{icon} {text}" if icon else text)


def done(message: str, rerun: Literal["app", "fragment"] | None = None) -> None:
    """The confirmation every action that changes something ends with, on every page: a toast naming what changed.
    With `rerun`, the page (or the fragment) is redrawn at once so no table lags behind the change, and the toast
    shows after the rerun (app.py and the fragments that act call `show_flash`)."""
    if rerun is None:
        _toast(message)
        return
    st.session_state.setdefault("flash_messages", []).append(message)
    st.rerun(scope=rerun)


def show_flash() -> None:
    """Toasts for the actions of the previous run (called by app.py and by fragments that act)."""
    for message in st.session_state.pop("flash_messages", []):
        _toast(message)


def _toast(message: str) -> None:
    # "long" (10 s): a message that names what changed takes longer than the default 4 s to read.
    st.toast(plain(message), icon=":material/check_circle:", duration="long")


def load_demo_button(key: str) -> None:
    """The way out of an empty registry on every page that has nothing to show yet: the demo's raw sources,
    mappings and datasets (what `make run` seeds), then the page again with them."""
    from services.demo import seed_demo
    from views.session import may

    if may(seed_demo) and st.button("Load the demo data", key=key, icon=":material/dataset:"):
        with st.spinner("Generating the demo sources, mappings and datasets…"):
            names = attempt(seed_demo, f"retry_{key}")
        if names is not None:
            done(f"Loaded the demo data: {len(names)} datasets ({', '.join(names)}).", rerun="app")


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


def keep_undrawn(form: str, fields: Iterable[str]) -> None:
    """Fields of `form` not drawn in this run (a closed expander's) keep what their widget held when it was last
    drawn: a value typed just before the expander closed arrives with that run, and the widget is gone after it."""
    values = st.session_state[f"{form}.values"]
    for name in fields:
        key = form_key(form, name)
        if key in st.session_state:
            values[name] = st.session_state[key]


def form_key(form: str, field: str, follows: str | None = None) -> str:
    """The key of `field`'s widget in `form`; `follows` names what the field is set from (the adapter type from the
    training dataset), so another one redraws the widget from the form's values, as another record does."""
    record = st.session_state[f"{form}.record"]
    return record_key(form, record if follows is None else f"{record}@{follows}", field)


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


KEEP: Any = object()  # `model_widget(value=KEEP)`: the value is already in the widget key's session state


def model_widget(
    model: type[BaseModel],
    name: str,
    label: str,
    *,
    key: str,
    value: Any = KEEP,
    container: Any = st,
    widget: Literal["input", "slider", "area"] = "input",
    **options: Any,
) -> Any:
    """The widget of one pydantic field: bounds (ge / gt / le / lt), Literal choices, help and whether it may be
    empty come from the field, so no page offers what the model refuses (H2O LLM Studio builds its forms the same
    way). `options` adds presentation (step, format, placeholder, format_func, disabled, a narrower min_value, help
    with more to say, or `choices` for a field whose choices depend on the data)."""
    field = model.model_fields[name]
    kind, choices, optional = field_shape(model, name)
    common = {"key": key, "help": field.description}
    if "choices" in options or choices:
        choices = list(options.pop("choices", choices))
        if value is not KEEP:
            value = value if value in choices else choices[0] if choices else None
            common["index"] = choices.index(value) if value in choices else None
        return container.selectbox(label, choices, **{**common, **options})
    if kind is bool:
        if value is not KEEP:
            common["value"] = bool(value)
        return container.toggle(label, **{**common, **options})
    if kind in (int, float):
        low, high = _bounds(field, kind)
        common |= {"min_value": kind(low) if low is not None else None}
        common |= {"max_value": kind(high) if high is not None else None}
        if value is not KEEP:
            if value is None and not optional:
                value = field.get_default(call_default_factory=True)
            common["value"] = kind(value) if value is not None else None
        draw = container.slider if widget == "slider" else container.number_input
        return draw(label, **{**common, **options})
    if value is not KEEP:
        common["value"] = "" if value is None else str(value)
    if kind is str:
        common["max_chars"] = next((rule.max_length for rule in field.metadata if hasattr(rule, "max_length")), None)
    return (container.text_area if widget == "area" else container.text_input)(label, **{**common, **options})


def form_widget(form: str, name: str, draw: Callable[..., T], follows: str | None = None) -> T:
    """Draw field `name` of `form` with `draw(key=..., value=...)` from the form's values and write it back."""
    values = st.session_state[f"{form}.values"]
    result = draw(key=form_key(form, name, follows), value=values.get(name))
    values[name] = result
    return result


# How each JobConfig field is presented (label, step, format, placeholder): one place for the Training Jobs form and
# the Train Model wizard; bounds, choices and help come from JobConfig itself.
JOB_WIDGETS: dict[str, tuple[str, dict[str, Any]]] = {
    "adapter_type": ("Adapter type", {}),
    # its example names the dataset and the type: `adapter_name_for`
    "adapter_name": ("Adapter name", {"max_chars": MAX_NAME_LENGTH}),
    "base_model": ("Base model", {}),
    "objective": ("Training type", {"format_func": str.upper}),
    "train_dataset": ("Training dataset", {}),
    "eval_dataset": ("Evaluation dataset", {}),
    "evaluate_base_first": ("Evaluate the base model first", {}),
    "quantization": (
        "Quantization",
        {"format_func": {"none": "none (full-precision LoRA)", "8bit": "8-bit", "4bit": "4-bit (QLoRA, NF4)"}.get},
    ),
    "epochs": ("Epochs", {"step": 0.5, "placeholder": "empty: use max steps"}),
    "lora_r": ("LoRA rank (r)", {"step": 1}),
    "lora_alpha": ("LoRA alpha", {"step": 1.0}),
    "lora_dropout": ("LoRA dropout", {"step": 0.05}),
    "batch_size": ("Batch size", {"step": 1}),
    "gradient_accumulation": ("Gradient accumulation", {"step": 1}),
    "learning_rate": ("Learning rate", {"step": 1e-5, "format": "%.2e"}),
    "scheduler": ("Scheduler", {}),
    "warmup_ratio": ("Warmup ratio", {"step": 0.01}),
    "max_seq_length": ("Max sequence length", {"step": 64}),
    "max_steps": ("Max steps", {"step": 10, "placeholder": "empty: use epochs"}),
    "seed": ("Seed", {"step": 1}),
    "packing": ("Sequence packing", {}),
    "group_by_length": ("Group by length", {}),
    "precision": ("Precision", {}),
    "dpo_beta": ("DPO beta", {"step": 0.05}),
    "save_steps": ("Checkpoint every N steps", {"step": 10}),
    "gradient_checkpointing": ("Gradient checkpointing", {}),
    "torch_compile": (
        "Compile (torch.compile)",
        {"format_func": {"auto": "auto (long fp32 CPU jobs)", "on": "on", "off": "off"}.get},
    ),
    # Short choices, the rule in the help: in a third of Advanced settings (1400 px) "auto (long CPU SFT jobs, 100M+
    # models)" was cut.
    "data_parallel": (
        "Processes (data parallel)",
        {"format_func": {"auto": "auto (large SFT jobs)", "on": "one per core", "off": "one"}.get},
    ),
    "loraplus_lr_ratio": ("LoRA+ ratio (B / A learning rate)", {"step": 1.0, "placeholder": "empty: off"}),
    "target_modules": ("Target modules (comma separated, or all-linear)", {}),
}


def job_widget(name: str, *, key: str, value: Any = KEEP, container: Any = st, **options: Any) -> Any:
    """A JobConfig field's widget as both job forms show it (`options`: the data-dependent parts, e.g. choices)."""
    label, presentation = JOB_WIDGETS[name]
    return model_widget(JobConfig, name, label, key=key, value=value, container=container, **presentation, **options)


def adapter_type_mismatch(dataset: "DatasetRecord | None", adapter_type: str | None, container: Any = st) -> None:
    """Say so beside the adapter type when it is not what the training dataset was made to train: both job forms set
    the type from the dataset when one is chosen, so this shows only a type the user chose against it (Federation
    routes prompts to an adapter by its type)."""
    if dataset is not None and dataset.purpose not in (None, adapter_type):
        container.warning(
            f"{plain(dataset.name)} was made to train a {dataset.purpose} adapter; this one will be a {adapter_type} "
            "adapter.",
            icon=":material/warning:",
        )


def generation_metrics(tokens: int, latency_ms: float, load_ms: float, adapters_used: Sequence[str]) -> None:
    """What one generation cost, the same on the Federation and Playground pages: load time apart from latency."""
    cols = st.columns(4)
    cols[0].metric("Tokens", tokens)
    cols[1].metric("Latency (ms)", f"{latency_ms:,.0f}", help="Generation time, model loading excluded.")
    cols[2].metric(
        "First load (ms)",
        f"{load_ms:,.0f}",
        help="Loading the base model and adapters into memory; near 0 once they are loaded.",
    )
    cols[3].metric("Adapters used", len(adapters_used), help=", ".join(adapters_used) or "none")


def put_generation_settings(prefix: str, settings: "GenerationSettings") -> None:
    """Put decoding settings into the widgets of `generation_settings(prefix)` (e.g. from a history entry)."""
    for name, value in settings.model_dump().items():
        st.session_state[prefix + name] = value


def generation_settings(prefix: str) -> "GenerationSettings":
    """The decoding settings as widgets (bounds and help from GenerationSettings); one form for every page."""
    from services.playground import GenerationSettings

    if prefix + "max_new_tokens" not in st.session_state:
        put_generation_settings(prefix, GenerationSettings())

    def widget(name: str, label: str, container: Any, **options: Any) -> None:
        model_widget(GenerationSettings, name, label, key=prefix + name, container=container, **options)

    # Two columns: three sliders side by side clip their labels in the Playground's narrow form column.
    left, right = st.columns(2)
    widget("max_new_tokens", "Max new tokens", left, step=16)
    widget("seed", "Seed", left, step=1)
    widget("temperature", "Temperature", right, widget="slider", step=0.05)
    widget("top_p", "Top-p", right, widget="slider", step=0.05, min_value=0.05)  # the model's bound is "above 0"
    widget("repetition_penalty", "Repetition penalty", right, widget="slider", step=0.05)
    widget("system", "System message", st, widget="area", height=68)
    return GenerationSettings(**{name: st.session_state[prefix + name] for name in GenerationSettings.model_fields})


def parameter_count(parameters: int) -> str:
    """A model's parameter count in a few characters, the one way every page writes it: 135M, 1.7B, 57K."""
    if parameters >= 1e9:
        return f"{parameters / 1e9:.1f}B"
    if parameters >= 1e6:
        return f"{parameters / 1e6:.0f}M"
    return f"{parameters / 1e3:.0f}K"


MISSING = "—"


def show_table(data: Any = None, **options: Any) -> Any:
    """Every table of the console: `st.dataframe` with one look for a missing cell, an em dash (Streamlit's default,
    a faded "None", reads like a value in a numeric column that only some rows fill)."""
    return st.dataframe(data, placeholder=MISSING, **options)


def values_table(values: dict, name: str = "Setting") -> None:
    """One row per name, numbers short, nested values as compact text and nothing as an em dash (not "null"):
    lineage, results and settings read as a table instead of a collapsed JSON tree."""
    shown = [
        MISSING if v is None else v if isinstance(v, str) else f"{v:.4g}" if isinstance(v, float) else json.dumps(v)
        for v in values.values()
    ]
    show_table({name: list(values), "Value": shown}, hide_index=True, width="stretch")
