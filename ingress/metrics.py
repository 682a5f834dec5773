"""Prometheus metrics of the ingress: requests by outcome and the broker's acknowledgement latency.

With several workers (``--workers N``) the CLI sets PROMETHEUS_MULTIPROC_DIR before any worker starts, so
every worker writes its values there and ``/metrics`` sums them over all workers.
"""

from __future__ import annotations

import os
from typing import Literal

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

Outcome = Literal[
    "published",
    "quarantined",
    "unauthorized",
    "invalid_signature",
    "invalid_json",
    "too_large",
    "unsupported_media_type",
    "bad_request",
    "kafka_unavailable",
]

TopicKind = Literal["events", "invalid"]

REQUESTS = Counter("offload_ingress_requests_total", "Webhook requests answered, by outcome.", ["outcome"])
PUBLISH_SECONDS = Histogram(
    "offload_ingress_publish_seconds",
    "Time from handing a webhook to the producer until the broker acknowledged it.",
    ["topic_kind"],
    buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


# Looking a labelled child up costs a lock and a dict per call: bind each once, on first use.
_counters: dict[str, Counter] = {}
_histograms: dict[str, Histogram] = {}


def count(outcome: Outcome) -> None:
    counter = _counters.get(outcome)
    if counter is None:
        counter = _counters[outcome] = REQUESTS.labels(outcome=outcome)
    counter.inc()


def observe_publish(topic_kind: TopicKind, seconds: float) -> None:
    histogram = _histograms.get(topic_kind)
    if histogram is None:
        histogram = _histograms[topic_kind] = PUBLISH_SECONDS.labels(topic_kind=topic_kind)
    histogram.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The current metrics in Prometheus' text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
