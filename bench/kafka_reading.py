"""aiokafka clients of the benchmarks, connected like the worker's own (``aiokafka_options``)."""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from offload_bridge.kafka.connection import aiokafka_options
from offload_bridge.settings import Settings


def producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """An idempotent producer whose sends every in-sync replica acknowledged (not started)."""
    return AIOKafkaProducer(
        **{**aiokafka_options(settings), "acks": "all", "enable_idempotence": True, **options}
    )


async def from_beginning(settings: Settings, topic: str) -> AIOKafkaConsumer:
    """A started consumer outside any group, assigned every partition of ``topic`` at its oldest record.

    The benchmarks create their topics with ``offload_topic_partitions``; the count is taken from there
    rather than from metadata, which aiokafka fetches lazily.
    """
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), enable_auto_commit=False)
    await consumer.start()
    partitions = [TopicPartition(topic, p) for p in range(settings.offload_topic_partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return consumer
