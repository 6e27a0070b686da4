"""A real browser (Debian's chromium, driven by Playwright) uploads a small PDF, asks a question and sees the
answer and a page citation; clicking the citation shows that page. Screenshots go to artifacts/.

Marked `browser`: excluded from the default run, run by `.ci/run` in its own step (`pytest -m browser`).
Without chromium or playwright it skips, unless LONGVLM_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from longvlm.datasets.synthetic import write_synthetic_pdf
from longvlm.demo.server import free_port, launch_demo

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("LONGVLM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
TIMEOUT_MS = 240_000  # loaded CI machines: ingest + 32 generated tokens on 2 shared cores


def _require_browser():
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install playwright)")
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        missing.append(f"chromium at {CHROMIUM} (apt-get install chromium)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("LONGVLM_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def app_url():
    demo = launch_demo("tiny", host="127.0.0.1", port=free_port(), block=False, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


def test_upload_pdf_ask_and_follow_a_page_citation(app_url, tmp_path):
    _require_browser()
    from playwright.sync_api import expect, sync_playwright

    pdf = write_synthetic_pdf(tmp_path / "three_pages.pdf", 3)
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(app_url)
            expect(page.locator("#lv-model")).to_contain_text("random weights", timeout=TIMEOUT_MS)

            page.set_input_files("#lv-upload input[type=file]", pdf)
            expect(page.locator("#lv-status")).to_contain_text("ready", timeout=TIMEOUT_MS)
            expect(page.locator("#lv-status")).to_contain_text("3 pages")

            page.fill("#lv-question textarea", "What is the secret code of page 2?")
            page.click("#lv-ask")
            answer = page.locator("#lv-chat .message-row").last
            expect(answer).to_contain_text("route: vlm", timeout=TIMEOUT_MS)
            expect(page.locator("#lv-chat")).to_contain_text("What is the secret code of page 2?")
            citation = page.locator('#lv-cites [data-jump="p:2"]')
            expect(citation).to_be_visible()
            expect(citation).to_have_text("p.2")
            page.screenshot(path=str(ARTIFACTS / "demo_browser_answer.png"), full_page=True)

            citation.click()
            expect(page.locator("#lv-page")).to_contain_text("Page 2", timeout=TIMEOUT_MS)
            expect(page.locator("#lv-page img")).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "demo_browser_page_view.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, f"JavaScript errors in the page: {errors}"
    assert (ARTIFACTS / "demo_browser_answer.png").stat().st_size > 10_000
