"""Helpers for tests against the real broker: unique topic prefixes, produce/consume, service processes.

Used by the project's own test suite and usable by teams testing code that talks to offload-bridge.
"""

from __future__ import annotations

import os
import random
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from kafka.errors import KafkaError

from offload_bridge.kafka.connection import admin_for, kafka_consumer, kafka_producer
from offload_bridge.kafka.reading import assign_all
from offload_bridge.processes import ServiceProcess, running
from offload_bridge.settings import Settings
from offload_bridge.topics import TopicSpec, topic_name


def unique_prefix(label: str = "t") -> str:
    """A topic prefix no other test uses, e.g. ``t-3f9a1c2b.``."""
    return f"{label}-{uuid.uuid4().hex[:8]}."


def unique_group(label: str = "g") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce these settings in a child process."""
    return settings.as_env()


def delete_topics_with_prefix(settings: Settings) -> list[str]:
    """Delete every topic whose name starts with the settings' prefix; returns their names."""
    prefix = settings.offload_topic_prefix
    if not prefix or prefix == "offload.":
        raise ValueError(f"refusing to delete topics under the shared prefix {prefix!r}")
    admin = admin_for(settings)
    try:
        doomed = [name for name in admin.list_topics() if name.startswith(prefix)]
        if doomed:
            admin.delete_topics(doomed)
        return doomed
    except KafkaError:
        return []  # a broker gone at teardown has nothing left to clean
    finally:
        admin.close()


# Ports handed to servers the tests start: below Linux's ephemeral range (32768-60999), so an outgoing
# connection never holds one by chance between the check and the server's bind; each test process of a
# parallel run (pytest-xdist's gw0, gw1, ...) takes its own slice, so two processes never pick the same.
_PORT_FLOOR, _PORT_SLICE, _PORT_SLICES = 20_000, 1_500, 8
_handed: set[int] = set()


def _port_slice() -> range:
    """This process's ports: its own slice in a parallel test run, else all of them."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        start = _PORT_FLOOR + int(worker[2:]) % _PORT_SLICES * _PORT_SLICE
        return range(start, start + _PORT_SLICE)
    return range(_PORT_FLOOR, _PORT_FLOOR + _PORT_SLICES * _PORT_SLICE)


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on, for a server a test or bench starts (never the same one
    twice in a process)."""
    candidates = _port_slice()
    first = random.randrange(len(candidates))
    for step in range(len(candidates)):
        port = candidates[(first + step) % len(candidates)]
        if port not in _handed and _bindable(port):
            _handed.add(port)
            return port
    with socket.socket() as sock:  # every port of the slice taken: let the kernel choose
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def produce(
    settings: Settings,
    spec: TopicSpec,
    value: bytes,
    key: bytes | None = None,
    headers: Mapping[str, bytes] | None = None,
) -> tuple[int, int]:
    """Produce one record (acks=all) and return its (partition, offset)."""
    producer = kafka_producer(settings)
    try:
        future = producer.send(
            topic_name(spec, settings), value=value, key=key, headers=list((headers or {}).items())
        )
        metadata = future.get(timeout=30)
        return metadata.partition, metadata.offset
    finally:
        producer.close()


def consume(settings: Settings, spec: TopicSpec, count: int, timeout_s: float = 30.0) -> list[Record]:
    """Read from the start of the topic until ``count`` records arrived or the timeout passed."""
    name = topic_name(spec, settings)
    consumer = kafka_consumer(settings, consumer_timeout_ms=500)
    try:
        consumer.seek_to_beginning(*assign_all(consumer, name))
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for message in consumer:
                records.append(
                    Record(
                        message.topic, message.partition, message.offset, message.key, message.value,
                        {k: v for k, v in message.headers},
                    )
                )  # fmt: skip
                if len(records) >= count:
                    break
        return records
    finally:
        consumer.close()


__all__ = [
    "Record",
    "ServiceProcess",
    "consume",
    "delete_topics_with_prefix",
    "free_port",
    "produce",
    "running",
    "settings_env",
    "unique_group",
    "unique_prefix",
]
