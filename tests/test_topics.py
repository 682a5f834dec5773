"""`topics create` against the real broker."""

from __future__ import annotations

import subprocess
import sys

from kafka.admin import ConfigResource, ConfigResourceType

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.connection import admin_for
from offload_bridge.settings import Settings
from offload_bridge.testing import free_port
from offload_bridge.topics import ALL_TOPICS, CASE_EVENTS, CASE_STATE, topic_name


def _topic_config(settings: Settings, name: str) -> dict[str, str]:
    admin = admin_for(settings)
    try:
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        entries: dict[str, dict[str, object]] = described["topic"][name]
        return {key: str(entry["value"]) for key, entry in entries.items()}
    finally:
        admin.close()


def test_create_makes_every_topic_then_is_idempotent(settings: Settings) -> None:
    every = sorted(topic_name(spec, settings) for spec in ALL_TOPICS)

    first = ensure_topics(settings)
    second = ensure_topics(settings)

    assert first.created == every and first.existing == []
    assert second.created == [] and second.existing == every
    assert second.mismatched == {}


def test_partitions_and_replication_come_from_settings(settings: Settings) -> None:
    settings = settings.model_copy(update={"offload_topic_partitions": 3})
    ensure_topics(settings)
    admin = admin_for(settings)
    try:
        described = admin.describe_topics([topic_name(spec, settings) for spec in ALL_TOPICS])
    finally:
        admin.close()
    assert len(described) == len(ALL_TOPICS)
    for topic in described:
        assert len(topic["partitions"]) == 3, topic["name"]
        assert all(len(p["replica_nodes"]) == 1 for p in topic["partitions"])


def test_case_state_is_compacted_and_case_events_is_not(topics: Settings) -> None:
    assert _topic_config(topics, topic_name(CASE_STATE, topics))["cleanup.policy"] == "compact"
    assert _topic_config(topics, topic_name(CASE_EVENTS, topics))["cleanup.policy"] == "delete"


def test_existing_topic_with_other_partition_count_is_reported(settings: Settings) -> None:
    ensure_topics(settings.model_copy(update={"offload_topic_partitions": 2}))
    report = ensure_topics(settings)
    assert report.created == []
    assert report.mismatched == {topic_name(spec, settings): 2 for spec in ALL_TOPICS}


def test_cli_prints_created_then_existing(settings: Settings, tmp_path: object) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OFFLOAD_TOPIC_PREFIX": settings.offload_topic_prefix,
    }
    command = [sys.executable, "-m", "offload_bridge.cli", "topics", "create"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout.count("created  ") == len(ALL_TOPICS)
    assert second.stdout.count("exists   ") == len(ALL_TOPICS)
    assert f"created  {settings.offload_topic_prefix}case-state" in first.stdout


def test_cli_unreachable_broker_fails_with_one_line() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "topics", "create"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], result.stderr
