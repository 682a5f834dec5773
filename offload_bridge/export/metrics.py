"""What the exporter counts: for the summary a run prints, and for Prometheus under ``export --follow``.

The metrics live in a registry of their own rather than prometheus_client's global one, so that several
exporters in one process (the tests) keep separate counts. ``serve`` exposes them on
OFFLOAD_EXPORT_METRICS_HOST:OFFLOAD_EXPORT_METRICS_PORT (GET /metrics).
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server


@dataclass
class ExportMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    # What a run did, for its summary line (Prometheus counters are not meant to be read back).
    rows: Tally[str] = field(default_factory=Tally)
    files: Tally[str] = field(default_factory=Tally)
    skipped: Tally[tuple[str, str]] = field(default_factory=Tally)
    duplicates: Tally[str] = field(default_factory=Tally)

    def __post_init__(self) -> None:
        registry = self.registry
        self.rows_written = Counter(
            "offload_export_rows_written_total", "Rows written to fact files, by table.", ["table"],
            registry=registry,
        )  # fmt: skip
        self.files_written = Counter(
            "offload_export_files_written_total",
            "Fact files written, by table.",
            ["table"],
            registry=registry,
        )
        self.skipped_records = Counter(
            "offload_export_skipped_total",
            "Records that made no row because they could not be read (not JSON, a field missing or of the "
            "wrong type), by table and reason.",
            ["table", "reason"],
            registry=registry,
        )
        self.duplicate_records = Counter(
            "offload_export_duplicates_total",
            "Records left out because a row with their event_id was already written (a redelivery, a "
            "reconciler's event and the late webhook).",
            ["table"],
            registry=registry,
        )
        self.lag = Gauge(
            "offload_export_consumer_lag",
            "Records of a partition not yet in a committed file: its end offset minus the committed offset.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_file_time = Gauge(
            "offload_export_last_file_time_seconds",
            "Unix time the last fact file was written and committed.",
            registry=registry,
        )
        self.last_snapshot_time = Gauge(
            "offload_export_last_snapshot_time_seconds",
            "Unix time the questions and cases snapshots were last replaced.",
            registry=registry,
        )
        self.snapshot_seconds = Gauge(
            "offload_export_snapshot_duration_seconds",
            "How long the last snapshot of questions and cases took.",
            registry=registry,
        )

    def wrote(self, table: str, rows: int, files: int) -> None:
        self.rows[table] += rows
        self.files[table] += files
        self.rows_written.labels(table=table).inc(rows)
        self.files_written.labels(table=table).inc(files)
        if files:
            self.last_file_time.set(time.time())

    def skip(self, table: str, reason: str) -> None:
        self.skipped[(table, reason)] += 1
        self.skipped_records.labels(table=table, reason=reason).inc()

    def duplicate(self, table: str, count: int = 1) -> None:
        self.duplicates[table] += count
        self.duplicate_records.labels(table=table).inc(count)

    def snapshot(self, seconds: float) -> None:
        self.last_snapshot_time.set(time.time())
        self.snapshot_seconds.set(seconds)

    def set_lag(self, topic: str, partition: int, records: int) -> None:
        self.lag.labels(topic=topic, partition=str(partition)).set(records)

    def forget_partition(self, topic: str, partition: int) -> None:
        """A partition this exporter no longer owns reports no lag here (its new owner does)."""
        with contextlib.suppress(KeyError):
            self.lag.remove(topic, str(partition))

    def serve(self, host: str, port: int) -> None:
        """GET /metrics on host:port, from a daemon thread."""
        start_http_server(port, addr=host, registry=self.registry)
