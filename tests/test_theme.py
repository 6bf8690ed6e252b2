"""Each theme the Settings page offers has a whole palette, readable by the WCAG AA rule for body text."""

from typing import get_args

import pytest

from registry.settings import Settings
from views.theme import PALETTES

COLOURS = ("primaryColor", "backgroundColor", "secondaryBackgroundColor", "textColor")


def luminance(hex_colour: str) -> float:
    """WCAG 2 relative luminance of '#rrggbb'."""
    channels = [int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    red, green, blue = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue


def contrast(one: str, other: str) -> float:
    light, dark = sorted((luminance(one), luminance(other)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def test_every_theme_choice_has_a_whole_palette():
    assert set(PALETTES) == set(get_args(Settings.model_fields["theme"].annotation))
    for name, palette in PALETTES.items():
        assert palette["base"] == name
        assert set(COLOURS) <= set(palette), f"{name} leaves a colour to whatever the config file says"


@pytest.mark.parametrize("name", sorted(PALETTES))
def test_text_is_readable_on_both_backgrounds(name):
    palette = PALETTES[name]
    for background in ("backgroundColor", "secondaryBackgroundColor"):
        assert contrast(palette["textColor"], palette[background]) >= 4.5, (name, background)
    # A primary button's white label.
    assert contrast("#ffffff", palette["primaryColor"]) >= 3, name
