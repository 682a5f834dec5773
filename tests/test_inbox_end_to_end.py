"""The inbox with everything real behind it: the simulator as Offload, the ingress, a worker, the topics.

A person (through a trusted proxy's headers) sees a question within seconds of its webhook, answers it,
sees ``accepted`` and the case move on; a second person sees it answered, by whom and what; a question
that changed meanwhile ends ``conflict`` and the form comes back with the same words for the new question.
"""

from __future__ import annotations

import html
from pathlib import Path

import httpx

from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.schemas.case_requests import CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from tests.inbox_support import Stack, answer_form, running_inbox, stack


def create_case(running: Stack, scenario: str, reference: str) -> str:
    with CaseRequestSubmitter(running.settings) as requests:
        requests.publish(
            case_body(scenario=scenario, clientReferenceId=reference, metadata={"team": "ap"}),
            request_id=reference,
        )
        created = requests.wait_for_outcome(reference, timeout_s=60)
    assert created.outcome is CaseRequestOutcomeKind.CREATED and created.caseId, created
    return created.caseId


def test_a_person_answers_and_sees_it_accepted_then_the_case_move(topics: Settings, tmp_path: Path) -> None:
    with stack(topics, tmp_path) as running:
        case_id = create_case(running, "input_then_complete", "po-1")
        truth = running.sim.wait_for_truth(case_id, lambda t: t["status"] == "INPUT_NEEDED", timeout_s=60)
        question = truth["inputRequest"]["question"]
        alice = running.inbox.client("alice@example.com")
        listing = alice.wait_page("/", lambda page: html.escape(question) in page, timeout_s=30)
        assert "po-1" in listing and "team: ap" in listing

        response = alice.answer(case_id, "Yes, a signed PDF is fine.")
        assert response.status_code == 303, response.text
        outcome_url = response.headers["location"]
        page = alice.wait_page(outcome_url, lambda p: 'data-status="accepted"' in p)
        assert "Yes, a signed PDF is fine." in page
        alice.wait_page(outcome_url, lambda p: 'data-field="now-status">COMPLETED' in p)
        # Offload took exactly this text, once, from the inbox's answer.
        taken = [
            entry["body"] for entry in running.sim.truth(case_id)["inputs"] if entry["httpStatus"] == 202
        ]
        assert [body["providedContext"] for body in taken] == ["Yes, a signed PDF is fine."], taken


def test_a_question_that_changed_meanwhile_ends_conflict_and_keeps_the_text(
    topics: Settings, tmp_path: Path
) -> None:
    with stack(topics, tmp_path) as running:
        case_id = create_case(running, "input_twice_then_complete", "po-2")
        first = running.sim.wait_for_truth(case_id, lambda t: t["status"] == "INPUT_NEEDED", timeout_s=60)
        first_id = first["inputRequest"]["id"]
        alice = running.inbox.client("alice@example.com")
        alice.wait_page(f"/cases/{case_id}", lambda p: f'data-question-id="{first_id}"' in p)
        stale_form = answer_form(alice.case_page(case_id))
        assert stale_form is not None and stale_form.fields["inputRequestId"] == first_id

        # Someone answers at Offload directly; Offload goes on and asks a second question.
        assert running.sim.answer(case_id, first_id, "Agreed by phone.").status_code == 202
        second = running.sim.wait_for_truth(
            case_id,
            lambda t: (
                t["inputRequest"] and t["inputRequest"]["id"] != first_id and t["status"] == "INPUT_NEEDED"
            ),
            timeout_s=60,
        )["inputRequest"]
        alice.wait_page(f"/cases/{case_id}", lambda p: f'data-question-id="{second["id"]}"' in p)

        response = alice.answer(case_id, "Yes, the PDF is fine.", form=stale_form)
        assert response.status_code == 303, response.text
        page = alice.wait_page(response.headers["location"], lambda p: 'data-status="conflict"' in p)
        assert html.escape(second["question"]) in page
        # The form is back, for the question asked now, with the same words in it.
        form = answer_form(page)
        assert form is not None, page
        assert form.fields["inputRequestId"] == second["id"]
        assert form.fields["text"] == "Yes, the PDF is fine."


