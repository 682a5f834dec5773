"""Answer forwarding end to end: the worker as a real process, the simulator as a real process over real
HTTP, the real broker. One worker and one simulator serve the whole module (faults are reset per test);
retries use a 1 s backoff base, so a test can switch a fault off between two attempts."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import HttpUrl, SecretStr

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.dlq import list_dead_letters
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import DlqHeader, Outcome
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import (
    DEFAULT_API_KEY,
    RunningSimulator,
    WebhookReceiver,
    simulator_process,
)
from offload_bridge.testing import consume, produce, unique_prefix
from offload_bridge.topics import ANSWERS, CASE_STATE
from tests.answers_support import (
    case_in_partition,
    open_question,
    read_outcomes,
    wait_inputs,
    wait_outcomes,
    wait_terminal_outcomes,
    webhook_body,
)
from tests.kafka_java import assert_placed_like_kafka
from tests.streams_support import Worker, event_body, publish_webhook

MAX_ATTEMPTS = 3
NOT_WAITING_RETRIES = 2


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    log_path = tmp_path_factory.mktemp("sim") / "simulator.log"
    with simulator_process("--step-ms", "50", log_path=log_path) as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def answers_settings(kafka_broker: str, sim: RunningSimulator) -> Settings:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("answers"),
        offload_base_url=HttpUrl(sim.base_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        offload_answer_max_attempts=MAX_ATTEMPTS,
        offload_answer_not_waiting_retries=NOT_WAITING_RETRIES,
        offload_retry_base_s=1.0,
        offload_retry_max_s=4.0,
        offload_http_timeout_s=30.0,
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def worker(answers_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    running = Worker(answers_settings, tmp_path_factory.mktemp("worker"))
    try:
        running.start()
        yield running
    finally:
        running.service.stop()


@pytest.fixture
def s(answers_settings: Settings, sim: RunningSimulator, worker: Worker) -> Settings:
    """The module's settings, with the simulator's faults off and the worker running."""
    sim.set_faults(endpoints={}, latency_ms=0)
    return answers_settings


def publish(settings: Settings, case_id: str, input_request_id: str, text: str) -> str:
    with AnswerSubmitter(settings) as submitter:
        return submitter.publish(case_id, input_request_id, text)


def test_accepted_is_recorded_and_a_resent_answer_is_a_duplicate(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker)
    answer_id = publish(s, case_id, question, "Yes, a signed PDF is fine.")

    [accepted] = wait_outcomes(s, answer_id, worker=worker)
    assert accepted.outcome is Outcome.ACCEPTED
    assert (accepted.caseId, accepted.inputRequestId) == (case_id, question)
    assert (accepted.attempt, accepted.httpStatus, accepted.errorCode) == (1, 202, None)
    assert accepted.caseStatus == "INPUT_NEEDED"
    assert accepted.currentInputRequestId == question
    [received] = sim.truth(case_id)["inputs"]
    assert received["httpStatus"] == 202
    assert received["apiKey"] == DEFAULT_API_KEY
    assert received["body"] == {"inputRequestId": question, "providedContext": "Yes, a signed PDF is fine."}

    state = worker.wait_case(case_id, lambda state: question in state["answers"])
    assert state["answers"][question]["answerId"] == answer_id
    assert state["answers"][question]["outcome"] == "accepted"
    assert state["inputRequest"]["status"] == "RESOLVED", "Offload resolves the question at once"
    published = [json.loads(r.value or b"") for r in consume(s, CASE_STATE, 100, timeout_s=5)]
    assert any(p["caseId"] == case_id and question in p["answers"] for p in published)

    # The same answer again: our state shows it accepted, so Offload is not called a second time.
    assert publish(s, case_id, question, "Yes, a signed PDF is fine.") == answer_id
    outcomes = wait_terminal_outcomes(s, answer_id, 2)
    assert outcomes[1].outcome is Outcome.DUPLICATE
    assert outcomes[1].attempt == 0
    assert len(sim.truth(case_id)["inputs"]) == 1


def test_input_request_mismatch_is_a_conflict_naming_the_current_question(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker)
    answer_id = publish(s, case_id, "an-older-question", "Yes.")

    [conflict] = wait_outcomes(s, answer_id, worker=worker)
    assert conflict.outcome is Outcome.CONFLICT
    assert (conflict.httpStatus, conflict.errorCode) == (409, "INPUT_REQUEST_MISMATCH")
    assert conflict.currentInputRequestId == question
    assert conflict.caseStatus == "INPUT_NEEDED"
    assert conflict.attempt == 1


def test_input_request_not_pending_is_a_conflict_when_someone_else_answered(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    # A long step keeps the case INPUT_NEEDED (its question RESOLVED) for a while after an answer.
    case_id, question = open_question(sim, receiver, s, worker, step_ms=3_000)
    assert sim.answer(case_id, question, "Answered in the Offload dashboard.").status_code == 202
    answer_id = publish(s, case_id, question, "Our own answer.")

    [conflict] = wait_outcomes(s, answer_id, worker=worker)
    assert conflict.outcome is Outcome.CONFLICT
    assert (conflict.httpStatus, conflict.errorCode) == (409, "INPUT_REQUEST_NOT_PENDING")
    assert conflict.currentInputRequestId == question
    assert conflict.caseStatus == "INPUT_NEEDED"


def test_a_resent_answer_offload_already_took_is_a_duplicate_not_a_conflict(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker, step_ms=3_000)
    # Offload takes the answer but the response is lost on the way back: we must send it again.
    sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "500", "when": "after"}})
    answer_id = publish(s, case_id, question, "Yes, Monday is fine.")
    [first] = wait_inputs(sim, case_id, 1)
    sim.set_faults(endpoints={})
    assert first["httpStatus"] == 202 and first["fault"] == "500 after processing"

    outcomes = wait_outcomes(s, answer_id, worker=worker)
    assert [o.outcome for o in outcomes] == [Outcome.RETRYING, Outcome.DUPLICATE]
    duplicate = outcomes[-1]
    assert (duplicate.httpStatus, duplicate.errorCode) == (409, "INPUT_REQUEST_NOT_PENDING")
    assert duplicate.attempt == 2
    assert [i["httpStatus"] for i in sim.truth(case_id)["inputs"]] == [202, 409]


def test_case_not_waiting_is_a_conflict_when_the_case_is_terminal(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id = sim.create_case(receiver.url, scenario="complete", step_ms=50)
    sim.wait_for_truth(case_id, lambda truth: truth["status"] == "COMPLETED")
    # Our state still shows a question pending (the completion webhook has not reached us yet).
    publish_webhook(s, event_body(case_id, "case.input_needed", 1_000, "INPUT_NEEDED",
                                  inputRequest="Q?", inputRequestId="ir-late"))  # fmt: skip
    worker.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
    answer_id = publish(s, case_id, "ir-late", "Yes.")

    [conflict] = wait_outcomes(s, answer_id, worker=worker)
    assert conflict.outcome is Outcome.CONFLICT
    assert (conflict.httpStatus, conflict.errorCode) == (409, "CASE_NOT_WAITING_FOR_INPUT")
    assert conflict.caseStatus == "COMPLETED", "the case's status comes from Offload, not our stale state"
    assert conflict.attempt == 1


def test_case_not_waiting_while_our_state_shows_the_question_is_retried_then_a_conflict(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id = sim.create_case(receiver.url, scenario="complete", step_ms=600_000)  # stays CREATED
    publish_webhook(s, event_body(case_id, "case.input_needed", 1_000, "INPUT_NEEDED",
                                  inputRequest="Q?", inputRequestId="ir-1"))  # fmt: skip
    worker.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
    answer_id = publish(s, case_id, "ir-1", "Yes.")

    outcomes = wait_outcomes(s, answer_id, worker=worker)
    assert [o.outcome for o in outcomes] == [Outcome.RETRYING] * NOT_WAITING_RETRIES + [Outcome.CONFLICT]
    assert [o.attempt for o in outcomes] == list(range(1, NOT_WAITING_RETRIES + 2))
    assert all(o.errorCode == "CASE_NOT_WAITING_FOR_INPUT" for o in outcomes)
    assert outcomes[-1].caseStatus == "CREATED"
    assert len(sim.truth(case_id)["inputs"]) == NOT_WAITING_RETRIES + 1


def test_503_twice_then_accepted(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker)
    sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "503"}})
    answer_id = publish(s, case_id, question, "Yes.")
    wait_inputs(sim, case_id, 2)
    sim.set_faults(endpoints={})

    outcomes = wait_outcomes(s, answer_id, worker=worker)
    assert [o.outcome for o in outcomes] == [Outcome.RETRYING, Outcome.RETRYING, Outcome.ACCEPTED]
    assert [(o.attempt, o.httpStatus) for o in outcomes] == [(1, 503), (2, 503), (3, 202)]
    assert outcomes[0].errorCode == "SERVICE_UNAVAILABLE"
    inputs = sim.truth(case_id)["inputs"]
    assert [i["fault"] for i in inputs] == ["503 instead of processing"] * 2 + [None]
    # Exponential backoff: about 0.5-1 s, then 1-2 s (base 1 s, equal jitter).
    gaps = [(later["at"] - earlier["at"]) / 1000 for earlier, later in itertools.pairwise(inputs)]
    assert gaps[0] >= 0.45 and gaps[1] >= 0.95, gaps


def test_always_500_is_dead_lettered_after_max_attempts_and_redrives(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker)
    sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "500-bare"}})
    answer_id = publish(s, case_id, question, "Yes.")

    outcomes = wait_outcomes(s, answer_id, worker=worker)
    assert [o.outcome for o in outcomes] == [Outcome.RETRYING] * (MAX_ATTEMPTS - 1) + [Outcome.DEAD_LETTERED]
    assert outcomes[-1].attempt == MAX_ATTEMPTS
    assert outcomes[-1].httpStatus == 500
    assert len(sim.truth(case_id)["inputs"]) == MAX_ATTEMPTS

    [letter] = [letter for letter in list_dead_letters(s) if letter.answer_id == answer_id]
    assert letter.key == case_id.encode()
    assert letter.outcome == "dead_lettered"
    assert letter.headers[DlqHeader.HTTP_STATUS] == "500"
    assert letter.headers[DlqHeader.ATTEMPT] == str(MAX_ATTEMPTS)
    assert letter.headers[DlqHeader.ORIGINAL_TOPIC] == f"{s.offload_topic_prefix}answers.retry"
    assert f"gave up after {MAX_ATTEMPTS} attempt(s)" in letter.error
    assert json.loads(letter.value or b"")["answerId"] == answer_id

    # Offload is back: a redrive delivers the answer.
    sim.set_faults(endpoints={})
    redriven = worker.run_cli("dlq", "redrive", "--answer-id", answer_id)
    assert redriven.returncode == 0, redriven.stderr
    [_, accepted] = wait_terminal_outcomes(s, answer_id, 2)
    assert accepted.outcome is Outcome.ACCEPTED
    assert accepted.attempt == 1
    # The retries, the dead letter and the redriven answer sit where Kafka's Java producer puts them.
    assert_placed_like_kafka(s, expect=("answers", "answers.retry", "answers.dlq", "answer-outcomes"))


def test_poison_messages_are_rejected_to_the_dlq_and_later_answers_go_through(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker)
    key = case_id.encode()
    blank = json.dumps({"caseId": case_id, "inputRequestId": question, "providedContext": "   "}).encode()
    missing = json.dumps({"caseId": case_id, "providedContext": "Yes."}).encode()
    other_key = json.dumps({"caseId": "another-case", "inputRequestId": "q", "providedContext": "x"}).encode()
    poison = [(b"this is not json", key), (blank, key), (missing, key), (b"[1, 2]", key), (other_key, key)]
    positions = [produce(s, ANSWERS, value, key=k) for value, k in poison]
    produce(s, ANSWERS, b"no key, no json", key=None)
    # Published after the poison, in the same partition: it must still go through.
    answer_id = publish(s, case_id, question, "Yes.")
    [accepted] = wait_outcomes(s, answer_id, worker=worker)
    assert accepted.outcome is Outcome.ACCEPTED

    rejected = [
        o for o in read_outcomes(s) if o.outcome is Outcome.REJECTED and o.errorCode == "INVALID_ANSWER"
    ]
    by_case = [o for o in rejected if o.caseId in (case_id, "another-case")]
    assert len(by_case) == len(poison)
    assert any("record key" in o.message for o in by_case)
    assert any(o.message.startswith("not JSON") for o in by_case)
    letters = [letter for letter in list_dead_letters(s) if letter.outcome == "rejected"]
    values = {letter.value for letter in letters}
    assert {value for value, _ in poison} | {b"no key, no json"} <= values, "raw bytes kept"
    poison_letters = [letter for letter in letters if letter.value in {value for value, _ in poison}]
    for letter in poison_letters:
        assert letter.headers[DlqHeader.ERROR_CODE] == "INVALID_ANSWER"
        assert letter.headers[DlqHeader.ORIGINAL_TOPIC] == f"{s.offload_topic_prefix}answers"
        assert (
            int(letter.headers[DlqHeader.ORIGINAL_PARTITION]),
            int(letter.headers[DlqHeader.ORIGINAL_OFFSET]),
        ) in positions
    assert worker.service.process is not None and worker.service.process.poll() is None


def test_a_slow_case_does_not_delay_another_partitions_answer(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    partitions = s.offload_topic_partitions
    slow_case, slow_question = open_question(sim, receiver, s, worker, metadata={"simLatencyMs": 8_000})
    slow_partition = partition_for(slow_case, partitions)
    fast_case = case_in_partition(
        sim, receiver, partitions, lambda p: p != slow_partition, scenario="input_then_complete", step_ms=50
    )
    publish_webhook(s, webhook_body(receiver, fast_case, "case.input_needed"))
    fast_question = worker.wait_case(fast_case, lambda st: st["status"] == "INPUT_NEEDED")["inputRequest"][
        "id"
    ]

    slow_answer = publish(s, slow_case, slow_question, "Slow.")
    sim.wait_in_flight("provide_input")  # the slow call has reached Offload, which holds it 8 s
    published_at = time.time() * 1000
    fast_answer = publish(s, fast_case, fast_question, "Fast.")
    [fast] = wait_outcomes(s, fast_answer, worker=worker)
    assert fast.outcome is Outcome.ACCEPTED
    assert fast.at - published_at < 4_000, "the other partition's answer waited for the slow call"
    assert not [o for o in read_outcomes(s, slow_answer) if o.outcome.terminal], (
        "the slow call is still going"
    )
    [slow] = wait_outcomes(s, slow_answer, worker=worker)
    assert slow.outcome is Outcome.ACCEPTED
    assert slow.at > fast.at


def test_a_long_retry_after_does_not_hold_up_retries_in_the_same_partition(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    partitions = s.offload_topic_partitions
    throttled, throttled_question = open_question(sim, receiver, s, worker)
    partition = partition_for(throttled, partitions)
    other = case_in_partition(
        sim, receiver, partitions, lambda p: p == partition, scenario="input_then_complete", step_ms=50
    )
    publish_webhook(s, webhook_body(receiver, other, "case.input_needed"))
    other_question = worker.wait_case(other, lambda st: st["status"] == "INPUT_NEEDED")["inputRequest"]["id"]

    retry_after_s = 10
    sim.set_faults(
        endpoints={"provide_input": {"rate": 1.0, "error": "429-retry-after", "retry_after_s": retry_after_s}}
    )
    throttled_answer = publish(s, throttled, throttled_question, "Throttled.")
    [first_call] = wait_inputs(sim, throttled, 1)
    sim.set_faults(endpoints={"provide_input": {"rate": 1.0, "error": "503"}})
    other_answer = publish(s, other, other_question, "Plain 503.")
    wait_inputs(sim, other, 1)
    sim.set_faults(endpoints={})

    other_outcomes = wait_outcomes(s, other_answer, worker=worker)
    assert [o.outcome for o in other_outcomes] == [Outcome.RETRYING, Outcome.ACCEPTED]
    assert other_outcomes[-1].at < first_call["at"] + (retry_after_s - 3) * 1000, "held up by the 429"

    throttled_outcomes = wait_outcomes(s, throttled_answer, worker=worker)
    assert [o.outcome for o in throttled_outcomes] == [Outcome.RETRYING, Outcome.ACCEPTED]
    assert throttled_outcomes[0].httpStatus == 429
    inputs = sim.truth(throttled)["inputs"]
    assert len(inputs) == 2
    assert inputs[1]["at"] - inputs[0]["at"] >= retry_after_s * 1000, "Retry-After not honoured"


def test_cli_answer_wait_prints_accepted(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, worker: Worker
) -> None:
    case_id, question = open_question(sim, receiver, s, worker)
    result = worker.run_cli("answer", case_id, question, "Yes, from the command line.", "--wait")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("published answerId=ans_")
    assert lines[-1].startswith("accepted answerId=ans_")
    assert "attempt=1 http=202" in lines[-1]


def test_a_refused_api_key_dead_letters_the_answer_with_an_error_log(
    kafka_broker: str, sim: RunningSimulator, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    sim.set_faults(endpoints={}, latency_ms=0)
    wrong_key = "not-a-key-offload-knows"
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("badkey"),
        offload_base_url=HttpUrl(sim.base_url),
        offload_api_key=SecretStr(wrong_key),
    )
    ensure_topics(settings)
    worker = Worker(settings, tmp_path)
    try:
        worker.start()
        case_id, question = open_question(sim, receiver, settings, worker)
        answer_id = publish(settings, case_id, question, "Yes.")
        [dead] = wait_outcomes(settings, answer_id, worker=worker)
        assert dead.outcome is Outcome.DEAD_LETTERED
        assert (dead.attempt, dead.httpStatus, dead.errorCode) == (1, 401, "UNAUTHORIZED")
        [letter] = list_dead_letters(settings)
        assert letter.answer_id == answer_id and letter.outcome == "dead_lettered"
        log = worker.service.log_path.read_text() if worker.service.log_path else ""
        assert "refused our API key" in log
        assert wrong_key not in log, "the API key must never be logged"
    finally:
        worker.service.stop()
