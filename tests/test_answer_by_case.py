"""Answering by case id alone, and listing the questions waiting for an answer across every worker.

Two real workers share the partitions with no standby copies (each case lives on one of them), the
simulator runs as a real process, the broker is the real one. The commands run as a client install would
run them: every import of the server stack fails (``tests.test_light_client``).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator

import pytest
from pydantic import HttpUrl, SecretStr, TypeAdapter

from offload_bridge.answers import (
    AnswerSubmitter,
    IncompleteListing,
    NoPendingQuestion,
    QuestionReader,
)
from offload_bridge.answers.cli import format_age, parse_duration
from offload_bridge.answers.questions import no_question_reason, pending_question
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.kafka.reading import read_topic
from offload_bridge.schemas.case_state import AnswerRecord, CaseState, InputRequest
from offload_bridge.schemas.questions import PendingQuestion, WorkerGroup
from offload_bridge.settings import Settings, SettingsError, load_settings
from offload_bridge.simulator.testing import (
    DEFAULT_API_KEY,
    RunningSimulator,
    WebhookReceiver,
    simulator_process,
)
from offload_bridge.testing import settings_env, unique_prefix
from offload_bridge.topics import ANSWERS, topic_name
from offload_bridge.worker_client import WorkerClient
from tests.answers_support import case_in_partition, webhook_body
from tests.streams_support import (
    WORKER_TOKEN,
    Worker,
    cases_on_every_partition,
    event_body,
    publish_webhook,
    publish_webhooks,
    running_workers,
    wait_for_spread,
)
from tests.test_light_client import _light

PARTITIONS = 6
HOUR_MS = 3_600_000
QUESTIONS = TypeAdapter(list[PendingQuestion])


# --- the rules, without processes ----------------------------------------------------------------------


def _state(status: str | None, question: InputRequest | None, **answers: AnswerRecord) -> CaseState:
    return CaseState(caseId="c-1", status=status, inputRequest=question, answers=answers,
                     firstSeenAt=1, updatedAt=2)  # fmt: skip


def test_a_question_is_pending_only_while_waiting_pending_and_not_answered_by_us() -> None:
    asked = InputRequest(id="ir-1", question="PDF ok?", status="PENDING", requestedAt=5)
    taken = AnswerRecord(answerId="ans-1", outcome="accepted", at=9)
    assert pending_question(_state("INPUT_NEEDED", asked)) == asked
    # An answer that did not reach Offload leaves the question open.
    failed = AnswerRecord(answerId="ans-0", outcome="rejected", at=8)
    assert pending_question(_state("INPUT_NEEDED", asked, **{"ir-1": failed})) == asked
    # An answer to an earlier question does not count for this one.
    assert pending_question(_state("INPUT_NEEDED", asked, **{"ir-0": taken})) == asked

    refused = {
        "answered": (_state("INPUT_NEEDED", asked, **{"ir-1": taken}), "was answered (accepted"),
        "resolved": (_state("INPUT_NEEDED", asked.model_copy(update={"status": "RESOLVED"})), "is RESOLVED"),
        "none asked": (_state("RUNNING", None), "asked no question"),
        "moved on": (_state("RUNNING", asked), "not waiting for input"),
        "over": (_state("COMPLETED", None), "the case is over"),
    }
    for label, (state, reason) in refused.items():
        assert pending_question(state) is None, label
        assert reason in no_question_reason(state), label


def test_durations_and_ages_read_and_print_as_people_write_them() -> None:
    assert [parse_duration(text) for text in ("30m", "1h", "2d", "45s", "90", "1.5h")] == [
        1800, 3600, 172_800, 45, 90, 5400,
    ]  # fmt: skip
    for bad in ("", "1x", "h", "-1h", "1 h 2"):
        with pytest.raises(Exception, match="expected a duration"):
            parse_duration(bad)
    assert [format_age(s) for s in (0, 45, 125, 3 * 3600 + 20 * 60, 2 * 86_400 + 4 * 3600)] == [
        "0s", "45s", "2m05s", "3h20m", "2d04h",
    ]  # fmt: skip


def test_the_workers_to_ask_come_from_one_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OFFLOAD_WORKER_URLS", raising=False)
    monkeypatch.setenv("OFFLOAD_WORKER_URL", "http://w0:6066")
    assert load_settings().worker_urls == ("http://w0:6066",)
    monkeypatch.setenv("OFFLOAD_WORKER_URLS", " http://w1:6066/, https://w2.svc:7000 ,")
    assert load_settings().worker_urls == ("http://w1:6066", "https://w2.svc:7000")
    monkeypatch.setenv("OFFLOAD_WORKER_URLS", "w1:6066")
    with pytest.raises(SettingsError, match="OFFLOAD_WORKER_URLS"):
        load_settings()


# --- two workers, the simulator, the broker ----------------------------------------------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    with simulator_process("--step-ms", "50", log_path=tmp_path_factory.mktemp("sim") / "sim.log") as running:
        yield running


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as running:
        yield running


@pytest.fixture(scope="module")
def s(kafka_broker: str, sim: RunningSimulator) -> Settings:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=unique_prefix("byc"),
        offload_topic_partitions=PARTITIONS,
        offload_base_url=HttpUrl(sim.base_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        # One copy of each case, so a listing of one worker misses the other's cases.
        offload_worker_standby_replicas=0,
        # A frozen worker keeps its partitions this long: longer than any test freezes one.
        offload_worker_session_timeout_s=30,
        # The workers' API behind a token: the CLI and QuestionReader send it, routing forwards it.
        offload_worker_api_tokens=SecretStr(WORKER_TOKEN),
    )
    ensure_topics(settings)
    return settings


@pytest.fixture(scope="module")
def workers(s: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Worker, Worker]]:
    workdir = tmp_path_factory.mktemp("workers")
    pair = (Worker(s, workdir, "one"), Worker(s, workdir, "two"))
    with running_workers(*pair):
        wait_for_spread(pair, PARTITIONS)
        yield pair


def owned(worker: Worker) -> list[int]:
    partitions = worker.owned_partitions()
    assert partitions, f"{worker.url} owns no partition"
    return partitions


def client_env(s: Settings, worker: Worker) -> dict[str, str]:
    """What a team's shell has: the broker, the prefix, and one worker's address."""
    return {**settings_env(s), "OFFLOAD_WORKER_URL": worker.url}


def answers_on_topic(s: Settings) -> int:
    return len(read_topic(s, topic_name(ANSWERS, s), timeout_s=30))


def test_an_answer_naming_only_the_case_ends_accepted_at_the_simulator(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, workers: tuple[Worker, Worker]
) -> None:
    asked, other = workers
    # The case lives on the other worker: the question is read through the worker the command asks.
    case_id = case_in_partition(sim, receiver, PARTITIONS, lambda p: p in owned(other),
                                scenario="input_then_complete", step_ms=50)  # fmt: skip
    publish_webhook(s, webhook_body(receiver, case_id, "case.input_needed"))
    question = asked.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")["inputRequest"]["id"]

    answered = _light(client_env(s, asked), "answer", case_id, "Yes, a signed PDF is fine.", "--wait",
                      "--timeout", "60")  # fmt: skip
    assert answered.returncode == 0, answered.stdout + answered.stderr
    lines = answered.stdout.splitlines()
    assert lines[0] == f"question inputRequestId={question}"
    assert lines[-1].startswith("accepted answerId=")
    [received] = sim.truth(case_id)["inputs"]
    assert received["httpStatus"] == 202
    assert received["body"] == {"inputRequestId": question, "providedContext": "Yes, a signed PDF is fine."}

    # Answered now (our state records it): a second answer by case id is refused, nothing published.
    asked.wait_case(case_id, lambda state: question in state["answers"])
    before = answers_on_topic(s)
    again = _light(client_env(s, asked), "answer", case_id, "Also, send it today.")
    assert again.returncode == 2, again.stdout + again.stderr
    assert again.stderr.count("\n") == 1
    assert f"case {case_id} has no pending question: question {question} was answered" in again.stderr
    assert "(status INPUT_NEEDED)" in again.stderr
    assert answers_on_topic(s) == before


def test_the_python_client_answers_a_case_by_its_id(
    s: Settings, sim: RunningSimulator, receiver: WebhookReceiver, workers: tuple[Worker, Worker]
) -> None:
    asked, _ = workers
    case_id = sim.create_case(receiver.url, scenario="input_then_complete", step_ms=50)
    publish_webhook(s, webhook_body(receiver, case_id, "case.input_needed"))
    question = asked.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")["inputRequest"]["id"]
    worker_settings = s.model_copy(update={"offload_worker_url": HttpUrl(asked.url)})

    with AnswerSubmitter(worker_settings) as submitter:
        answer = submitter.answer_case(case_id, "Next Monday works.")
        assert answer.inputRequestId == question
        assert submitter.wait_for_outcome(answer.answer_id, timeout_s=60).outcome.value == "accepted"
        asked.wait_case(case_id, lambda state: question in state["answers"])
        with pytest.raises(NoPendingQuestion) as refused:
            submitter.answer_case(case_id, "Next Monday works.")
    assert refused.value.status == "INPUT_NEEDED"
    [received] = sim.truth(case_id)["inputs"]
    assert received["body"]["inputRequestId"] == question


def _input_needed(case_id: str, at: int, status: str = "PENDING") -> bytes:
    return event_body(case_id, "case.input_needed", at, "INPUT_NEEDED", clientReferenceId=f"ref-{case_id}",
                      inputRequest=f"Question of {case_id}?", inputRequestId=f"ir-{case_id}",
                      inputRequestStatus=status, inputRequestedAt=at)  # fmt: skip


NO_QUESTION = {
    "unknown": (),
    "completed": (("case.completed", "COMPLETED", {"resultStatus": "goal_achieved"}),),
    "resolved": (("case.input_needed", "RESOLVED", {}),),
    "moved on": (("case.input_needed", "PENDING", {}), ("case.running", "RUNNING", {})),
}


@pytest.mark.parametrize("label", NO_QUESTION)
def test_a_case_without_a_pending_question_is_refused_with_exit_2_and_nothing_published(
    s: Settings, workers: tuple[Worker, Worker], label: str
) -> None:
    asked, _ = workers
    case_id = f"noq-{label.replace(' ', '-')}-{time.time_ns()}"
    at = int(time.time() * 1000)
    for step, (event_type, status, data) in enumerate(NO_QUESTION[label]):
        if event_type == "case.input_needed":
            publish_webhook(s, _input_needed(case_id, at + step, status))
        else:
            publish_webhook(s, event_body(case_id, event_type, at + step, status, **data))
    expected_status = {"unknown": None, "completed": "COMPLETED", "resolved": "INPUT_NEEDED",
                       "moved on": "RUNNING"}[label]  # fmt: skip
    if expected_status is not None:
        asked.wait_case(case_id, lambda state: state["status"] == expected_status)
    before = answers_on_topic(s)

    refused = _light(client_env(s, asked), "answer", case_id, "Yes.", "--wait")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1, refused.stderr
    if expected_status is None:
        assert f"case {case_id} is unknown to the workers" in refused.stderr
        assert "(status unknown)" in refused.stderr
    else:
        assert f"case {case_id} has no pending question" in refused.stderr
        assert f"(status {expected_status})" in refused.stderr
    assert answers_on_topic(s) == before


def _spread_questions(s: Settings, label: str) -> tuple[dict[str, int], set[str]]:
    """Questions on every partition, one asked 2 h ago and one 5 min ago on each, plus a completed case
    and an answered one on each partition that must not be listed. Returns every question's requestedAt
    by caseId, and the cases that must not be listed."""
    now = int(time.time() * 1000)
    asked_at: dict[str, int] = {}
    events: list[bytes] = []
    for n, case_id in enumerate(cases_on_every_partition(label, PARTITIONS, per_partition=4)):
        kind = n % 4
        at = now - 2 * HOUR_MS if kind == 0 else now - 5 * 60_000
        events.append(_input_needed(case_id, at, "PENDING" if kind != 3 else "RESOLVED"))
        if kind == 2:
            events.append(
                event_body(case_id, "case.completed", at + 1, "COMPLETED", resultStatus="goal_achieved")
            )
        if kind < 2:
            asked_at[case_id] = at
    publish_webhooks(s, events)
    unlisted = {case_id for case_id in cases_on_every_partition(label, PARTITIONS, 4)} - set(asked_at)
    return asked_at, unlisted


def _ours(questions: list[PendingQuestion], label: str) -> dict[str, PendingQuestion]:
    return {q.caseId: q for q in questions if q.caseId.startswith(f"{label}-")}


def test_questions_lists_the_waiting_questions_of_both_workers_partitions(
    s: Settings, workers: tuple[Worker, Worker]
) -> None:
    asked, other = workers
    label = f"q{time.time_ns()}"
    asked_at, unlisted = _spread_questions(s, label)
    last = max(asked_at, key=lambda case_id: partition_for(case_id, PARTITIONS))
    asked.wait_case(last, lambda state: state["status"] == "INPUT_NEEDED")
    for case_id in asked_at:
        asked.wait_case(case_id, lambda state: state["inputRequest"] is not None)

    # The command knows one worker; it finds the other through GET /workers.
    group = WorkerClient(asked.url, token=s.worker_client_token).group()
    assert {w.url: w.partitions for w in group.workers} == {asked.url: owned(asked), other.url: owned(other)}
    listed = _light(client_env(s, asked), "questions", "--json")
    assert listed.returncode == 0, listed.stderr
    questions = _ours(QUESTIONS.validate_json(listed.stdout), label)
    assert set(questions) == set(asked_at)
    assert not unlisted & set(questions)
    assert {partition_for(case_id, PARTITIONS) for case_id in questions} == set(range(PARTITIONS))
    for case_id, question in questions.items():
        assert question.inputRequestId == f"ir-{case_id}"
        assert question.question == f"Question of {case_id}?"
        assert question.clientReferenceId == f"ref-{case_id}"
        assert question.requestedAt == asked_at[case_id]
        expected_age = (time.time() * 1000 - asked_at[case_id]) / 1000
        assert expected_age - 60 <= question.ageSeconds <= expected_age
    ordered = [q.requestedAt for q in QUESTIONS.validate_json(listed.stdout)]
    assert ordered == sorted(ordered), "oldest first"

    old = {case_id for case_id, at in asked_at.items() if at < time.time() * 1000 - HOUR_MS}
    filtered = _light(client_env(s, asked), "questions", "--json", "--older-than", "1h")
    assert filtered.returncode == 0, filtered.stderr
    assert set(_ours(QUESTIONS.validate_json(filtered.stdout), label)) == old

    table = _light(client_env(s, other), "questions", "--older-than", "1h")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["CASE", "ID", "AGE", "QUESTION", "CLIENT", "REFERENCE"]
    ours = {row.split()[0]: row.split() for row in rows if row.startswith(f"{label}-")}
    assert set(ours) == old
    for case_id, cells in ours.items():
        assert cells[1].startswith(("1h59m", "2h00m", "2h01m")), cells
        assert cells[-1] == f"ref-{case_id}"

    # The Python API lists the same, from either worker, and finds the same when given both.
    for seeds in ([asked.url], [other.url], [asked.url, other.url]):
        found = QuestionReader(s, seeds).pending_questions(older_than_s=parse_duration("90m"))
        assert set(_ours(found, label)) == old, seeds
    assert _ours(QuestionReader(s, [asked.url]).pending_questions(older_than_s=3 * 3600), label) == {}


def test_questions_names_the_partitions_of_a_worker_it_cannot_reach(
    s: Settings, workers: tuple[Worker, Worker]
) -> None:
    asked, frozen = workers
    label = f"f{time.time_ns()}"
    asked_at, _ = _spread_questions(s, label)
    for case_id in asked_at:
        asked.wait_case(case_id, lambda state: state["inputRequest"] is not None)
    theirs = owned(frozen)
    # A worker that stops answering keeps its partitions until its session expires (30 s here).
    frozen.service.signal(signal.SIGSTOP)
    try:
        listed = _light(client_env(s, asked), "questions", "--json", "--timeout", "2")
        with pytest.raises(IncompleteListing) as incomplete:
            QuestionReader(s, [asked.url], timeout_s=2).pending_questions()
    finally:
        frozen.service.signal(signal.SIGCONT)
    missing = ", ".join(str(partition) for partition in theirs)
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert listed.stderr.startswith(f"offload-bridge: incomplete: partitions {missing} of {PARTITIONS} ")
    assert frozen.url in listed.stderr
    assert listed.stderr.count("\n") == 1
    # What could be listed is still printed: the questions of the partitions of the worker that answered.
    partial = _ours(QUESTIONS.validate_json(listed.stdout), label)
    assert set(partial) == {c for c in asked_at if partition_for(c, PARTITIONS) not in theirs}
    assert incomplete.value.listing.missing_partitions == theirs
    assert set(_ours(incomplete.value.listing.questions, label)) == set(partial)


def test_every_worker_answers_get_workers_with_the_whole_groups_assignment(
    workers: tuple[Worker, Worker],
) -> None:
    one, two = workers
    for worker in workers:
        answer = worker.get("/workers")
        assert answer.status_code == 200, answer.text
        assert answer.json()["ok"] is True
        group = WorkerGroup.model_validate(answer.json()["data"])
        assert group.worker == worker.url
        assert group.partitionCount == PARTITIONS
        assert {w.url: w.partitions for w in group.workers} == {one.url: owned(one), two.url: owned(two)}
