"""Retention and the other declared topic configs, as Kafka's own Java admin client reads them: what
`topics create` sets, what `topics check` reports on topics made otherwise, what `topics apply` changes
and what it refuses to shorten."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.settings import DAY_MS, Settings
from offload_bridge.testing import free_port
from offload_bridge.topics import (
    ALL_TOPICS,
    ANSWERS_RETRY,
    CASE_EVENTS,
    CASE_STATE,
    HISTORY,
    topic_name,
)
from tests.kafka_java import java_create_topic, java_topic_configs

# What the design asks of each topic, written out by hand rather than read from the registry, so a
# registry that loses a config fails here.
HISTORY_TOPICS = {
    "case-events",
    "case-events.invalid",
    "answers",
    "answer-outcomes",
    "case-requests",
    "case-request-outcomes",
    "case-watch",
}
RETRY_TOPICS = {"answers.retry", "case-requests.retry"}
DLQ_TOPICS = {"answers.dlq", "case-requests.dlq", "case-watch.dlq"}
FOURTEEN_DAYS = str(14 * DAY_MS)
WEBHOOK_RECORD_LIMIT = str(2 * 1024 * 1024 + 64 * 1024)
SHORTER = "--allow-shorter-retention"


def _cli(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OFFLOAD_TOPIC_PREFIX": settings.offload_topic_prefix,
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "topics", *args],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _java(settings: Settings, *names: str) -> dict[str, dict[str, str]]:
    """The configs of topics by their names without prefix, read by Kafka's Java admin client."""
    full = [f"{settings.offload_topic_prefix}{name}" for name in names]
    read = java_topic_configs(settings, full)
    return {name: read[topic] for name, topic in zip(names, full, strict=True)}


def test_the_registry_declares_the_retention_the_design_asks_for() -> None:
    assert {spec.name for spec in ALL_TOPICS if spec.retention is HISTORY} == HISTORY_TOPICS
    assert HISTORY_TOPICS | RETRY_TOPICS | DLQ_TOPICS | {"case-state"} == {spec.name for spec in ALL_TOPICS}


def test_create_sets_every_declared_config_as_kafkas_admin_reads_it(topics: Settings) -> None:
    every = [spec.name for spec in ALL_TOPICS]
    read = _java(topics, *every)

    for name in HISTORY_TOPICS | DLQ_TOPICS:
        assert (read[name]["cleanup.policy"], read[name]["retention.ms"]) == ("delete", "-1"), name
    for name in RETRY_TOPICS:
        assert (read[name]["cleanup.policy"], read[name]["retention.ms"]) == ("delete", FOURTEEN_DAYS), name
    assert read["case-state"]["cleanup.policy"] == "compact"
    for name in ("case-events", "case-events.invalid"):
        assert read[name]["max.message.bytes"] == WEBHOOK_RECORD_LIMIT, name
    for spec in ALL_TOPICS:  # and nothing the registry declares is missing from the broker
        declared = spec.config(topics)
        assert {key: read[spec.name][key] for key in declared} == declared, spec.name


def test_the_history_setting_bounds_the_history_topics_only(settings: Settings) -> None:
    bounded = settings.model_copy(update={"offload_history_retention_ms": 30 * DAY_MS})
    ensure_topics(bounded)
    read = _java(bounded, *(spec.name for spec in ALL_TOPICS))

    assert {name: read[name]["retention.ms"] for name in HISTORY_TOPICS} == dict.fromkeys(
        HISTORY_TOPICS, str(30 * DAY_MS)
    )
    assert {name: read[name]["retention.ms"] for name in RETRY_TOPICS} == dict.fromkeys(
        RETRY_TOPICS, FOURTEEN_DAYS
    )
    assert {name: read[name]["retention.ms"] for name in DLQ_TOPICS} == dict.fromkeys(DLQ_TOPICS, "-1")
    assert read["case-state"]["cleanup.policy"] == "compact"


def test_check_reports_drift_and_apply_aligns_it_leaving_other_configs_alone(settings: Settings) -> None:
    # Made by Kafka's own admin client the way a cluster's defaults or someone's choice would have them:
    # case-events with the broker's 7-day retention and 1 MiB record limit, answers.retry keeping an
    # hour, both with a segment.ms the registry says nothing about.
    retry, events = topic_name(ANSWERS_RETRY, settings), topic_name(CASE_EVENTS, settings)
    java_create_topic(settings, retry, 6, {"retention.ms": "3600000", "segment.ms": "7200000"})
    java_create_topic(
        settings, events, 6,
        {"retention.ms": str(7 * DAY_MS), "max.message.bytes": "1048588", "segment.ms": "7200000"},
    )  # fmt: skip
    ensure_topics(settings)

    check = _cli(settings, "check")
    assert check.returncode == 1, check.stdout + check.stderr
    drifts = [line for line in check.stdout.splitlines() if line.startswith("drift")]
    assert sorted(drifts) == sorted(
        [
            f"drift    {events} retention.ms is {7 * DAY_MS} (7 days), the registry says -1 (forever)",
            f"drift    {events} max.message.bytes is 1048588, the registry says {WEBHOOK_RECORD_LIMIT}",
            f"drift    {retry} retention.ms is 3600000 (1 hour), the registry says {FOURTEEN_DAYS} (14 days)",
        ]
    )
    assert "offload-bridge topics apply" in check.stdout

    applied = _cli(settings, "apply")  # every change keeps more: no flag needed
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert applied.stdout.count("applied  ") == 3

    read = _java(settings, "case-events", "answers.retry")
    assert read["case-events"]["retention.ms"] == "-1"
    assert read["case-events"]["max.message.bytes"] == WEBHOOK_RECORD_LIMIT
    assert read["answers.retry"]["retention.ms"] == FOURTEEN_DAYS
    assert read["case-events"]["segment.ms"] == read["answers.retry"]["segment.ms"] == "7200000"
    again = _cli(settings, "check")
    assert again.returncode == 0, again.stdout
    assert "every topic matches the registry" in again.stdout


