"""Helpers for the answer-forwarding tests: open questions on the simulator, read outcomes from Kafka."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.kafka.reading import read_topic
from offload_bridge.schemas.answers import AnswerOutcome
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, WebhookReceiver
from offload_bridge.topics import ANSWER_OUTCOMES, topic_name
from tests.streams_support import Worker, publish_webhook

OUTCOME_TIMEOUT_S = 60.0


def webhook_body(receiver: WebhookReceiver, case_id: str, event_type: str) -> bytes:
    """The raw body of the first webhook of this type for this case, as the ingress would have kept it."""
    receiver.wait_for_event(case_id, event_type)
    for request in receiver.requests:
        event = request.json()
        if event.get("event_type") == event_type and event["data"].get("caseId") == case_id:
            return request.body
    raise AssertionError(f"no {event_type} webhook for {case_id}")


def open_question(
    sim: RunningSimulator,
    receiver: WebhookReceiver,
    settings: Settings,
    worker: Worker,
    step_ms: int = 50,
    metadata: dict[str, Any] | None = None,
) -> tuple[str, str]:
    """A simulator case waiting for input, its question folded into the worker's state as the ingress
    would have delivered it. Returns (caseId, inputRequestId)."""
    case_id = sim.create_case(
        receiver.url, scenario="input_then_complete", step_ms=step_ms, metadata=metadata
    )
    publish_webhook(settings, webhook_body(receiver, case_id, "case.input_needed"))
    state = worker.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
    return case_id, state["inputRequest"]["id"]


def case_in_partition(
    sim: RunningSimulator,
    receiver: WebhookReceiver,
    partitions: int,
    wanted: Callable[[int], bool],
    **case: Any,
) -> str:
    """Create simulator cases until one's caseId lands in a partition ``wanted`` accepts."""
    for _ in range(60):
        case_id = sim.create_case(receiver.url, **case)
        if wanted(partition_for(case_id, partitions)):
            return case_id
    raise AssertionError("no case id in a wanted partition after 60 cases")


def read_outcomes(settings: Settings, answer_id: str | None = None) -> list[AnswerOutcome]:
    """Every outcome on answer-outcomes so far (optionally one answer's), in each partition's order."""
    found: list[AnswerOutcome] = []
    for record in read_topic(settings, topic_name(ANSWER_OUTCOMES, settings), timeout_s=30):
        outcome = AnswerOutcome.model_validate_json(record.value)
        if answer_id is None or outcome.answerId == answer_id:
            found.append(outcome)
    return found


def wait_outcomes(
    settings: Settings, answer_id: str, timeout_s: float = OUTCOME_TIMEOUT_S, worker: Worker | None = None
) -> list[AnswerOutcome]:
    """The answer's outcomes once a terminal one arrived: the ``retrying`` ones, then the terminal one."""
    deadline = time.monotonic() + timeout_s
    outcomes: list[AnswerOutcome] = []
    while time.monotonic() < deadline:
        outcomes = read_outcomes(settings, answer_id)
        if any(outcome.outcome.terminal for outcome in outcomes):
            return outcomes
        time.sleep(0.2)
    tail = worker.service.log_tail(30) if worker is not None else ""
    raise AssertionError(f"no terminal outcome for {answer_id} within {timeout_s}s: {outcomes}\n{tail}")


def wait_terminal_outcomes(
    settings: Settings, answer_id: str, count: int, timeout_s: float = OUTCOME_TIMEOUT_S
) -> list[AnswerOutcome]:
    """The answer's terminal outcomes once there are ``count`` (one per delivery of the answer)."""
    deadline = time.monotonic() + timeout_s
    outcomes: list[AnswerOutcome] = []
    while time.monotonic() < deadline:
        outcomes = [outcome for outcome in read_outcomes(settings, answer_id) if outcome.outcome.terminal]
        if len(outcomes) >= count:
            return outcomes
        time.sleep(0.2)
    raise AssertionError(f"fewer than {count} terminal outcomes for {answer_id}: {outcomes}")


def wait_inputs(
    sim: RunningSimulator, case_id: str, count: int, timeout_s: float = 30.0
) -> list[dict[str, Any]]:
    """The simulator's record of the inputs the case received, once there are ``count`` of them."""
    truth = sim.wait_for_truth(case_id, lambda truth: len(truth["inputs"]) >= count, timeout_s=timeout_s)
    inputs: list[dict[str, Any]] = truth["inputs"]
    return inputs
