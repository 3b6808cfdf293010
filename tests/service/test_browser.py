"""The web page in a real browser: headless Debian Chromium, driven by Playwright, against the real
service (`rag serve` in a subprocess on 127.0.0.1, the small model), as a person would use it.

Never a browser download: Playwright drives /usr/bin/chromium (`make test` installs it). A missing
browser or Playwright fails these tests; it never skips them. Screenshots are written to
reports/screenshots/.
"""

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rag.settings import PROJECT_ROOT
from tests.conftest import ARTICLE
from tests.servers import Server

pytestmark = pytest.mark.llm

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SCREENSHOTS = PROJECT_ROOT / "reports" / "screenshots"
QUESTION = "Who is Japan's foreign minister quoted in the article?"
UNANSWERABLE = "What is the population of Seoul?"
ANSWER_TIMEOUT_MS = 120_000

# Records every state of the answer element, to see the draft streaming in before the final
# answer replaces it.
WATCH_ANSWER = """
window.__answerStates = [];
document.addEventListener("DOMContentLoaded", () => {
  const answer = document.getElementById("answer");
  new MutationObserver(() => window.__answerStates.push(
    {cls: answer.className, text: answer.textContent})
  ).observe(answer, {childList: true, subtree: true, characterData: true, attributes: true});
});
"""


@pytest.fixture
def server(article_server: Server) -> str:
    return article_server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright is missing ({exc}); `make install` installs the dev extras",
                    pytrace=False)
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing; `make test` installs it (apt-get install -y chromium)",
                    pytrace=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class Page:
    """One browser page on the service, recording what should never happen on it."""

    def __init__(self, browser: Any, url: str, **context: Any) -> None:
        self.url = url
        self.page = browser.new_context(**context).new_page()
        self.page.set_default_timeout(ANSWER_TIMEOUT_MS)
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"script error: {exc}"))
        self.page.on("request", self._check_request)
        self.page.add_init_script(WATCH_ANSWER)

    def _check_request(self, request: Any) -> None:
        if not (request.url.startswith(self.url) or request.url.startswith("data:")):
            self.problems.append(f"request outside the service: {request.url}")

    def ask(self, question: str) -> None:
        self.page.fill("#question", question)
        self.page.press("#question", "Enter")

    def wait_for_answer(self, to: str | None = None) -> dict[str, Any]:
        """Waits for the checked answer (or the refusal) and returns the page's own copy of it;
        with ``to``, for the answer to that question (an earlier one may still be on the page).

        Polled from here: the page's Content-Security-Policy forbids the eval that
        ``wait_for_function`` needs."""
        self.page.wait_for_selector("#answer.final, #refusal:not([hidden])")
        deadline = time.monotonic() + ANSWER_TIMEOUT_MS / 1000
        while True:
            answer: dict[str, Any] | None = self.page.evaluate("window.lastAnswer")
            if answer is not None and (to is None or answer.get("question") == to):
                return answer
            assert time.monotonic() < deadline, f"no answer to {to!r} on the page"
            self.page.wait_for_timeout(100)


def test_the_page_answers_with_highlighted_sources_and_refuses_plainly(
    server: str, browser: Any
) -> None:
    from playwright.sync_api import expect

    tab = Page(browser, server, viewport={"width": 1100, "height": 900})
    page = tab.page
    page.goto(server)
    expect(page.locator("h1")).to_have_text("Grounded answers")
    expect(page.locator("#service")).to_be_hidden()  # ready: no loading banner

    # Enter asks; the draft streams in, then the checked answer replaces it.
    tab.ask(QUESTION)
    answer = tab.wait_for_answer()
    assert answer["refused"] is False, f"the service refused: {answer['answer']}"
    expect(page.locator("#answer")).to_contain_text("Motegi")
    states = page.evaluate("window.__answerStates")
    assert any("draft" in s["cls"] and s["text"] for s in states), "no draft was streamed"
    assert "final" in states[-1]["cls"]
    # Its confidence, said plainly with its number.
    expect(page.locator("#confidence")).to_be_visible()
    expect(page.locator("#confidence")).to_contain_text(f"({answer['confidence']:.2f})")

    # Each citation marker links to its card; the card marks the quote at its exact offsets.
    assert answer["citations"], "an answer without citations"
    for citation in answer["citations"]:
        assert ARTICLE[citation["start"]:citation["end"]] == citation["quote"]
    first = answer["citations"][0]
    page.click(f"#answer a.marker[href='#cite-{first['id']}']")
    card = page.locator(f"#cite-{first['id']}")
    expect(card).to_have_class("card active")
    expect(card).to_be_in_viewport()
    expect(card).to_contain_text(first["source"])
    assert card.locator("mark").text_content() == first["quote"]
    # The whole passage around it, when the cited passage is among the retrieved ones (in the
    # corpus layout the model may cite one that is not: then the quote stands alone).
    passage = next((p for p in answer["passages"] if p["chunk_id"] == first["chunk_id"]), None)
    around = passage["text"] if passage else first["quote"]
    assert card.locator("blockquote").text_content() == around

    # The toggle shows every retrieved passage with its score.
    page.click("#passages-panel summary")
    shown = page.locator("#passages > li")
    expect(shown).to_have_count(len(answer["passages"]))
    expect(shown.first).to_contain_text(f"score {answer['passages'][0]['score']:.4f}")
    page.screenshot(path=str(SCREENSHOTS / "page.png"), full_page=True)

    # An unanswerable question: the refusal is shown plainly, with the service's sentence.
    tab.ask(UNANSWERABLE)
    refused = tab.wait_for_answer()
    assert refused["refused"] is True, f"answered an unanswerable question: {refused['answer']}"
    expect(page.locator("#refusal")).to_contain_text("Not in the documents")
    expect(page.locator("#refusal")).to_contain_text(refused["answer"])
    assert refused["answer"].startswith("The documents do not say")
    expect(page.locator("#citations > li")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS / "refusal.png"), full_page=True)

    # Both questions are remembered in the page.
    expect(page.locator("#recent li")).to_have_text([UNANSWERABLE, QUESTION])
    assert tab.problems == []


