"""The web page in a real headless Chromium (Debian's), driven by Playwright: type a query, see the intent."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, tiny_args
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
            args=CHROMIUM_ARGS,
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


def test_out_of_scope_queries_show_none_of_the_intents(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: str, oos_data: str
) -> None:
    import httpx

    from intentlab.serving.app import create_app

    run = tmp_path_factory.mktemp("browser-oos") / "bank"
    assert main(["train", "--method", "full", "--out", str(run), *tiny_args(tiny_model, oos_data, 2)]) == 0
    with live_server(create_app([str(run)], admin_token="t")) as (url, _):
        scorer = httpx.get(f"{url}/v1/adapters").json()["adapters"][0]["out_of_scope"]["scorer"]
        reject_all = 1.0 if scorer in ("msp", "knn") else 1e9  # every score is below it
        r = httpx.put(
            f"{url}/v1/adapters/bank/threshold",
            json={"threshold": reject_all},
            headers={"Authorization": "Bearer t"},
        )
        assert r.status_code == 200, r.text
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=CHROMIUM_ARGS,
            )
            page = browser.new_page()
            page.goto(url)
            page.wait_for_selector("#adapter option", state="attached")
            page.fill("#query", "what is the weather in paris tomorrow")
            page.click("#go")
            page.wait_for_selector("#none", state="visible")
            assert page.locator("#none b").inner_text() == "None of the 4 intents."
            assert "below the threshold" in page.locator("#none span").inner_text()
            assert page.locator("#results.candidates .row").count() >= 1  # the closest candidates beneath
            browser.close()


def test_api_docs_render_offline(server: str) -> None:
    """/docs is Swagger UI from local files: it renders with no network at all."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{server}/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=20000)
        assert page.locator(".opblock-summary-path", has_text="/v1/predict").count() >= 1
        assert all(u.startswith(server) for u in requested), [
            u for u in requested if not u.startswith(server)
        ]
        browser.close()
