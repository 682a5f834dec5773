"""The inbox's Prometheus metrics (``GET /metrics``, open like the probes: no case data in them)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from offload_bridge.inbox.feed import FeedStatus
from offload_bridge.inbox.store import InboxStore


class _Gauges(Collector):
    def __init__(self, store: InboxStore, feed: FeedStatus) -> None:
        self._store = store
        self._feed = feed

    def collect(self) -> Iterator[Metric]:
        feed = self._feed
        yield GaugeMetricFamily(
            "offload_inbox_waiting_questions",
            "Questions waiting for an answer",
            value=self._store.waiting_count,
        )
        yield GaugeMetricFamily("offload_inbox_cases", "Cases the inbox holds", value=self._store.case_count)
        yield GaugeMetricFamily(
            "offload_inbox_feed_ready", "1 once the topics were read to their end", value=int(feed.ready)
        )
        yield GaugeMetricFamily(
            "offload_inbox_feed_lag_records", "Records behind the topics' ends", value=feed.lag
        )
        yield GaugeMetricFamily(
            "offload_inbox_feed_skipped_records",
            "Records of the topics that did not parse",
            value=feed.skipped,
        )


class InboxMetrics:
    def __init__(self, store: InboxStore, feed: FeedStatus) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_Gauges(store, feed))
        self.answers = Counter(
            "offload_inbox_answers",
            "Answers sent from the inbox, by result (published, refused: not sent)",
            ["result"],
            registry=self.registry,
        )
        self.refused = Counter(
            "offload_inbox_refused_requests",
            "Requests refused, by reason",
            ["reason"],
            registry=self.registry,
        )

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
