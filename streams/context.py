"""What every feature of the worker shares: the Faust app, the case topics and table, the Offload client.

A leaf module: features import it, ``streams.app`` (the composition root) builds it and imports the
features, so no feature ever imports the root.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from offload_bridge.kafka.faust_topics import faust_topic
from offload_bridge.settings import Settings
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.metrics import WorkerMetrics
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.state.batch import StateWriter
from offload_bridge.streams.state.changes import CaseChanges
from offload_bridge.topics import TopicSpec


@dataclass
class WorkerContext:
    """The Faust app and everything its features share."""

    settings: Settings
    app: faust.App
    case_events: Any  # faust TopicT: raw bytes in, the ingress's record as it was produced
    table: Any  # faust Table[str, CaseRecord], changelog-backed, co-partitioned with case_events
    cases: StateWriter  # the one writer of the table and of case-state; reads see its held batches
    case_changes: CaseChanges  # the writer tells it of every change it wrote
    offload: OffloadApi  # the one HTTP client to Offload every feature shares; closed when the app stops
    metrics: WorkerMetrics
    features: list[Feature] = field(default_factory=list)

    def topic(self, spec: TopicSpec) -> Any:
        """The Faust topic of a registry entry (raw bytes)."""
        return faust_topic(self.app, spec, self.settings)

    def is_ready(self) -> bool:
        """True once the tables are recovered and no rebalance is under way: their answers are current."""
        app = self.app
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return bool(recovered and not app.rebalancing and not app.in_recovery)

    def local_partitions(self) -> set[int]:
        """The case-events partitions this worker owns (and so the table partitions it serves)."""
        source = self.case_events.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == source}


@dataclass(frozen=True)
class Feature:
    """What a feature's ``register(worker)`` added: its name and the counters its views and metrics read."""

    name: str
    counters: dict[str, Counters]