def test_apply_refuses_to_shorten_without_the_flag(settings: Settings) -> None:
    # answers.retry keeps everything (the registry says 14 days); case-events keeps everything too, and
    # its record limit is the broker's 1 MiB.
    retry, events = topic_name(ANSWERS_RETRY, settings), topic_name(CASE_EVENTS, settings)
    java_create_topic(settings, retry, 6, {"retention.ms": "-1"})
    java_create_topic(settings, events, 6, {"retention.ms": "-1", "max.message.bytes": "1048588"})
    ensure_topics(settings)
    bound = {"OFFLOAD_HISTORY_RETENTION_MS": str(30 * DAY_MS)}  # shorter than every history topic's -1

    refused = _cli(settings, "apply", **bound)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    lines = refused.stderr.strip().splitlines()
    history = sorted(f"{settings.offload_topic_prefix}{name}" for name in HISTORY_TOPICS)
    assert sorted(line.split()[1].rstrip(":") for line in lines) == sorted([*history, retry])
    assert all(line.startswith("refused  ") and SHORTER in line for line in lines), lines
    assert f"refused  {retry}: retention.ms -1 (forever) -> {FOURTEEN_DAYS} (14 days) keeps less;" in [
        line[: line.index(";") + 1] for line in lines
    ]
    # Nothing shortened; the change that shortens nothing on the same topic went through.
    read = _java(settings, "case-events", "answers", "answers.retry")
    assert read["case-events"]["retention.ms"] == read["answers"]["retention.ms"] == "-1"
    assert read["answers.retry"]["retention.ms"] == "-1"
    assert read["case-events"]["max.message.bytes"] == WEBHOOK_RECORD_LIMIT
    check = _cli(settings, "check", **bound)
    assert check.returncode == 1 and check.stdout.count(f"(shorter: apply needs {SHORTER})") == 8

    allowed = _cli(settings, "apply", SHORTER, **bound)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    read = _java(settings, "case-events", "answers", "answers.retry", "answers.dlq")
    assert read["case-events"]["retention.ms"] == read["answers"]["retention.ms"] == str(30 * DAY_MS)
    assert read["answers.retry"]["retention.ms"] == FOURTEEN_DAYS
    assert read["answers.dlq"]["retention.ms"] == "-1"
    assert _cli(settings, "check", **bound).returncode == 0


def test_create_leaves_an_existing_topic_as_it_is_and_names_the_fix(settings: Settings) -> None:
    retry = topic_name(ANSWERS_RETRY, settings)
    java_create_topic(settings, retry, 6, {"retention.ms": "3600000"})

    created = _cli(settings, "create")
    assert created.returncode == 0, created.stderr
    assert f"exists   {retry}" in created.stdout
    assert f"drift    {retry} retention.ms is 3600000 (1 hour), the registry says" in created.stdout
    assert "`offload-bridge topics apply` aligns them" in created.stdout
    assert _java(settings, "answers.retry")["answers.retry"]["retention.ms"] == "3600000"


def test_a_change_the_broker_refuses_fails_in_one_line(settings: Settings) -> None:
    # A registry asking for a value Kafka does not take (a negative record limit) stands in for any
    # refusal (an authorizer saying no): the broker's own answer, in one line.
    ensure_topics(settings, [CASE_STATE])
    probe = (
        "import dataclasses, sys, offload_bridge.topics as topics;"
        "bad = dataclasses.replace(topics.CASE_STATE, extra_config={'max.message.bytes': '-5'});"
        "topics.ALL_TOPICS = (bad,);"
        "from offload_bridge.cli import main;"
        "sys.exit(main(['topics', 'apply']))"
    )
    environment = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OFFLOAD_TOPIC_PREFIX": settings.offload_topic_prefix,
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], env=environment, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert topic_name(CASE_STATE, settings) in lines[0] and "max.message.bytes" in lines[0], lines[0]


@pytest.mark.parametrize("action", ["check", "apply"])
def test_an_unreachable_broker_fails_in_one_line(action: str) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "topics", action],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0], result.stderr
