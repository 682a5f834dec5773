"""The inbox with everything real behind it: the simulator as Offload, the ingress, a worker, the topics.

A person (through a trusted proxy's headers) sees a question within seconds of its webhook, answers it,
sees ``accepted`` and the case move on; a second person sees it answered, by whom and what; a question
that changed meanwhile ends ``conflict`` and the form comes back with the same words for the new question.
"""

from __future__ import annotations

import html
from pathlib import Path

from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.schemas.case_requests import CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from tests.inbox_support import Stack, answer_form, stack


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
        taken = [entry["body"] for entry in running.sim.truth(case_id)["inputs"] if entry["httpStatus"] == 202]
        assert [body["providedContext"] for body in taken] == ["Yes, a signed PDF is fine."], taken
