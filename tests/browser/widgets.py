"""Widget helpers shared by the browser tests, so each widget is driven one way (the way that proved reliable)."""

from __future__ import annotations

import re
from collections.abc import Callable

from playwright.sync_api import Locator, Page, expect


def choose(
    page: Page,
    wait: Callable[[Page], None],
    label: str,
    option: str | re.Pattern[str],
    *,
    scope: Page | Locator | None = None,
    typed: str | None = None,
) -> None:
    """Pick an option in the selectbox labelled `label` (in `scope`, default the whole page) and check it was taken.

    `option` is the option's text, whole or followed by " (details)" or " · details", or a pattern its text
    matches. The text (or `typed`) is typed to filter the list before the click: a click on a selectbox at the
    window's bottom edge, already showing the option, once left its list closed, and a long list may not show the
    option unfiltered."""
    combo = (scope or page).get_by_role("combobox", name=label, exact=True)
    name = option if isinstance(option, re.Pattern) else re.compile(rf"^{re.escape(option)}( \(.*| · .*)?$")
    combo.scroll_into_view_if_needed()
    combo.click()
    text = typed if typed is not None else option if isinstance(option, str) else None
    if text is not None:
        combo.fill(text)
    page.get_by_role("option", name=name).first.click()
    wait(page)
    expect(combo).to_have_value(name)