def test_two_people_one_question_the_second_sees_who_answered_and_what(
    topics: Settings, tmp_path: Path
) -> None:
    with stack(topics, tmp_path) as running:
        case_id = create_case(running, "input_then_complete", "po-3")
        question_id = running.sim.wait_for_truth(
            case_id, lambda t: t["status"] == "INPUT_NEEDED", timeout_s=60
        )["inputRequest"]["id"]
        alice = running.inbox.client("alice@example.com")
        bob = running.inbox.client("bob@example.com")
        alice.wait_page(f"/cases/{case_id}", lambda p: f'data-question-id="{question_id}"' in p)
        bobs_form = answer_form(bob.case_page(case_id))
        assert bobs_form is not None

        assert alice.answer(case_id, "Invoice 4711 is approved.").status_code == 303
        # Bob's page now says who answered and what, and offers no form.
        page = bob.wait_page(f"/cases/{case_id}", lambda p: 'data-answered-by="alice@example.com"' in p)
        assert "Invoice 4711 is approved." in page and answer_form(page) is None
        # Bob sends the form he had open: refused, nothing published, his words shown back to him.
        late = bob.answer(case_id, "Approved, go ahead.", form=bobs_form)
        assert late.status_code == 409, late.text
        assert "alice@example.com" in late.text and "Approved, go ahead." in late.text
        alice.wait_page(f"/cases/{case_id}", lambda p: 'data-field="now-status">COMPLETED' in p)
        bodies = [entry["body"]["providedContext"] for entry in running.sim.truth(case_id)["inputs"]]
        assert bodies == ["Invoice 4711 is approved."], bodies


def test_an_answer_offload_cannot_take_yet_shows_retrying_then_accepted(
    topics: Settings, tmp_path: Path
) -> None:
    with stack(topics, tmp_path) as running:
        case_id = create_case(running, "input_then_complete", "po-4")
        running.sim.wait_for_truth(case_id, lambda t: t["status"] == "INPUT_NEEDED", timeout_s=60)
        alice = running.inbox.client("alice@example.com")
        alice.wait_page(f"/cases/{case_id}", lambda p: "data-question-id=" in p)
        running.sim.set_faults(
            endpoints={"provide_input": {"rate": 1.0, "error": "429-retry-after", "retry_after_s": 2}}
        )
        response = alice.answer(case_id, "Yes.")
        assert response.status_code == 303
        page = alice.wait_page(response.headers["location"], lambda p: 'data-status="retrying"' in p)
        assert "Attempt 1 failed; the next is due at" in page and "429" in page
        running.sim.set_faults(endpoints={})
        alice.wait_page(response.headers["location"], lambda p: 'data-status="accepted"' in p)


def test_identity_comes_only_from_a_trusted_proxy_and_never_from_x_forwarded_for(
    topics: Settings, tmp_path: Path
) -> None:
    # The proxy is trusted at 10.0.0.0/8 only; this test connects from 127.0.0.1.
    with running_inbox(topics, tmp_path, env={"OFFLOAD_INBOX_TRUSTED_PROXIES": "10.0.0.0/8"}) as inbox:
        spoofed = httpx.get(
            f"{inbox.url}/",
            headers={"X-Forwarded-Email": "mallory@example.com", "X-Forwarded-For": "10.0.0.5"},
        )
        assert spoofed.status_code == 401
        assert spoofed.json()["error"]["code"] == "UNAUTHORIZED"
        for path in ("/healthz", "/ready", "/metrics"):
            assert httpx.get(f"{inbox.url}{path}").status_code == 200, path
    with running_inbox(topics, tmp_path) as inbox:  # the default: a proxy on this host
        anonymous = httpx.get(f"{inbox.url}/")
        assert anonymous.status_code == 401
        assert "X-Forwarded-Email" in anonymous.json()["error"]["message"]
        signed_in = httpx.get(f"{inbox.url}/", headers={"X-Forwarded-Email": "alice@example.com"})
        assert signed_in.status_code == 200 and "alice@example.com" in signed_in.text
        assert "script-src 'self'" in signed_in.headers["content-security-policy"]
