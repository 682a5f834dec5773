"""Follow the project's topics live: one readable line per record, or one JSON object per record."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from offload_bridge.kafka.connection import kafka_consumer
from offload_bridge.kafka.reading import assign_all
from offload_bridge.schemas.headers import SOURCE_HEADER
from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, TopicSpec, topic_name

DEFAULT_TOPICS = ("case-events", "answer-outcomes", "case-request-outcomes")

_COLOURS = {
    "case-events": "36",  # cyan
    "case-events.invalid": "31",
    "case-state": "34",
    "answers": "35",
    "answer-outcomes": "32",
    "answers.retry": "33",
    "answers.dlq": "31",
    "case-requests": "35",
    "case-request-outcomes": "32",
}


@dataclass(frozen=True)
class TailRecord:
    topic: str  # the name after the prefix, e.g. case-events
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None
    headers: dict[str, str]
    value: Any  # decoded JSON, else text

    def as_json(self) -> str:
        return json.dumps(
            {
                "topic": self.topic,
                "partition": self.partition,
                "offset": self.offset,
                "timestamp": self.timestamp_ms,
                "key": self.key,
                "headers": self.headers,
                "value": self.value,
            },
            separators=(",", ":"),
        )


def spec_for(name: str) -> TopicSpec:
    for spec in ALL_TOPICS:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in ALL_TOPICS)
    raise ValueError(f"unknown topic {name!r}; one of {known}")


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return None
    text = raw.decode(errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def _summary(record: TailRecord) -> str:
    value = record.value
    if not isinstance(value, dict):
        return repr(value)[:160]
    if record.topic in ("case-events", "case-events.invalid"):
        raw_data = value.get("data")
        data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
        parts = [str(value.get("event_type")), str(data.get("status"))]
        if data.get("inputRequest"):
            parts.append(f"asks {data['inputRequest']!r} ({data.get('inputRequestId')})")
        if data.get("resultStatus"):
            parts.append(f"result {data['resultStatus']}")
        source = record.headers.get(SOURCE_HEADER)
        if source and source != "webhook":
            parts.append(f"[{source}]")
        return " ".join(parts)
    if record.topic == "case-state":
        question = value.get("inputRequest") or {}
        extra = f" asks {question.get('question')!r}" if question.get("status") == "PENDING" else ""
        result = f" result {value['resultStatus']}" if value.get("resultStatus") else ""
        return f"{value.get('status')}{extra}{result} (events {value.get('eventCount')})"
    if "outcome" in value:
        subject = value.get("answerId") or value.get("requestId")
        details = " ".join(
            f"{name}={value[name]}"
            for name in ("httpStatus", "errorCode", "caseId", "caseStatus")
            if value.get(name) is not None
        )
        return f"{value['outcome']} {subject} {details}".rstrip()
    if "providedContext" in value:
        return f"answer to {value.get('inputRequestId')}: {value['providedContext']!r}"
    return json.dumps(value)[:160]


def human_line(record: TailRecord, colour: bool) -> str:
    clock = datetime.fromtimestamp(record.timestamp_ms / 1000).strftime("%H:%M:%S.%f")[:-3]
    topic = f"{record.topic:<21}"
    if colour:
        topic = f"\033[{_COLOURS.get(record.topic, '0')}m{topic}\033[0m"
    return f"{clock} {topic} {record.key or '-'}  {_summary(record)}"


def follow(
    settings: Settings,
    topics: Sequence[str] = DEFAULT_TOPICS,
    case_id: str | None = None,
    from_beginning: bool = False,
    stop: Callable[[], bool] = lambda: False,
    positioned: Callable[[], None] | None = None,
) -> Iterator[TailRecord]:
    """Records of the given topics as they arrive (from now, or from the beginning), until ``stop()``.

    ``positioned`` is called once the consumer's positions are fixed: what is produced after it is seen.
    """
    specs = [spec_for(name) for name in topics]
    consumer = kafka_consumer(settings, client_id="offload-bridge-tail")
    try:
        by_full_name = {topic_name(spec, settings): spec.name for spec in specs}
        partitions = assign_all(consumer, *by_full_name)
        if from_beginning:
            consumer.seek_to_beginning(*partitions)
        else:
            consumer.seek_to_end(*partitions)
        for partition in partitions:
            consumer.position(partition)  # resolve the lazy seek now, before anything new is produced
        if positioned is not None:
            positioned()
        key_filter = case_id.encode() if case_id is not None else None
        while not stop():
            batches = consumer.poll(timeout_ms=250)
            arrived = sorted(
                (record for records in batches.values() for record in records),
                key=lambda record: record.timestamp,
            )
            for message in arrived:
                if key_filter is not None and message.key != key_filter:
                    continue
                yield TailRecord(
                    topic=by_full_name[message.topic],
                    partition=message.partition,
                    offset=message.offset,
                    timestamp_ms=message.timestamp if message.timestamp > 0 else int(time.time() * 1000),
                    key=message.key.decode(errors="replace") if message.key is not None else None,
                    headers={name: raw.decode(errors="replace") for name, raw in message.headers},
                    value=_decode(message.value),
                )
    finally:
        consumer.close()
