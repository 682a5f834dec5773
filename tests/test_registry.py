"""The topic registry and what is derived from it, without a broker."""

from __future__ import annotations

import subprocess
import sys
from typing import Any, cast

from pydantic import BaseModel

from offload_bridge import contracts
from offload_bridge.kafka.faust_topics import faust_topic
from offload_bridge.schemas.answers import Answer, RetryAnswer
from offload_bridge.schemas.case_requests import CaseRequest, RetryCaseRequest
from offload_bridge.settings import DAY_MS, Settings
from offload_bridge.topics import ALL_TOPICS, CASE_EVENTS, CASE_REQUESTS_RETRY, HISTORY, Party

REQUEST = {
    "requestId": "req-1",
    "channel": "EMAIL",
    "goal": {"objective": "get the invoice paid", "knowledge": "invoice 42"},
    "counterparty": {"address": "ap@example.com", "name": "Accounts"},
    "senderPersona": {"name": "Sam"},
    "futureField": {"kept": True},
}


def test_every_topic_is_declared_once_and_keyed_by_a_field_of_its_value() -> None:
    names = [spec.name for spec in ALL_TOPICS]
    assert len(set(names)) == len(names)
    for spec in ALL_TOPICS:
        assert spec.writers and spec.readers, spec.name
        if spec.model is None or spec is CASE_EVENTS:
            continue  # raw bytes; case-events carries its caseId in data
        assert spec.key in spec.model.model_fields, spec.name


def test_only_the_retry_topics_are_internal() -> None:
    assert {spec.name for spec in ALL_TOPICS if spec.internal} == {"answers.retry", "case-requests.retry"}
    assert CASE_REQUESTS_RETRY.writers == CASE_REQUESTS_RETRY.readers == (Party.CASE_REQUEST_AGENT,)


def _added_fields(model: type[BaseModel], base: type[BaseModel]) -> set[str]:
    return set(model.model_fields) - set(base.model_fields)


def test_case_request_retries_carry_what_answer_retries_carry() -> None:
    answer_only = {"notWaitingRetries"}  # a rule of answer delivery (CASE_NOT_WAITING_FOR_INPUT)
    assert _added_fields(RetryCaseRequest, CaseRequest) == _added_fields(RetryAnswer, Answer) - answer_only
    retry = RetryCaseRequest.model_validate({**REQUEST, "attempt": 2, "notBefore": 1_700_000_000_000})
    assert retry.offload_body() == CaseRequest.model_validate(REQUEST).offload_body()
    again = RetryCaseRequest.model_validate_json(retry.model_dump_json(exclude_unset=True))
    assert (again.attempt, again.notBefore, again.requestId) == (2, 1_700_000_000_000, "req-1")


class _RecordingApp:
    def topic(self, name: str, **options: Any) -> tuple[str, dict[str, Any]]:
        return name, options


def test_faust_topics_are_raw_bytes_with_the_configured_partitions() -> None:
    settings = Settings(offload_topic_prefix="t.", offload_topic_partitions=4)
    rendered: Any = faust_topic(cast(Any, _RecordingApp()), CASE_REQUESTS_RETRY, settings)
    name, options = rendered
    assert name == "t.case-requests.retry"
    assert options == {
        "partitions": 4,
        "key_type": bytes,
        "value_type": bytes,
        "key_serializer": "raw",
        "value_serializer": "raw",
    }


def test_the_registry_and_the_schemas_need_no_kafka_client() -> None:
    probe = (
        "import sys, offload_bridge.schemas.answers, offload_bridge.schemas.case_requests;"
        "assert 'offload_bridge.topics' not in sys.modules, 'schemas import the registry';"
        "import offload_bridge.topics;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'faust', 'kafka', 'aiokafka', 'fastapi'}))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_asyncapi_channels_say_what_topics_create_sets_and_who_uses_each_topic() -> None:
    channels = {channel["address"]: channel for channel in contracts.asyncapi()["channels"].values()}
    for spec in ALL_TOPICS:
        channel = channels[f"{contracts.DEFAULT_PREFIX}{spec.name}"]
        configured = channel["bindings"]["kafka"]["topicConfiguration"]
        as_admin = {
            name: str(value[0] if isinstance(value, list) else value) for name, value in configured.items()
        }
        assert as_admin == spec.config()
        assert channel["x-writers"] == [str(party) for party in spec.writers]
        assert channel["x-readers"] == [str(party) for party in spec.readers]


def test_the_history_setting_changes_the_history_topics_retention_and_nothing_else() -> None:
    bounded = Settings(offload_history_retention_ms=30 * DAY_MS)
    for spec in ALL_TOPICS:
        default = spec.config()
        changed = {name: value for name, value in spec.config(bounded).items() if default.get(name) != value}
        wanted = {"retention.ms": str(30 * DAY_MS)} if spec.retention is HISTORY else {}
        assert changed == wanted, spec.name
