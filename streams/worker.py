"""Run the streams worker in the foreground until SIGTERM/SIGINT."""

from __future__ import annotations

from typing import Any

from offload_bridge.kafka.admin import ensure_changelog_topics, ensure_topics
from offload_bridge.logs import logging_dict
from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, topic_name


class WorkerSetupError(RuntimeError):
    """The worker cannot start as configured; the message says why in one line."""


def prepare_topics(settings: Settings) -> None:
    """Create every missing topic before Faust subscribes (an agent on a missing topic consumes nothing).

    Raises KafkaUnreachable, TopicCreationFailed or WorkerSetupError.
    """
    report = ensure_topics(settings, ALL_TOPICS)
    caseid_keyed = {topic_name(spec, settings) for spec in ALL_TOPICS if spec.key == "caseId"}
    wrong = {name: n for name, n in report.mismatched.items() if name in caseid_keyed}
    if wrong:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise WorkerSetupError(
            f"caseId-keyed topics must have OFFLOAD_TOPIC_PARTITIONS={settings.offload_topic_partitions} "
            f"partitions for the case-state table to be co-partitioned: {listed}"
        )


def run_worker(settings: Settings) -> int:
    """Blocks until the worker is stopped; returns the process exit code."""
    prepare_topics(settings)
    from offload_bridge.streams.app import create_app

    # Faust creates only the last level of its data directory.
    settings.worker_data_path.parent.mkdir(parents=True, exist_ok=True)
    return run_faust_app(create_app(settings).app, settings)


def run_faust_app(app: Any, settings: Settings) -> int:
    """Run a built Faust app in the foreground, as the worker runs (its tables' changelog topics made
    first); returns the process exit code."""
    import faust

    ensure_changelog_topics(
        settings, (table.changelog_topic.get_topic_name() for table in app.tables.values())
    )
    level = settings.offload_worker_log_level.upper()
    worker = faust.Worker(app, loglevel=level, logging_config=logging_dict(settings, level))
    # At WARNING and above Faust drives a terminal spinner by lowering the root logger to DEBUG, which
    # builds a log record for every Kafka request: a third of the fold's time.
    worker.spinner = None
    try:
        worker.execute_from_commandline()
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else 1
    return 0
