"""The assistant page in a real headless browser (Debian's chromium, driven by Playwright) against
``ai-factory serve --assistant``: sign in through the stub, ask, watch the streamed answer and its
citations, give feedback, and find the feedback in the ledger. The page runs under the same
Content-Security-Policy CloudFront sends, so an inline script or style would fail here too."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai_factory.local.assistant import LocalAssistant, start_local_assistant
from ai_factory.local.sqlite_store import SqliteLedger, default_db_path
from aif_gateway.offline_model import OfflineScript

pytestmark = pytest.mark.e2e

CHROMIUM = os.environ.get("AIF_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(os.environ.get("AIF_SCREENSHOT_DIR", "build/screenshots"))
ANSWER = "Request a laptop in the IT service portal under Hardware [1]; bigger ones need approval [1]."


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAssistant]:
    script = OfflineScript.from_data([{"when": {"contains": "laptop"}, "answer": ANSWER}])
    running = start_local_assistant(tmp_path_factory.mktemp("assistant-browser"), port=0, script=script)
    yield running
    running.close()


def test_sign_in_ask_see_streamed_answer_and_citations_then_give_feedback(assistant: LocalAssistant) -> None:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs Debian's chromium package")
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(assistant.url)

            page.get_by_label("Name").fill("Ann Employee")
            page.get_by_label("Group").select_option("employees")
            page.get_by_role("button", name="Sign in").click()
            expect(page.locator("#user-clearance")).to_have_text("internal")
            expect(page.locator("#scope")).to_contain_text("handbook")

            page.get_by_label("Your question").fill("How do I get a new laptop?")
            page.get_by_role("button", name="Ask").click()
            answer = page.locator(".turn.assistant.complete")
            expect(answer.locator(".text")).to_have_text(ANSWER)
            # [1] became a link to the first source, which is listed with its knowledge base.
            expect(answer.locator("a.cite").first).to_have_attribute("href", "#source-1-1")
            citations = answer.locator(".citations li")
            expect(citations.first).to_contain_text("Requesting a laptop")
            expect(citations.first).to_contain_text("handbook (internal)")
            expect(answer.locator(".citations")).not_to_contain_text("Salary bands")

            answer.get_by_role("button", name="Helpful", exact=True).click()
            expect(answer.locator(".thanks")).to_have_text("Thanks, your feedback was recorded.")
            request_id = answer.get_attribute("data-request-id")
            SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT_DIR / "assistant.png"), full_page=True)
        finally:
            browser.close()

    assert errors == []  # no script error, no Content-Security-Policy violation
    ledger = SqliteLedger(default_db_path(assistant.state_dir))
    try:
        feedback = [f for f in ledger.list_feedback(team="assistant") if f.request_id == request_id]
    finally:
        ledger.close()
    assert [(f.score, f.feature, f.tags) for f in feedback] == [(1.0, "assistant", ("assistant",))]
