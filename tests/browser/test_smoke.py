"""Smoke: the console starts on a seeded registry, renders its home page in chromium, and shows no exception."""

from pathlib import Path


def test_console_home_page_renders(console_url: str, browser_page, wait_for_streamlit, tmp_path: Path):
    browser_page.goto(console_url)
    wait_for_streamlit(browser_page)

    assert "RMN LoRA Console" in browser_page.title()
    heading = browser_page.locator("h1").first
    heading.wait_for()
    assert "RMN LoRA Console" in heading.inner_text()
    assert browser_page.locator('[data-testid="stException"]').count() == 0

    shot = tmp_path / "home.png"
    browser_page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0
    print(f"home page screenshot: {shot}")
