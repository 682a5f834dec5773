"""Publish watch requests to ``case-watch``: fire and acknowledge, there is no outcome topic.

The worker fetches each watched case from Offload at once and then keeps it reconciled; a team learns what
became of the case the usual way, from ``case-state`` or the worker's ``GET /cases/{id}``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from offload_bridge.kafka.connection import kafka_consumer
from offload_bridge.kafka.reading import topic_partitions
from offload_bridge.schemas.case_watch import CaseWatch
from offload_bridge.settings import Settings
from offload_bridge.submitting import Publisher
from offload_bridge.topics import CASE_WATCH, topic_name

__all__ = ["CaseWatcher", "Tracked"]


@dataclass(frozen=True)
class Tracked:
    """A watch request the broker acknowledged, and where its record sits."""

    case_id: str
    partition: int
    offset: int


class CaseWatcher(Publisher):
    """Publishes watch requests (keyed by caseId) for cases created outside offload-bridge.

    >>> with CaseWatcher() as watcher:
    ...     watcher.track(case_id, requested_by="billing-team", note="created from the admin console")
    """

    input_topic = CASE_WATCH
    client_id = "offload-bridge-case-watch"

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__(settings)
        self._topic_checked = False

    def track(
        self,
        case_id: str,
        *,
        requested_by: str | None = None,
        note: str | None = None,
        timeout_s: float = 30.0,
    ) -> Tracked:
        """Publish one watch request once the broker acknowledged it.

        Raises pydantic.ValidationError for a blank caseId or requestedBy, TopicMissing when ``case-watch``
        was never created, kafka.errors.KafkaError when not acknowledged within ``timeout_s``.
        """
        return self.track_many([case_id], requested_by=requested_by, note=note, timeout_s=timeout_s)[0]

    def track_many(
        self,
        case_ids: Iterable[str],
        *,
        requested_by: str | None = None,
        note: str | None = None,
        timeout_s: float = 30.0,
    ) -> list[Tracked]:
        """Publish one watch request per caseId, in order, once the broker acknowledged every one.

        Every caseId is validated before anything is published, so one blank id publishes nothing. A failure
        while publishing may leave the requests acknowledged before it published: sending them again is
        harmless (the worker only fetches those cases again).
        """
        watches = [CaseWatch(caseId=case_id, requestedBy=requested_by, note=note) for case_id in case_ids]
        return self.publish_watches(watches, timeout_s=timeout_s)

    def publish_watches(self, watches: Sequence[CaseWatch], *, timeout_s: float = 30.0) -> list[Tracked]:
        """Publish validated requests: all are handed to the producer at once, then their acks awaited, so
        a long list costs about one round trip per batch rather than one per case."""
        self._require_topic()
        futures = [
            self._start_send(watch.caseId, watch.model_dump_json(exclude_none=True).encode())
            for watch in watches
        ]
        deadline = time.monotonic() + timeout_s
        tracked: list[Tracked] = []
        for watch, future in zip(watches, futures, strict=True):
            with self.writing():
                metadata = future.get(timeout=max(deadline - time.monotonic(), 0.0))
            tracked.append(Tracked(watch.caseId, metadata.partition, metadata.offset))
        return tracked

    def _require_topic(self) -> None:
        """TopicMissing at once when the topic does not exist: without it the producer would wait a minute
        for the topic's metadata (auto-creation is off) and then fail with a timeout that says nothing."""
        if self._topic_checked:
            return
        consumer = kafka_consumer(self.settings, client_id=self.client_id)
        try:
            topic_partitions(consumer, topic_name(self.input_topic, self.settings), action="write to")
        finally:
            consumer.close()
        self._topic_checked = True
