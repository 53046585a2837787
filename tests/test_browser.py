"""The web page in a real headless Chromium (Debian's), driven by Playwright: type a query, see the intent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import tiny_args
from intentlab.cli import main
from live_server import live_server

playwright = pytest.importorskip("playwright.sync_api")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> str:
    from intentlab.serving.app import create_app

    run = tmp_path_factory.mktemp("browser") / "bank"
    assert (
        main(
            [
                "train",
                "--method",
                "full",
                "--out",
                str(run),
                *tiny_args(tiny_model, toy_data, 3),
            ]
        )
        == 0
    )
    with live_server(create_app([str(run)])) as (url, _):
        yield url


def test_type_a_query_and_see_the_intent(server: str, tmp_path: Path) -> None:
    import httpx

    expected = httpx.post(f"{server}/v1/predict", json={"texts": ["where is my new card"], "top_k": 5}).json()
    top = expected["predictions"][0]["intents"][0]["intent"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page()
        page.goto(server)
        page.wait_for_selector("#adapter option", state="attached")
        assert page.locator("#adapter").input_value() == "bank"
        assert "intents" in page.locator("#meta").inner_text()
        page.fill("#query", "where is my new card")
        page.click("#go")
        page.wait_for_selector("#results .row")
        rows = page.locator("#results .row")
        assert rows.count() == 4  # top 5 of a 4-intent adapter
        assert rows.first.locator(".intent").inner_text() == top
        page.screenshot(path=str(tmp_path / "page.png"))
        page.fill("#query", "")
        page.click("#go")
        assert "Type a query first" in page.locator("#error").inner_text()
        browser.close()
