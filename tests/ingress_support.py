"""Helpers for the ingress tests: run the ingress as a real process and read back what it published."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from offload_bridge.kafka import reading
from offload_bridge.kafka.connection import kafka_consumer
from offload_bridge.settings import Settings
from offload_bridge.testing import Record, ServiceProcess, free_port, settings_env
from offload_bridge.topics import TopicSpec, topic_name

DATA = Path(__file__).parent / "data"
SEED_INPUT_NEEDED = DATA / "webhook_input_needed.json"
SEED_COMPLETED = DATA / "webhook_completed.json"
JSON = {"content-type": "application/json"}


class Ingress:
    def __init__(self, process: ServiceProcess, port: int, log_path: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.log_path = log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextmanager
def running_ingress(settings: Settings, log_dir: Path, wait_ready: bool = True) -> Iterator[Ingress]:
    """``offload-bridge ingress`` as a child process with these settings; stopped on exit."""
    port = free_port()
    log_path = log_dir / f"ingress-{port}.log"
    process = ServiceProcess(["ingress", "--port", str(port)], env=settings_env(settings), log_path=log_path)
    process.start()
    try:
        ingress = Ingress(process, port, log_path)
        process.wait_http(f"{ingress.url}/readyz" if wait_ready else f"{ingress.url}/healthz", timeout_s=90)
        yield ingress
    finally:
        process.stop()


def event_body(event_id: str | None = None, case_id: str | None = None, **data: Any) -> dict[str, Any]:
    """A valid case.completed webhook with unique ids."""
    return {
        "event_id": event_id or f"evt_{uuid.uuid4().hex}",
        "event_type": "case.completed",
        "timestamp": int(time.time() * 1000),
        "data": {"caseId": case_id or f"case-{uuid.uuid4().hex[:12]}", "status": "COMPLETED", **data},
    }


def _consumer(settings: Settings) -> KafkaConsumer:
    return kafka_consumer(settings)


def record_at(
    settings: Settings, spec: TopicSpec, partition: int, offset: int, timeout_s: float = 30
) -> Record:
    """The record the broker acknowledged at (partition, offset)."""
    consumer = _consumer(settings)
    try:
        where = TopicPartition(topic_name(spec, settings), partition)
        consumer.assign([where])
        consumer.seek(where, offset)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in consumer.poll(timeout_ms=500).get(where, []):
                if message.offset == offset:
                    headers = {k: v for k, v in message.headers}
                    return Record(where.topic, partition, offset, message.key, message.value, headers)
        raise AssertionError(f"no record at {where.topic}[{partition}]@{offset}")
    finally:
        consumer.close()


def read_topic(settings: Settings, spec: TopicSpec, timeout_s: float = 60) -> list[Record]:
    """Every record of the topic up to its end offsets as of now."""
    name = topic_name(spec, settings)
    return [
        Record(name, message.partition, message.offset, message.key, message.value, dict(message.headers))
        for message in reading.read_topic(settings, name, timeout_s=timeout_s)
    ]


def event_ids(records: list[Record]) -> list[str]:
    return [r.headers["event_id"].decode() for r in records if "event_id" in r.headers]
