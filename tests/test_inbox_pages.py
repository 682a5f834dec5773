"""The inbox's pages in process (no Kafka): who may see them, the forms' CSRF tokens, and escaping.

The app is built without its lifespan, so its feed does not run: the tests put records into its store
themselves, and its producer is never connected (an answer that cannot be published says so).
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import SecretStr

from offload_bridge.inbox.app import create_app
from offload_bridge.inbox.identity import CsrfTokens, Person, parse_networks, person_of
from offload_bridge.inbox.store import AskedQuestion, InboxStore, OutcomeItem, StateItem, SubmittedAnswer
from offload_bridge.schemas.answers import AnswerOutcome
from offload_bridge.schemas.case_state import CaseState, InputRequest
from offload_bridge.settings import Settings
from tests.test_inbox_store import NOW, waiting

EVIL = '<script>alert("q")</script><img src=x onerror=alert(1)>'
PROXY = ("127.0.0.1", 40000)


@pytest.fixture
def app_and_store() -> tuple[TestClient, InboxStore]:
    settings = Settings(
        kafka_bootstrap_servers="127.0.0.1:9",
        offload_inbox_csrf_secret=SecretStr("a-long-enough-random-secret-0123"),
        offload_worker_urls="http://127.0.0.1:9",
    )
    app = create_app(settings)
    store: InboxStore = app.state.inbox.store
    return TestClient(app, client=PROXY, follow_redirects=False), store


def as_person(email: str) -> dict[str, str]:
    return {"X-Forwarded-Email": email}


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found, f"no {name} in the page"
    return found.group(1)


def test_a_person_comes_only_from_a_trusted_proxy() -> None:
    networks = parse_networks("10.0.0.0/8, 192.168.1.7")
    assert person_of("10.2.3.4", {"x-forwarded-email": "a@example.com"}, networks) == Person(
        "a@example.com", None
    )
    assert person_of("::ffff:192.168.1.7", {"x-forwarded-user": "bob"}, networks).name == "bob"
    for peer, headers in (
        ("127.0.0.1", {"x-forwarded-email": "a@example.com"}),  # not a trusted proxy
        ("10.2.3.4", {}),  # a trusted proxy that passed nobody
        ("10.2.3.4", {"x-forwarded-email": "a@example.com\r\nX-Evil: 1"}),
        (None, {"x-forwarded-email": "a@example.com"}),
    ):
        with pytest.raises(Exception, match="proxy"):
            person_of(peer, headers, networks)


def test_every_page_needs_a_person_but_the_probes(app_and_store: tuple[TestClient, InboxStore]) -> None:
    client, _ = app_and_store
    for path in ("/", "/cases/c1", "/events", "/static/inbox.css", "/nowhere"):
        refused = client.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["ok"] is False and refused.json()["error"]["code"] == "UNAUTHORIZED"
    assert client.post("/cases/c1/answers", data={"text": "x"}).status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/ready").status_code == 503  # the feed is not running here
    outsider = TestClient(client.app, client=("203.0.113.9", 5000))
    assert outsider.get("/", headers=as_person("mallory@example.com")).status_code == 401


def test_pages_carry_a_strict_content_security_policy(app_and_store: tuple[TestClient, InboxStore]) -> None:
    client, _ = app_and_store
    for response in (
        client.get("/", headers=as_person("a@example.com")),
        client.get("/healthz"),
        client.get("/"),
    ):
        policy = response.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy and "unsafe" not in policy
        assert response.headers["x-content-type-options"] == "nosniff"


def test_nothing_a_case_holds_becomes_markup(app_and_store: tuple[TestClient, InboxStore]) -> None:
    client, store = app_and_store
    store.apply(
        [
            waiting("c1", NOW - 1000, question=EVIL, clientReferenceId=EVIL, metadata={EVIL: EVIL}),
            AskedQuestion("c1", "ir-c1", EVIL, NOW - 1000),
        ]
    )
    for path in ("/", "/cases/c1", "/?fragment=list", "/cases/c1?fragment=live", "/cases/c1?fragment=form"):
        page = client.get(path, headers=as_person("a@example.com")).text
        assert "<script>" not in page and "<img src=x" not in page, path
        assert "&lt;script&gt;" in page, path


def test_a_form_needs_its_persons_fresh_csrf_token(app_and_store: tuple[TestClient, InboxStore]) -> None:
    client, store = app_and_store
    store.apply([waiting("c1", NOW - 1000)])
    page = client.get("/cases/c1", headers=as_person("alice@example.com")).text
    fields = {name: hidden(page, name) for name in ("csrf", "inputRequestId", "answerId")}
    text = "Yes, go ahead."

    missing = client.post(
        "/cases/c1/answers", data={**fields, "csrf": "", "text": text}, headers=as_person("alice@example.com")
    )
    assert missing.status_code == 403 and missing.json()["error"]["code"] == "CSRF_REFUSED"
    # Alice's token is worthless to Mallory.
    stolen = client.post(
        "/cases/c1/answers", data={**fields, "text": text}, headers=as_person("mallory@example.com")
    )
    assert stolen.status_code == 403
    # An old form comes back with the words kept and a fresh token.
    tokens = CsrfTokens(b"a-long-enough-random-secret-0123", max_age_s=60)
    old = tokens.issue(Person("alice@example.com", None), now=0)
    expired = client.post(
        "/cases/c1/answers",
        data={**fields, "csrf": old, "text": text},
        headers=as_person("alice@example.com"),
    )
    assert expired.status_code == 400 and "too old" in expired.text and text in expired.text
    assert hidden(expired.text, "csrf") != old


def test_an_empty_answer_is_refused_and_an_unpublished_one_keeps_its_words(
    app_and_store: tuple[TestClient, InboxStore],
) -> None:
    client, store = app_and_store
    store.apply([waiting("c1", NOW - 1000)])
    alice = as_person("alice@example.com")
    page = client.get("/cases/c1", headers=alice).text
    fields = {name: hidden(page, name) for name in ("csrf", "inputRequestId", "answerId")}
    blank = client.post("/cases/c1/answers", data={**fields, "text": "   "}, headers=alice)
    assert blank.status_code == 400 and "write an answer" in blank.text
    # Kafka is unreachable here: the answer is not sent, and the page says so with the text still in the form.
    unsent = client.post("/cases/c1/answers", data={**fields, "text": "Keep these words."}, headers=alice)
    assert unsent.status_code == 503 and "was not sent" in unsent.text and "Keep these words." in unsent.text
    assert store.answer(fields["answerId"]) is None


def test_an_unknown_case_and_bad_input_answer_4xx(app_and_store: tuple[TestClient, InboxStore]) -> None:
    client, _ = app_and_store
    alice = as_person("alice@example.com")
    assert client.get("/cases/nope", headers=alice).status_code == 404
    assert client.get("/?page_number=abc", headers=alice).status_code == 400
    assert client.get("/?page_number=abc", headers=alice).json()["error"]["code"] == "INVALID_REQUEST"
    assert client.put("/", headers=alice).status_code == 405


def test_an_answered_question_offers_no_form(app_and_store: tuple[TestClient, InboxStore]) -> None:
    client, store = app_and_store
    state = CaseState(caseId="c2", status="RUNNING", firstSeenAt=NOW, updatedAt=NOW,
                      inputRequest=InputRequest(id="ir", question="Q?", status="RESOLVED"))  # fmt: skip
    store.apply([StateItem("c2", state)])
    page = client.get("/cases/c2", headers=as_person("alice@example.com")).text
    assert 'data-field="now-status">RUNNING' in page and '<form class="answer"' not in page


@hypothesis_settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case_id=st.one_of(st.just("c1"), st.text(min_size=1, max_size=40)).filter(
        lambda c: "/" not in c and c not in (".", "..")
    ),
    fields=st.dictionaries(
        st.sampled_from(["text", "inputRequestId", "answerId", "csrf", "other"]),
        st.text(max_size=60),
        max_size=5,
    ),
    person=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30),
    real_token=st.booleans(),
    real_answer_id=st.booleans(),
)
def test_no_form_a_person_can_send_gets_a_server_error(
    app_and_store: tuple[TestClient, InboxStore],
    case_id: str,
    fields: dict[str, str],
    person: str,
    real_token: bool,
    real_answer_id: bool,
) -> None:
    """Whatever a form holds (or a hand-made request), the answer is a clear 4xx, never a 500; only an
    answer that would be published meets the unreachable Kafka here (503, saying so, the text kept)."""
    client, store = app_and_store
    store.apply([waiting("c1", NOW - 1000)])
    if real_token:
        tokens = CsrfTokens(b"a-long-enough-random-secret-0123", max_age_s=3600)
        fields["csrf"] = tokens.issue(Person(person.strip() or None, None))
    if real_answer_id:
        fields["answerId"] = "ans_" + "0" * 32
    path = "/cases/" + quote(case_id, safe="") + "/answers"
    response = client.post(path, data=fields, headers={"X-Forwarded-Email": person})
    if response.status_code == 503:
        assert "was not sent" in response.text and fields.get("text", "").strip()
        return
    assert response.status_code in (303, 400, 401, 403, 404, 409), (response.status_code, response.text[:300])


@pytest.mark.parametrize(
    ("outcome", "fields", "shown"),
    [
        (
            "retrying",
            {"httpStatus": 503, "attempt": 2, "nextAttemptAt": NOW + 90_000},
            "Attempt 2 failed; the next is due at",
        ),
        (
            "accepted",
            {"httpStatus": 202, "attempt": 1},
            "Accepted by Offload. The case goes on: it is now INPUT_NEEDED",
        ),
        (
            "duplicate",
            {"httpStatus": 409, "errorCode": "INPUT_REQUEST_NOT_PENDING"},
            "Offload already had this answer",
        ),
        ("conflict", {"httpStatus": 409, "errorCode": "INPUT_REQUEST_MISMATCH"}, "the question changed"),
        (
            "rejected",
            {"httpStatus": 400, "errorCode": "INVALID_REQUEST", "message": "too long"},
            "Refused by Offload (INVALID_REQUEST): too long",
        ),
        ("dead_lettered", {"message": "5 attempts failed"}, "set aside for an operator: 5 attempts failed"),
    ],
)
def test_each_outcome_of_an_answer_is_told_in_words(
    app_and_store: tuple[TestClient, InboxStore], outcome: str, fields: dict[str, object], shown: str
) -> None:
    client, store = app_and_store
    answer_id = "ans_" + "1" * 32
    store.apply(
        [
            waiting("c1", NOW - 1000),
            SubmittedAnswer("c1", answer_id, "ir-c1", "My words.", "alice@example.com", NOW - 500),
            OutcomeItem(
                AnswerOutcome.model_validate(
                    {
                        "answerId": answer_id,
                        "caseId": "c1",
                        "inputRequestId": "ir-c1",
                        "outcome": outcome,
                        **fields,
                    }
                )
            ),
        ]
    )
    page = client.get(f"/cases/c1?answer={answer_id}", headers=as_person("alice@example.com")).text
    assert f'data-status="{outcome}"' in page and shown in page, page
    # After a refusal the form is back with the same words; while the answer stands, no form.
    refused = outcome in ("conflict", "rejected", "dead_lettered")
    assert ('<form class="answer"' in page) is refused
    if refused:
        assert ">My words.</textarea>" in page
