"""The composition root of the streams worker: one Faust app, built from Settings, and its features.

Nothing here runs at import time; ``create_app(settings)`` builds the app and the context every feature
shares (``streams.context``), then registers the features in order (each adds its agents, views and
metrics), then ``GET /metrics``. ``streams.worker`` runs it. Features never import this module.
"""

from __future__ import annotations

import logging
from typing import Any

import faust
from faust.web import Request, Response, View

from offload_bridge.kafka.connection import faust_credentials
from offload_bridge.kafka.faust_topics import faust_topic
from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.settings import Settings
from offload_bridge.streams import handover
from offload_bridge.streams.answers import agent as answers
from offload_bridge.streams.case_context import view as case_context
from offload_bridge.streams.case_requests import agent as case_requests
from offload_bridge.streams.context import WorkerContext
from offload_bridge.streams.metrics import WorkerMetrics
from offload_bridge.streams.metrics import register_view as register_metrics_view
from offload_bridge.streams.offload_api import OffloadApi, missing_key_warning
from offload_bridge.streams.reconcile import agent as reconcile
from offload_bridge.streams.state import agent as state
from offload_bridge.streams.state.batch import StateWriter
from offload_bridge.streams.state.changes import CaseChanges
from offload_bridge.streams.storage import add_model_table, store_options
from offload_bridge.streams.web_access import (
    LIVENESS_PATH,
    access_middleware,
    open_api_warning,
    serve_only_our_views,
)
from offload_bridge.topics import CASE_EVENTS, CASE_STATE, topic_name

CASE_STATE_TABLE = "case_state"

log = logging.getLogger(__name__)


def broker_urls(settings: Settings) -> list[str]:
    return [f"kafka://{server}" for server in settings.bootstrap_servers.split(",")]


def faust_app_options(settings: Settings) -> dict[str, Any]:
    """The worker's settings of its Faust app, as ``faust.App`` keyword arguments (``bench.bare_faust``
    leaves some of them at Faust's defaults to measure what each costs)."""
    return dict(
        broker=broker_urls(settings),
        broker_credentials=faust_credentials(settings),
        store=settings.offload_worker_store,
        datadir=str(settings.worker_data_path),
        web_bind=settings.offload_worker_web_host,
        web_host=settings.offload_worker_web_host,
        web_port=settings.offload_worker_web_port,
        canonical_url=settings.worker_url,
        topic_partitions=settings.offload_topic_partitions,
        topic_replication_factor=settings.offload_topic_replication,
        # A new consumer group folds case-events from the beginning.
        consumer_auto_offset_reset="earliest",
        # Static membership: a restarted worker rejoins as itself and gets its partitions back at once,
        # instead of waiting out the session of the member it was before a crash.
        consumer_group_instance_id=settings.worker_instance_id,
        broker_session_timeout=settings.offload_worker_session_timeout_s,
        broker_commit_interval=settings.offload_worker_commit_interval_s,
        # Several heartbeats per session, so one late heartbeat does not evict a live worker.
        broker_heartbeat_interval=settings.offload_worker_session_timeout_s / 5,
        table_standby_replicas=settings.offload_worker_standby_replicas,
        producer_acks=-1,
        key_serializer="raw",
        value_serializer="raw",
        autodiscover=False,
        worker_redirect_stdouts=False,
        # Faust hands these to aiohttp's Application: the one gate in front of every route.
        web_application_options={"middlewares": [access_middleware(settings)]},
    )


def create_faust_app(settings: Settings) -> faust.App:
    app = faust.App(settings.worker_app_id, **faust_app_options(settings))
    serve_only_our_views(app)
    return app


def create_app(settings: Settings) -> WorkerContext:
    app = create_faust_app(settings)
    # Faust can lose records of the stream partitions while it takes them over after a restart.
    handover.install(app)
    # Partitions must equal the source topic's: the state agent writes each case into the partition its
    # event came from, and the query API routes by the key's partition.
    table = add_model_table(
        app,
        CASE_STATE_TABLE,
        CaseRecord,
        settings.offload_topic_partitions,
        help="CaseRecord per caseId, folded from case-events",
        store_options=store_options(settings),
    )
    changes = CaseChanges()
    worker = WorkerContext(
        settings=settings,
        app=app,
        case_events=faust_topic(app, CASE_EVENTS, settings),
        table=table,
        cases=StateWriter(settings, table, topic_name(CASE_STATE, settings), changes),
        case_changes=changes,
        offload=OffloadApi(settings),
        metrics=WorkerMetrics(app),
    )

    @app.on_before_shutdown.connect
    async def close_offload_client(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await worker.offload.aclose()

    # A task runs once the worker starts, when its logging (text or JSON) is in place.
    warnings = [text for text in (missing_key_warning(settings), open_api_warning(settings)) if text]
    if warnings:

        @app.task  # type: ignore[untyped-decorator]
        async def warn_at_start() -> None:
            for text in warnings:
                log.warning(text)

    @app.page(LIVENESS_PATH)
    class Liveness(View):
        """Liveness, open without a token: the event loop answers. Readiness is GET /ready."""

        async def get(self, request: Request) -> Response:
            return self.bytes(b'{"ok":true,"data":{"alive":true}}', content_type="application/json")

    # In this order: the metrics families appear as the features are registered.
    for feature in (state, answers, case_requests, reconcile, case_context):
        worker.features.append(feature.register(worker))
    register_metrics_view(app, worker.metrics)
    return worker
