"""The roles' ACLs on a broker that enforces them: each part runs under its own principal, and each is refused
what its role does not allow in one line, at once.

One broker for the module (tests/secure_kafka.py): ``StandardAuthorizer``, nothing allowed without an ACL, a
super user (``admin``) used only to apply the ACLs with ``offload-bridge acls --apply`` and, through the
PLAINTEXT setup listener, to plant a dead letter. Every part speaks SCRAM-SHA-512 over TLS as its own user:
the ingress, the worker, a team, an operator, a downstream reader, the exporter and the inbox.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaError
from pydantic import HttpUrl, SecretStr

from offload_bridge.acls import acls_of, grants
from offload_bridge.answers.client import AnswerSubmitter
from offload_bridge.case_requests.client import CaseRequestSubmitter
from offload_bridge.case_watch.client import CaseWatcher
from offload_bridge.kafka.connection import kafka_consumer, kafka_producer, refusal
from offload_bridge.kafka.reading import read_topic
from offload_bridge.roles import Role
from offload_bridge.schemas.answers import AnswerOutcome, DlqHeader
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, case_body, simulator_process
from offload_bridge.testing import produce, settings_env, unique_prefix
from offload_bridge.topics import (
    ANSWER_OUTCOMES,
    ANSWERS,
    ANSWERS_DLQ,
    CASE_EVENTS,
    CASE_STATE,
    TopicSpec,
    topic_name,
)
from tests.inbox_support import running_inbox
from tests.ingress_support import Ingress, running_ingress
from tests.kafka_java import java_acls
from tests.secure_kafka import ADMIN, SecureBroker, running_secure_broker
from tests.streams_support import Worker

PREFIX = unique_prefix("acl")
USERS = {role: (f"{role}-svc", f"{role}-secret") for role in Role}
PRINCIPALS = [f"--principal={role}=User:{name}" for role, (name, _) in USERS.items()]
REFUSED_WITHIN_S = 20.0  # a refusal is one round trip; anything near a client timeout is a hang


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    home = tmp_path_factory.mktemp("acl-kafka")
    with running_secure_broker(home, users=list(USERS.values()), authorizer=True) as running:
        yield running


def as_role(broker: SecureBroker, role: Role | None, **fields: Any) -> Settings:
    """The settings of a part running as ``role``'s user (None: the super user)."""
    return broker.sasl_ssl_settings(USERS[role] if role else ADMIN, offload_topic_prefix=PREFIX, **fields)


def cli(settings: Settings, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings_env(settings), **extra}
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def applied(broker: SecureBroker) -> str:
    """``acls --apply`` as the super user, then ``topics create`` as the operator: what the ACLs allow."""
    done = cli(as_role(broker, None), "acls", *PRINCIPALS, "--apply")
    assert done.returncode == 0, done.stderr
    created = cli(as_role(broker, Role.OPERATOR), "topics", "create")
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created  ") == 13, created.stdout
    return done.stdout


@dataclass
class Stack:
    sim: RunningSimulator
    ingress: Ingress
    worker: Worker

    @property
    def webhook_url(self) -> str:
        return f"{self.ingress.url}/webhooks/offload"


