"""The inbox in a real browser, logged in through a real identity-aware proxy.

Debian's chromium through Playwright; oauth2-proxy in front of the inbox with mockoidc as the OpenID
provider (``tests/browser.py``); behind them the simulator as Offload, the ingress, a worker and the topics.
Pages update themselves through server-sent events (through the proxy): no test reloads a page to see a
change. axe-core checks the list and the case page. The screenshots the docs show are taken here: into
``INBOX_SCREENSHOTS`` (``make docs-screenshots`` points it at ``docs/assets/inbox``), else a temporary folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from pydantic import SecretStr

from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.schemas.case_requests import CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from tests.browser import IdentityProxy, axe_violations, describe_violations
from tests.inbox_support import Stack, stack

WORKER_TOKEN = "inbox-browser-worker-token-0123456789"
LIVE_S = 30_000  # ms: how long a page may take to show what happened (it usually takes well under a second)


@dataclass
class Site:
    running: Stack
    proxy: IdentityProxy
    shots: Path

    def person(self, browser: Browser, email: str) -> BrowserContext:
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        self.proxy.login(context, email, name=email.split("@")[0])
        return context

    def open(self, context: BrowserContext, path: str = "/") -> Page:
        page = context.new_page()
        page.goto(f"{self.proxy.url}{path}")
        return page

    def create_case(self, reference: str, scenario: str = "input_then_complete", team: str = "ap") -> str:
        body = case_body(scenario=scenario, clientReferenceId=reference, metadata={"team": team})
        with CaseRequestSubmitter(self.running.settings) as requests:
            requests.publish(body, request_id=reference)
            created = requests.wait_for_outcome(reference, timeout_s=60)
        assert created.outcome is CaseRequestOutcomeKind.CREATED and created.caseId, created
        return created.caseId

    def question_of(self, case_id: str) -> dict[str, str]:
        truth = self.running.sim.wait_for_truth(
            case_id, lambda t: t["status"] == "INPUT_NEEDED", timeout_s=60
        )
        question: dict[str, str] = truth["inputRequest"]
        return question


@pytest.fixture(scope="module")
def site(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """One stack and one proxy for the module's tests (each test uses its own cases)."""
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("inbox"),
        offload_worker_api_tokens=SecretStr(WORKER_TOKEN),
    )
    ensure_topics(settings)
    workdir = tmp_path_factory.mktemp("inbox-browser")
    shots = Path(os.environ.get("INBOX_SCREENSHOTS") or workdir / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    try:
        # Steps of a second: slow enough to see each state of a case, fast enough for a test.
        with (
            stack(settings, workdir, step_ms=1000) as running,
            IdentityProxy(running.inbox.url, workdir / "proxy") as proxy,
        ):
            yield Site(running, proxy, shots)
    finally:
        delete_topics_with_prefix(settings)


def test_a_question_appears_within_seconds_and_a_person_answers_it(site: Site, browser: Browser) -> None:
    alice = site.person(browser, "alice@example.com")
    listing = site.open(alice)
    expect(listing.get_by_text("Signed in as")).to_contain_text("alice@example.com")

    case_id = site.create_case("PO-2291")
    question = site.question_of(case_id)
    # The open list shows it without a reload (server-sent events through the proxy).
    row = listing.get_by_role("row").filter(has_text="PO-2291")
    expect(row).to_contain_text(question["question"], timeout=LIVE_S)

    row.get_by_role("link", name="PO-2291").click()
    expect(listing.get_by_role("heading", name="Case PO-2291")).to_be_visible()
    listing.get_by_label("Your answer to").fill("Yes, a signed PDF is fine.")
    listing.get_by_role("button", name="Send answer").click()
    outcome = listing.locator("#outcome [data-status]")
    expect(outcome).to_have_attribute("data-status", "accepted", timeout=LIVE_S)
    # ... then the case moves on, on the same page.
    expect(listing.locator('[data-field="now-status"]')).to_have_text("COMPLETED", timeout=LIVE_S)
    alice.close()


def test_a_changed_question_ends_conflict_and_the_typed_text_is_kept(site: Site, browser: Browser) -> None:
    case_id = site.create_case("PO-3310", scenario="input_twice_then_complete")
    first = site.question_of(case_id)
    alice = site.person(browser, "alice@example.com")
    page = site.open(alice, f"/cases/{case_id}")
    expect(page.locator(f'[data-question-id="{first["id"]}"]')).to_be_visible(timeout=LIVE_S)
    page.get_by_label("Your answer to").fill("Ship it on Monday.")

    # Meanwhile the question is answered at Offload directly, and Offload asks another.
    assert site.running.sim.answer(case_id, first["id"], "Agreed by phone.").status_code == 202
    second = site.running.sim.wait_for_truth(
        case_id,
        lambda t: t["status"] == "INPUT_NEEDED" and t["inputRequest"]["id"] != first["id"],
        timeout_s=60,
    )["inputRequest"]
    expect(page.locator(f'[data-question-id="{second["id"]}"]')).to_be_visible(timeout=LIVE_S)
    # The live update never replaced the form being typed in.
    expect(page.get_by_label("Your answer to")).to_have_value("Ship it on Monday.")

    page.get_by_role("button", name="Send answer").click()
    expect(page.locator("#outcome [data-status]")).to_have_attribute(
        "data-status", "conflict", timeout=LIVE_S
    )
    expect(page.locator("#outcome")).to_contain_text(second["question"])
    form = page.get_by_label("Your answer to")
    expect(form).to_have_value("Ship it on Monday.", timeout=LIVE_S)
    expect(page.locator("form.answer input[name=inputRequestId]")).to_have_value(second["id"])
    alice.close()


def test_two_people_the_second_sees_who_answered_and_what(site: Site, browser: Browser) -> None:
    case_id = site.create_case("PO-4471")
    question = site.question_of(case_id)
    alice, bob = site.person(browser, "alice@example.com"), site.person(browser, "bob@example.com")
    alice_page, bob_page = site.open(alice, f"/cases/{case_id}"), site.open(bob, f"/cases/{case_id}")
    for page in (alice_page, bob_page):
        expect(page.locator(f'[data-question-id="{question["id"]}"]')).to_be_visible(timeout=LIVE_S)

    alice_page.get_by_label("Your answer to").fill("Invoice 4711 is approved.")
    alice_page.get_by_role("button", name="Send answer").click()
    answered = bob_page.locator("[data-answered-by]")
    expect(answered).to_have_attribute("data-answered-by", "alice@example.com", timeout=LIVE_S)
    # What she answered stays on his page (under "Now" while the question waits, then in the history).
    expect(bob_page.locator("#live")).to_contain_text("Invoice 4711 is approved.")
    expect(bob_page.get_by_label("Your answer to")).to_have_count(0)
    alice.close()
    bob.close()


def tab_to(page: Page, attribute: str, value: str, what: str, presses: int = 40) -> None:
    """Press Tab until the focused element's ``attribute`` is ``value``; fail if it never is."""
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => document.activeElement && document.activeElement.{attribute}") == value:
            return
    pytest.fail(f"{what} cannot be reached with Tab")


def test_answering_with_the_keyboard_alone(site: Site, browser: Browser) -> None:
    case_id = site.create_case("PO-5002")
    site.question_of(case_id)
    carol = site.person(browser, "carol@example.com")
    page = site.open(carol, "/")
    link = page.get_by_role("link", name="PO-5002")
    expect(link).to_be_visible(timeout=LIVE_S)
    tab_to(page, "textContent", "PO-5002", "the case's link")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Case PO-5002")).to_be_visible()
    tab_to(page, "id", "answer-text", "the answer field")
    page.keyboard.type("Approved by keyboard.")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.textContent") == "Send answer"
    page.keyboard.press("Enter")
    expect(page.locator("#outcome [data-status]")).to_have_attribute(
        "data-status", "accepted", timeout=LIVE_S
    )
    carol.close()


def test_no_serious_accessibility_violations_and_the_docs_screenshots(site: Site, browser: Browser) -> None:
    for reference, team in (("PO-7001", "ap"), ("PO-7002", "legal"), ("PO-7003", "buying")):
        site.question_of(site.create_case(reference, team=team))
    answered = site.create_case("PO-7004", scenario="input_twice_then_complete", team="ap")
    first = site.question_of(answered)
    dave = site.person(browser, "dave@example.com")
    page = site.open(dave, f"/cases/{answered}")
    expect(page.locator(f'[data-question-id="{first["id"]}"]')).to_be_visible(timeout=LIVE_S)
    page.get_by_label("Your answer to").fill("Yes, in two shipments.")
    page.get_by_role("button", name="Send answer").click()
    expect(page.locator("#outcome [data-status]")).to_have_attribute(
        "data-status", "accepted", timeout=LIVE_S
    )
    page.goto(f"{site.proxy.url}/cases/{answered}")
    expect(page.locator("form.answer")).to_be_visible(timeout=LIVE_S)  # the second question

    violations = axe_violations(page)
    assert not violations, describe_violations(violations)
    page.screenshot(path=site.shots / "case.png", full_page=True)

    page.goto(f"{site.proxy.url}/")
    expect(page.get_by_role("row").filter(has_text="PO-7003")).to_be_visible(timeout=LIVE_S)
    violations = axe_violations(page)
    assert not violations, describe_violations(violations)
    page.screenshot(path=site.shots / "list.png", full_page=True)
    dave.close()
