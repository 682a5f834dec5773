"""Prometheus ``GET /metrics`` of the worker, read at scrape time from the counters the features keep.

Features keep ``streams.counters.Counters`` (cheap on the hot path) and register them here as sources; a
scrape turns every source into one counter family with a ``kind`` label, plus the consumer lag per
partition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Source = Callable[[], Mapping[str, int]]
# Families a feature builds itself at scrape time (histograms, gauges).
FamilySource = Callable[[], Iterable[Metric]]


@dataclass(eq=False)  # a collector must be hashable to be registered
class WorkerMetrics:
    """Counter sources by metric name, and the Faust app whose consumer lag is reported."""

    app: Any
    sources: dict[str, tuple[str, Source]] = field(default_factory=dict)
    family_sources: list[FamilySource] = field(default_factory=list)

    def add(self, name: str, documentation: str, source: Source) -> None:
        """``name`` becomes ``offload_worker_<name>_total{kind=...}``."""
        self.sources[name] = (documentation, source)

    def add_families(self, source: FamilySource) -> None:
        """Metric families ``source`` builds at each scrape, named by the feature itself."""
        self.family_sources.append(source)

    def collect(self) -> Iterator[Metric]:
        for name, (documentation, source) in self.sources.items():
            family = CounterMetricFamily(f"offload_worker_{name}", documentation, labels=["kind"])
            for kind, value in source().items():
                family.add_metric([kind], value)
            yield family
        for families in self.family_sources:
            yield from families()
        yield self._lag()

    def _lag(self) -> GaugeMetricFamily:
        lag = GaugeMetricFamily(
            "offload_worker_consumer_lag",
            "records behind the end of each partition this worker reads (end - committed, else - read)",
            labels=["topic", "partition"],
        )
        monitor = self.app.monitor
        committed = monitor.tp_committed_offsets or {}
        read = monitor.tp_read_offsets or {}
        for tp, end in (monitor.tp_end_offsets or {}).items():
            # Faust tracks the offset of the last record handled; the end offset is the next one to write.
            done = committed.get(tp, read.get(tp))
            if done is not None:
                lag.add_metric([tp.topic, str(tp.partition)], max(0, end - done - 1))
        return lag

    def render(self) -> tuple[bytes, str]:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry), CONTENT_TYPE_LATEST


def register_view(app: Any, metrics: WorkerMetrics) -> None:
    """``GET /metrics`` on the worker's web server (answered even during recovery: counters are local)."""
    from faust.web import Request, Response, View

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            body, _ = metrics.render()
            # The text exposition format; aiohttp refuses parameters (version, charset) in content_type.
            return self.bytes(body, content_type="text/plain")
