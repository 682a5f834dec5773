"""Reading topics with kafka-python: every partition of a topic, and a topic up to its end.

Each command that reads a topic (``dlq``, ``tail``, the submitters' outcome wait, ``reconcile``) and each test
that looks at what the worker wrote uses these, so "the topic is missing" and "read until the end offsets as
of now" mean the same everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from offload_bridge.kafka.connection import kafka_consumer
from offload_bridge.settings import Settings
from offload_bridge.topics import TopicMissing

Offsets = dict[TopicPartition, int]


def topic_partitions(consumer: KafkaConsumer, *topics: str) -> list[TopicPartition]:
    """Every partition of the topics (full names), in order; TopicMissing for a topic without any."""
    found: list[TopicPartition] = []
    for name in topics:
        numbers = consumer.partitions_for_topic(name)
        if not numbers:
            raise TopicMissing(name)
        found.extend(TopicPartition(name, number) for number in sorted(numbers))
    return found


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
