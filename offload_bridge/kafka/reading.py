"""Reading topics with kafka-python: every partition of a topic, and a topic up to its end.

Each command that reads a topic (``dlq``, ``tail``, the submitters' outcome wait, ``reconcile``) and each test
that looks at what the worker wrote uses these, so "the topic is missing" and "read until the end offsets as
of now" mean the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from offload_bridge.kafka.connection import NotAuthorized, kafka_consumer, principal
from offload_bridge.settings import Settings
from offload_bridge.topics import TopicMissing

Offsets = dict[TopicPartition, int]


def topic_partitions(consumer: KafkaConsumer, *topics: str, action: str = "read") -> list[TopicPartition]:
    """Every partition of the topics (full names), in order; for a topic without any, TopicMissing, or
    NotAuthorized when the cluster does not let this client's principal see it (``action``: what the
    caller was about to do with it)."""
    found: list[TopicPartition] = []
    for name in topics:
        numbers = consumer.partitions_for_topic(name)
        if not numbers:
            raise _why_missing(consumer, name, action)
        found.extend(TopicPartition(name, number) for number in sorted(numbers))
    return found


def _why_missing(consumer: KafkaConsumer, name: str, action: str) -> Exception:
    """A listing of every topic leaves out the ones this principal may not see, as if they did not exist;
    asking for the one topic tells the two apart (the cluster answers TopicAuthorizationFailed for a topic
    it hides, existing or not)."""
    options = {key: value for key, value in consumer.config.items() if key in KafkaAdminClient.DEFAULT_CONFIG}
    try:
        admin = KafkaAdminClient(**{**options, "client_id": "offload-bridge-admin"})
    except (KafkaError, OSError, ValueError):
        return TopicMissing(name)
    try:
        [described] = admin.describe_topics([name])
    except (KafkaError, OSError, ValueError):
        return TopicMissing(name)
    finally:
        admin.close()
    if described["error_code"] != TopicAuthorizationFailedError.errno:
        return TopicMissing(name)
    config = consumer.config
    who = principal(
        config["security_protocol"], config.get("sasl_plain_username"), bool(config.get("ssl_certfile"))
    )
    return NotAuthorized(who, action, f"topic {name}", "TopicAuthorizationFailed")


def assign_all(consumer: KafkaConsumer, *topics: str) -> list[TopicPartition]:
    """Assign the consumer every partition of the topics (no group membership); returns them."""
    partitions = topic_partitions(consumer, *topics)
    consumer.assign(partitions)
    return partitions


def end_offsets(consumer: KafkaConsumer, partitions: Sequence[TopicPartition]) -> Offsets:
    offsets: Offsets = consumer.end_offsets(list(partitions))
    return offsets


def caught_up(consumer: KafkaConsumer, end: Offsets) -> bool:
    """The consumer's position has reached ``end`` in every partition of it."""
    return all(consumer.position(partition) >= offset for partition, offset in end.items())


def read_to_end(
    consumer: KafkaConsumer, partitions: Sequence[TopicPartition], timeout_s: float = 60.0
) -> Iterator[Any]:
    """The records from the consumer's current positions up to the end offsets as of this call.

    Records produced after the call are left out, so the read ends even while producers keep writing.
    Raises TimeoutError when the end is not reached within ``timeout_s``.
    """
    end = end_offsets(consumer, partitions)
    deadline = time.monotonic() + timeout_s
    while not caught_up(consumer, end):
        if time.monotonic() > deadline:
            names = ", ".join(sorted({partition.topic for partition in partitions}))
            raise TimeoutError(f"{names} not read to its end within {timeout_s:g}s")
        for where, records in consumer.poll(timeout_ms=500).items():
            for record in records:
                if record.offset < end[where]:
                    yield record


def read_topic(settings: Settings, *topics: str, timeout_s: float = 60.0, **options: Any) -> list[Any]:
    """Every record of the topics (full names) from the beginning up to their end offsets as of now.

    Records come in each partition's order; ``options`` go to the consumer (e.g. ``client_id``).
    """
    consumer = kafka_consumer(settings, **options)
    try:
        partitions = assign_all(consumer, *topics)
        consumer.seek_to_beginning(*partitions)
        return list(read_to_end(consumer, partitions, timeout_s))
    finally:
        consumer.close()