def test_a_permalink_asks_again_on_load_at_phone_width(server: str, browser: Any) -> None:
    from playwright.sync_api import expect

    tab = Page(browser, server, viewport={"width": 390, "height": 844}, is_mobile=True,
               has_touch=True)
    page = tab.page
    page.goto(str(httpx.URL(server, params={"q": QUESTION})))
    expect(page.locator("#question")).to_have_value(QUESTION)
    answer = tab.wait_for_answer()
    assert answer["question"] == QUESTION
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # no sideways scrolling
    page.screenshot(path=str(SCREENSHOTS / "page-phone.png"), full_page=True)
    assert tab.problems == []


def test_a_follow_up_question_is_asked_as_it_stands_alone(server: str, browser: Any) -> None:
    from playwright.sync_api import expect

    tab = Page(browser, server, viewport={"width": 1100, "height": 900})
    page = tab.page
    page.goto(server)
    tab.ask("Who is Japan's foreign minister?")
    first = tab.wait_for_answer()
    assert "Motegi" in first["answer"], first["answer"]
    expect(page.locator("#conversation")).to_contain_text("1 earlier question")
    tab.ask("Where did he speak to reporters?")
    answer = tab.wait_for_answer(to="Where did he speak to reporters?")
    assert "Motegi" in (answer["standalone_question"] or ""), answer["standalone_question"]
    expect(page.locator("#searching")).to_contain_text(answer["standalone_question"])
    assert "Nagoya" in answer["answer"], answer["answer"]
    page.screenshot(path=str(SCREENSHOTS / "follow-up.png"), full_page=True)
    page.click("#new-conversation")
    expect(page.locator("#conversation")).to_be_hidden()
    assert tab.problems == []


def test_a_document_uploaded_through_the_page_is_listed_answered_and_removed(
    server: str, browser: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    document = tmp_path / "lighthouse.txt"
    document.write_text(
        "The Varnholm lighthouse stands on a rock north of the harbour. The Varnholm lighthouse "
        "keeper is named Ilse Brandt. She lit the lamp every evening at seven.\n",
        encoding="utf-8",
    )
    question = "Who is the Varnholm lighthouse keeper?"
    tab = Page(browser, server, viewport={"width": 1100, "height": 900})
    page = tab.page
    page.goto(server)
    listed = page.locator("#document-list")
    expect(listed).to_contain_text("gsomia_article.txt")  # listed once the service is ready
    try:
        # Chosen with the file picker: one row per file, then the document in the list.
        page.click("#documents summary")
        page.set_input_files("#document-file", str(document))
        upload = page.locator("#uploads li", has_text="lighthouse.txt")
        expect(upload.locator(".upload-status")).to_have_text("added", timeout=ANSWER_TIMEOUT_MS)
        row = listed.locator("li", has_text="lighthouse.txt")
        expect(row).to_have_count(1, timeout=ANSWER_TIMEOUT_MS)
        expect(row).to_contain_text("chunk")
        page.locator("#documents").screenshot(path=str(SCREENSHOTS / "documents.png"))

        # Answered from it; the citation shows the name it was uploaded under, not its id.
        tab.ask(question)
        answer = tab.wait_for_answer(to=question)
        assert answer["refused"] is False, f"the service refused: {answer['answer']}"
        assert "Ilse Brandt" in answer["answer"], answer["answer"]
        expect(page.locator("#answer")).to_contain_text("Ilse Brandt")
        cited = [c for c in answer["citations"] if c["source"].startswith("lighthouse-")]
        assert cited, f"no citation of the uploaded document: {answer['citations']}"
        expect(page.locator(f"#cite-{cited[0]['id']} .card-head strong")).to_have_text(
            "lighthouse.txt")
        page.screenshot(path=str(SCREENSHOTS / "document-answer.png"), full_page=True)

        # Removed through its button, once the confirmation is accepted.
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Remove lighthouse.txt").click()
        expect(row).to_have_count(0, timeout=ANSWER_TIMEOUT_MS)
        expect(listed).to_contain_text("gsomia_article.txt")
        assert tab.problems == []
    finally:
        # The index is the session's: whatever happened above, it is left holding the article
        # only.
        for entry in httpx.get(f"{server}/v1/documents", timeout=30).json()["documents"]:
            if entry["name"] == "lighthouse.txt":
                httpx.delete(f"{server}/v1/documents/{entry['id']}",
                             timeout=ANSWER_TIMEOUT_MS / 1000)
