"""Data Browser: raw retailer sources with filters, a harmonized preview, and export of a filter."""

from typing import Any

import pandas as pd
import streamlit as st

from services import mappings
from views.common import attempt, done, page_title, paginate, plain, show_error, show_table
from views.session import may

FAIL_CSS = "background-color: #ef4444; color: #ffffff"
PAGE_SIZE = 50
RAW_ONLY = "— raw rows only —"
MIME = {"csv": "text/csv", "jsonl": "application/x-ndjson"}

page_title("Data Browser")
st.caption("Raw retailer data as it arrives, before harmonization. Filter, preview through a mapping, export.")


def generate_panel() -> None:
    st.info("No raw sources yet — run `make demo` or generate the sample sources here.")
    if may(mappings.generate_sample_sources, why="Generating sample sources") and st.button(
        "Generate sample sources", key="generate_sources", type="primary"
    ):
        sources = attempt(mappings.generate_sample_sources, "retry_generate_sources")
        if sources is not None:
            done(f"Generated {len(sources)} sample raw sources: {', '.join(s.id for s in sources)}.", rerun="app")


def filters(source: mappings.SourceInfo, choices: mappings.FilterChoices) -> dict[str, Any]:
    """Filter widgets for the columns this source has; returns filter_source keyword arguments."""
    picked: dict[str, Any] = {}
    left, middle, right = st.columns(3)
    if choices.date_min and choices.date_max:
        dates = left.date_input(
            f"Date range ({source.date_column})",
            value=(choices.date_min, choices.date_max),
            min_value=choices.date_min,
            max_value=choices.date_max,
            key=f"browser_dates_{source.id}",
        )
        if isinstance(dates, tuple) and dates:
            picked["date_from"], picked["date_to"] = dates[0], dates[-1]
    if source.retailer_column:
        picked["retailers"] = middle.multiselect(
            "Retailer", choices.retailers, key=f"browser_retailers_{source.id}", placeholder="All retailers"
        )
    elif source.retailer:
        middle.text_input("Retailer", value=source.retailer, disabled=True, key=f"browser_retailer_{source.id}")
    if source.type_column:
        picked["types"] = right.multiselect(
            f"Type ({source.type_column})", choices.types, key=f"browser_types_{source.id}", placeholder="All types"
        )
    return picked


def harmonized_preview(source: mappings.SourceInfo, page_rows: pd.DataFrame) -> None:
    readers = [s.retailer for s in mappings.list_mappings() if s.source_id == source.id and not s.problem]
    if not readers:
        st.caption("No mapping reads this source yet, so there is nothing to harmonize it through.")
        return
    choice = st.selectbox("Harmonize through mapping", [RAW_ONLY, *readers], key=f"browser_mapping_{source.id}")
    if choice == RAW_ONLY:
        return
    mapping = mappings.get_mapping(choice)
    result = mappings.harmonize(mapping, page_rows)
    if result.failing_cells:
        st.warning(
            plain(f"{result.failing_cells} cells on this page fail under {mapping.retailer} v{mapping.version}.")
        )
    else:
        st.success(plain(f"Every row on this page harmonizes under {mapping.retailer} v{mapping.version}."))
    show_table(
        result.display_frame().style.apply(lambda _: result.failed.map(lambda bad: FAIL_CSS if bad else ""), axis=None),
        hide_index=True,
    )


def main() -> None:
    available = [source for source in mappings.list_sources() if source.generated]
    if not available:
        generate_panel()
        return
    by_id = {source.id: source for source in available}
    source = by_id[
        st.selectbox(
            "Raw source",
            list(by_id),
            format_func=lambda i: f"{by_id[i].title} · {by_id[i].rows:,} rows",
            key="browser_source",
        )
    ]
    st.caption(plain(source.description))
    frame = mappings.load_source(source.id)
    filtered = mappings.filter_source(frame, source, **filters(source, mappings.filter_choices(frame, source)))
    st.markdown(f"**{len(filtered):,}** of {len(frame):,} rows match.")
    page_rows = paginate(filtered, key="browser_page", page_size=PAGE_SIZE)
    show_table(page_rows, hide_index=True, key="browser_table")
    harmonized_preview(source, page_rows)
    fmt = st.radio(
        "Export format", ["csv", "jsonl"], format_func=str.upper, horizontal=True, key="browser_export_format"
    )
    st.download_button(
        f"Export {fmt.upper()}",
        data=lambda: mappings.export_frame(filtered, fmt),  # built on click: every row, too slow for every run
        file_name=f"{source.id}_filtered.{fmt}",
        mime=MIME[fmt],
        key="browser_export",
        disabled=filtered.empty,
        help="Downloads every row matching the filters, not only this page.",
    )


try:
    main()
except Exception as error:  # noqa: BLE001 — the page shows a readable error and a retry, never a traceback
    show_error(error, "browser_retry")