@pytest.fixture(scope="module")
def stack(broker: SecureBroker, applied: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("acl-stack")
    with (
        simulator_process("--step-ms", "200", log_path=workdir / "simulator.log") as sim,
        running_ingress(as_role(broker, Role.INGRESS), workdir) as ingress,
    ):
        worker_settings = as_role(
            broker,
            Role.WORKER,
            offload_base_url=HttpUrl(sim.base_url),
            offload_api_key=SecretStr("dev-key"),
            offload_public_webhook_url=HttpUrl(f"{ingress.url}/webhooks/offload"),
        )
        worker = Worker(worker_settings, workdir).start()
        try:
            yield Stack(sim, ingress, worker)
        finally:
            worker.service.stop()


def _lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return done.stdout.strip().splitlines()


def test_apply_creates_each_binding_once_and_finds_them_the_second_time(
    broker: SecureBroker, applied: str
) -> None:
    wanted = acls_of(
        grants([(role, f"User:{name}") for role, (name, _) in USERS.items()], as_role(broker, None))
    )
    assert sorted(line.removeprefix("created  ") for line in applied.splitlines()[:-1]) == sorted(
        map(str, wanted)
    )
    # Kafka's own Java admin client lists exactly these, allowed from any host.
    java_names = {"literal": "LITERAL", "prefixed": "PREFIXED"}
    assert java_acls(broker.bootstrap) == {
        (
            acl.principal,
            acl.resource_type.name,
            acl.name,
            java_names[acl.pattern],
            acl.operation.name,
            "*",
            "ALLOW",
        )
        for acl in wanted
    }
    again = cli(as_role(broker, None), "acls", *PRINCIPALS, "--apply")
    assert again.returncode == 0, again.stderr
    assert _lines(again)[-1] == f"0 ACL(s) created, {len(wanted)} already there"


def test_webhooks_fold_and_a_team_answers_through_the_worker(broker: SecureBroker, stack: Stack) -> None:
    case_id = stack.sim.create_case(stack.webhook_url, scenario="input_then_complete", step_ms=200)
    state = stack.worker.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
    question = state["inputRequest"]["id"]
    teams = as_role(broker, Role.TEAMS)
    answered = cli(teams, "answer", case_id, "Yes, the W-9 is attached.", "--wait", "--timeout", "60",
                   OFFLOAD_WORKER_URLS=stack.worker.url)  # fmt: skip
    assert answered.returncode == 0, answered.stderr
    assert f"question inputRequestId={question}" in answered.stdout
    assert _lines(answered)[-1].startswith("accepted ")
    stack.worker.wait_case(case_id, lambda state: state["status"] == "COMPLETED")


def test_a_team_creates_and_tracks_cases_from_the_cli_and_python(
    broker: SecureBroker, stack: Stack, tmp_path: Path
) -> None:
    teams = as_role(broker, Role.TEAMS)
    body = tmp_path / "case.json"
    body.write_text(json.dumps(case_body(scenario="input_then_complete", step_ms=200)))
    created = cli(teams, "create-case", str(body), "--wait", "--timeout", "60")
    assert created.returncode == 0, created.stderr
    case_id = _lines(created)[-1].split("caseId=")[1].split()[0]
    stack.worker.wait_case(case_id, lambda state: state["status"] in ("RUNNING", "INPUT_NEEDED"))

    with CaseRequestSubmitter(teams) as submitter:
        request = case_body(scenario="input_then_complete", step_ms=200, clientReferenceId="from-python")
        request_id = submitter.publish(request)
        outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
    assert outcome.outcome == "created" and outcome.caseId is not None
    question = stack.worker.wait_case(outcome.caseId, lambda state: state["status"] == "INPUT_NEEDED")
    with AnswerSubmitter(teams) as answers:
        answer_id = answers.publish(outcome.caseId, question["inputRequest"]["id"], "Yes, from Python.")
        assert answers.wait_for_outcome(answer_id, timeout_s=60).outcome == "accepted"

    outside = stack.sim.create_case(scenario="input_then_complete", step_ms=200)  # no webhooks: tracked
    with CaseWatcher(teams) as watcher:
        watcher.track(outside)
    stack.worker.wait_case(outside, lambda state: state["caseId"] == outside)
    tracked = cli(teams, "track", stack.sim.create_case(scenario="input_then_complete", step_ms=200))
    assert tracked.returncode == 0, tracked.stderr


def _dead_letter(broker: SecureBroker, case_id: str, question: str) -> str:
    """An answer dead-lettered by the worker, as the worker writes it (planted as the super user)."""
    answer_id = f"ans-{unique_prefix('dlq').strip('.')}"
    answer = {
        "caseId": case_id,
        "inputRequestId": question,
        "providedContext": "Late.",
        "answerId": answer_id,
    }
    headers = {
        DlqHeader.OUTCOME.value: b"dead_lettered",
        DlqHeader.ERROR.value: b"HTTP 503 after 8 attempts",
        DlqHeader.ANSWER_ID.value: answer_id.encode(),
    }
    setup = broker.setup_settings(offload_topic_prefix=PREFIX)
    produce(setup, ANSWERS_DLQ, json.dumps(answer).encode(), key=case_id.encode(), headers=headers)
    return answer_id


def test_an_operator_tails_redrives_and_reconciles(broker: SecureBroker, stack: Stack) -> None:
    operator = as_role(broker, Role.OPERATOR)
    case_id = stack.sim.create_case(stack.webhook_url, scenario="input_then_complete", step_ms=200)
    question = stack.worker.wait_case(case_id, lambda s: s["status"] == "INPUT_NEEDED")["inputRequest"]["id"]

    env = {**os.environ, **settings_env(operator)}
    tail = subprocess.Popen(
        [sys.executable, "-m", "offload_bridge.cli", "tail", "--from-beginning", "--json", "--case", case_id],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert tail.stdout is not None
        first = json.loads(tail.stdout.readline())
        assert (first["topic"], first["key"]) == ("case-events", case_id)
    finally:
        tail.terminate()
        tail.wait(timeout=30)

    answer_id = _dead_letter(broker, case_id, question)
    listed = cli(operator, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    assert answer_id in listed.stdout
    redriven = cli(operator, "dlq", "redrive", "--all")
    assert redriven.returncode == 0, redriven.stderr
    assert _lines(redriven)[-1].startswith("1 redriven")
    outcome = _wait_outcome(broker, answer_id)
    assert outcome.outcome == "accepted", outcome

    reconciled = cli(operator, "reconcile", "--all-open", OFFLOAD_BASE_URL=stack.sim.base_url,
                     OFFLOAD_API_KEY="dev-key")  # fmt: skip
    assert reconciled.returncode == 0, reconciled.stderr
    assert " checked, " in _lines(reconciled)[-1]


def _wait_outcome(broker: SecureBroker, answer_id: str) -> AnswerOutcome:
    setup = broker.setup_settings(offload_topic_prefix=PREFIX)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for record in read_topic(setup, topic_name(ANSWER_OUTCOMES, setup)):
            outcome = AnswerOutcome.model_validate_json(record.value)
            if outcome.answerId == answer_id and outcome.outcome != "retrying":
                return outcome
        time.sleep(0.5)
    raise AssertionError(f"no terminal outcome for {answer_id}")


def test_a_reader_consumes_events_and_state_in_a_group_of_its_own(broker: SecureBroker, stack: Stack) -> None:
    stack.worker.wait_case(
        stack.sim.create_case(stack.webhook_url, step_ms=200), lambda state: state["status"] != "CREATED"
    )
    reader = as_role(broker, Role.READER)
    group = f"{reader.reader_group_prefix}analytics"
    consumer = kafka_consumer(reader, group_id=group, auto_offset_reset="earliest")
    try:
        consumer.subscribe([topic_name(CASE_EVENTS, reader), topic_name(CASE_STATE, reader)])
        seen: set[str] = set()
        deadline = time.monotonic() + 60
        while seen != {CASE_EVENTS.name, CASE_STATE.name} and time.monotonic() < deadline:
            for where in consumer.poll(timeout_ms=500):
                seen.add(where.topic.removeprefix(PREFIX))
        assert seen == {CASE_EVENTS.name, CASE_STATE.name}
        consumer.commit()
        committed = consumer.committed(TopicPartition(topic_name(CASE_EVENTS, reader), 0))
    finally:
        consumer.close()
    assert committed is not None


def test_the_inbox_runs_as_its_role_shows_the_question_and_answers(
    broker: SecureBroker, stack: Stack, tmp_path: Path
) -> None:
    """``offload-bridge inbox`` itself as the inbox principal: its reader takes every partition of the four
    topics by assignment (no group), its producer publishes the answer, and the outcome comes back."""
    case_id = stack.sim.create_case(stack.webhook_url, scenario="input_then_complete", step_ms=200)
    question = stack.worker.wait_case(case_id, lambda s: s["status"] == "INPUT_NEEDED")["inputRequest"]["id"]
    inbox_settings = as_role(broker, Role.INBOX, offload_worker_urls=stack.worker.url)
    with running_inbox(inbox_settings, tmp_path) as inbox:
        ana = inbox.client("ana@example.com")
        ana.wait_page(f"/cases/{case_id}", lambda page: f'data-question-id="{question}"' in page)
        sent = ana.answer(case_id, "Yes, from the inbox.")
        assert sent.status_code == 303, sent.text
        ana.wait_page(sent.headers["location"], lambda page: 'data-status="accepted"' in page)
        assert "Group authorization failed" not in inbox.service.log_tail(200)
    [answer] = [
        json.loads(record.value)
        for record in read_topic(as_role(broker, None), topic_name(ANSWERS, inbox_settings))
        if record.key == case_id.encode()
    ]
    assert answer["submittedBy"] == "ana@example.com"


def test_the_exporter_exports(broker: SecureBroker, stack: Stack, tmp_path: Path) -> None:
    exported = cli(as_role(broker, Role.EXPORTER), "export", "--to", str(tmp_path / "tables"))
    assert exported.returncode == 0, exported.stderr
    assert list((tmp_path / "tables" / "events").rglob("*.parquet")), exported.stdout + exported.stderr


@pytest.mark.parametrize(
    ("role", "args", "refused"),
    [
        (Role.TEAMS, ("reconcile", "--case", "case-1"), "read topic {prefix}case-state"),
        (Role.TEAMS, ("topics", "create"), "create topic {prefix}"),
        (Role.TEAMS, ("dlq", "redrive", "--all"), "read topic {prefix}answers.dlq"),
        (Role.INGRESS, ("tail", "--from-beginning"), "read topic {prefix}answer-outcomes"),
        (Role.INGRESS, ("tail", "--topic", "case-events"), "use topic {prefix}case-events"),
        (Role.INGRESS, ("track", "case-1"), "write to topic {prefix}case-watch"),
        (Role.READER, ("answer", "case-1", "inp-1", "Yes."), "write to topic {prefix}answers"),
        (Role.READER, ("export", "--to", "{tmp}"), "read group {prefix}export"),
        (Role.EXPORTER, ("tail", "--topic", "case-state"), "read topic {prefix}case-state"),
    ],
)
def test_a_command_a_role_may_not_run_is_refused_in_one_line(
    broker: SecureBroker, applied: str, role: Role, args: tuple[str, ...], refused: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    done = cli(as_role(broker, role), *(arg.format(tmp=tmp_path) for arg in args))
    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert done.returncode == 2, done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines() if not line.startswith("following ")]
    assert len(said) == 1, done.stderr
    who = f"offload-bridge: User:{USERS[role][0]} is not allowed to {refused.format(prefix=PREFIX)}"
    assert said[0].startswith(who), said[0]
    assert "AuthorizationFailed" in said[0] and "`offload-bridge acls`" in said[0]


@pytest.mark.parametrize(
    ("role", "topic"),
    [
        (Role.TEAMS, CASE_EVENTS),
        (Role.TEAMS, CASE_STATE),
        (Role.TEAMS, ANSWER_OUTCOMES),
        (Role.INGRESS, ANSWER_OUTCOMES),
        (Role.READER, CASE_EVENTS),
        (Role.EXPORTER, CASE_EVENTS),
        (Role.INBOX, CASE_EVENTS),
        (Role.INBOX, CASE_STATE),
        (Role.INBOX, ANSWER_OUTCOMES),
    ],
)
def test_no_role_writes_what_it_must_not(
    broker: SecureBroker, applied: str, role: Role, topic: TopicSpec
) -> None:
    settings = as_role(broker, role)
    producer = kafka_producer(settings, enable_idempotence=True, max_block_ms=10_000)
    started = time.monotonic()
    try:
        with pytest.raises(KafkaError) as raised:
            producer.send(topic_name(topic, settings), key=b"case-1", value=b"{}").get(timeout=15)
    finally:
        producer.close()
    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert refusal(raised.value, settings) is not None, raised.value


def test_the_ingress_reads_nothing(broker: SecureBroker, applied: str) -> None:
    settings = as_role(broker, Role.INGRESS)
    consumer = kafka_consumer(settings)
    try:
        consumer.assign([TopicPartition(topic_name(CASE_EVENTS, settings), 0)])
        consumer.seek_to_beginning()
        with pytest.raises(KafkaError) as raised:
            consumer.poll(timeout_ms=10_000)
    finally:
        consumer.close()
    assert refusal(raised.value, settings) is not None, raised.value
