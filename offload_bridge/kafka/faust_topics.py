"""The worker's Faust topics, declared from the topic registry.

Every topic is read and written as raw bytes: an agent decodes a value with its model itself, so that a
record that fails the schema is routed (invalid, dlq) instead of crashing the stream, and
``case-events`` keeps the webhook body byte for byte. Faust is imported only by the caller, so the
registry stays usable without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from offload_bridge.settings import Settings
from offload_bridge.topics import TopicSpec, topic_name

if TYPE_CHECKING:
    import faust


def faust_topic(app: faust.App, spec: TopicSpec, settings: Settings) -> faust.TopicT:
    """``app.topic`` for ``spec``: raw key and value, OFFLOAD_TOPIC_PARTITIONS partitions.

    The partition count is the same for every topic: caseId-keyed topics must stay co-partitioned with
    the tables, and requestId-keyed ones with the case-request table (``TopicSpec.partitioning``).
    """
    return app.topic(
        topic_name(spec, settings),
        partitions=settings.offload_topic_partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
