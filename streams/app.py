"""The composition root of the streams worker: one Faust app, its topics and table, built from Settings.

Nothing here runs at import time; ``create_app(settings)`` builds the app and registers the agents and
web views, ``streams.worker`` runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import faust

from offload_bridge.clients import faust_credentials
from offload_bridge.settings import Settings
from offload_bridge.streams.metrics import WorkerMetrics
from offload_bridge.streams.metrics import register_view as register_metrics_view
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.state.counters import FoldCounters
from offload_bridge.streams.state.storage import add_case_state_table
from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID, CASE_STATE, topic_name

CASE_STATE_TABLE = "case_state"


@dataclass
class StreamsApp:
    """The Faust app and everything its agents and views share."""

    settings: Settings
    app: faust.App
    case_events: Any  # faust TopicT: raw bytes in, the ingress's record as it was produced
    case_events_invalid: Any
    case_state: Any
    table: Any  # faust Table[str, CaseRecord], changelog-backed, co-partitioned with case_events
    offload: OffloadApi  # the one HTTP client to Offload every agent shares; closed when the app stops
    counters: FoldCounters = field(default_factory=FoldCounters)

    def is_ready(self) -> bool:
        """True once the table is recovered and no rebalance is under way: its answers are current."""
        app = self.app
        recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]
        return bool(recovered and not app.rebalancing and not app.in_recovery)


def broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{server}" for server in settings.bootstrap_servers.split(",")]


def create_app(settings: Settings) -> StreamsApp:
    partitions = settings.offload_topic_partitions
    app = faust.App(
        settings.worker_app_id,
        broker=broker_urls(settings),
        broker_credentials=faust_credentials(settings),
        store=settings.offload_worker_store,
        datadir=str(settings.offload_worker_data_dir / settings.worker_app_id),
        web_bind=settings.offload_worker_web_host,
        web_host=settings.offload_worker_web_host,
        web_port=settings.offload_worker_web_port,
        canonical_url=settings.worker_url,
        topic_partitions=partitions,
        topic_replication_factor=settings.offload_topic_replication,
        # A new consumer group folds case-events from the beginning.
        consumer_auto_offset_reset="earliest",
        # Static membership: a restarted worker rejoins as itself and gets its partitions back at once,
        # instead of waiting out the session of the member it was before a crash.
        consumer_group_instance_id=settings.worker_instance_id,
        broker_session_timeout=settings.offload_worker_session_timeout_s,
        # Several heartbeats per session, so one late heartbeat does not evict a live worker.
        broker_heartbeat_interval=settings.offload_worker_session_timeout_s / 5,
        table_standby_replicas=settings.offload_worker_standby_replicas,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        worker_redirect_stdouts=False,
    )
    raw: dict[str, Any] = {
        "key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"
    }  # fmt: skip
    streams = StreamsApp(
        settings=settings,
        app=app,
        case_events=app.topic(topic_name(CASE_EVENTS, settings), partitions=partitions, **raw),
        case_events_invalid=app.topic(
            topic_name(CASE_EVENTS_INVALID, settings), partitions=partitions, **raw
        ),
        case_state=app.topic(topic_name(CASE_STATE, settings), partitions=partitions, **raw),
        # Partitions must equal the source topic's: the agent writes each case into the partition its
        # event came from, and the query API routes by the key's partition.
        table=add_case_state_table(
            app, CASE_STATE_TABLE, partitions, help="CaseRecord per caseId, folded from case-events"
        ),
        offload=OffloadApi(settings),
    )

    @app.on_before_shutdown.connect
    async def close_offload_client(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await streams.offload.aclose()

    # Imported here: the agents and views need the app to exist.
    from offload_bridge.streams import views
    from offload_bridge.streams.agents import answer_retries, answers, case_requests, case_state, reconciler

    case_state.register(streams)
    delivery = answers.create_delivery(streams)
    answers.register(streams, delivery)
    answer_retries.register(streams, delivery)
    requests = case_requests.register(streams)
    reconciled = reconciler.register(streams)
    calls = delivery.counters
    metrics = WorkerMetrics(app)
    metrics.add(
        "case_events",
        "case-events records by what the fold did with them",
        lambda: {kind: n for kind, n in streams.counters.as_dict().items() if kind != "folded"},
    )
    metrics.add("answers", "answers by outcome (retrying and terminal)", lambda: calls.outcomes)
    metrics.add(
        "answer_calls",
        "calls to Offload made for answers, retries put back, unexpected errors",
        lambda: {
            "input": calls.calls,
            "case_lookup": calls.case_lookups,
            "deferred_retry": calls.deferred,
            "failed": calls.failed,
        },
    )
    metrics.add("case_requests", "case requests by outcome", lambda: requests.counts)
    metrics.add("reconcile", "reconciler sweeps, checks and synthesized events (fixes)", reconciled.as_dict)
    register_metrics_view(app, metrics)
    views.register(streams)
    return streams
