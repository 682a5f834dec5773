"""What every feature of the worker shares: the Faust app, the case topics and table, the Offload client.

A leaf module: features import it, ``streams.app`` (the composition root) builds it and imports the
features, so no feature ever imports the root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from offload_bridge.kafka.faust_topics import faust_topic
from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.settings import Settings
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.metrics import WorkerMetrics
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.topics import TopicSpec

log = logging.getLogger(__name__)

# Called with the caseId, the table partition it was written to and the record written.
CaseChangeListener = Callable[[str, int, CaseRecord], None]


class CaseChanges:
    """Tells listeners about every record written to the case-state table, right after the write.

    Listeners run synchronously inside the writer's step, so they see the changes in the table's own
    order and none is missed while the agents run. Writes that bypass the agents (changelog recovery,
    standby copies) are not told: a listener rebuilds from the table after a rebalance instead.
    """

    def __init__(self) -> None:
        self._listeners: list[CaseChangeListener] = []

    def subscribe(self, listener: CaseChangeListener) -> None:
        self._listeners.append(listener)

    def publish(self, case_id: str, partition: int, record: CaseRecord) -> None:
        for listener in self._listeners:
            try:
                listener(case_id, partition, record)
            except Exception:
                # The write has happened; a listener's bug must not keep the writer from its own
                # outputs (the case-state record after it), nor the other listeners from the change.
                log.exception("case %s: a listener of case changes failed", case_id)


@dataclass
class WorkerContext:
    """The Faust app and everything its features share."""

    settings: Settings
    app: faust.App
    case_events: Any  # faust TopicT: raw bytes in, the ingress's record as it was produced
    case_state: Any
    table: Any  # faust Table[str, CaseRecord], changelog-backed, co-partitioned with case_events
    offload: OffloadApi  # the one HTTP client to Offload every feature shares; closed when the app stops
    metrics: WorkerMetrics
    features: list[Feature] = field(default_factory=list)
    case_changes: CaseChanges = field(default_factory=CaseChanges)

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
