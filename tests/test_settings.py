"""Settings: defaults, and a clear error naming the variable for every bad value."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from offload_bridge.settings import DAY_MS, Settings, SettingsError, load_settings
from offload_bridge.simulator.settings import SimulatorSettings


def clear_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "OFFLOAD_")):
            monkeypatch.delenv(name)


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    settings = load_settings()
    assert settings.offload_topic_prefix == "offload."
    assert settings.offload_topic_partitions == 6
    assert settings.offload_topic_replication == 1
    assert settings.bootstrap_servers == "127.0.0.1:9092"
    assert settings.uses_external_kafka is False
    assert settings.offload_worker_store == "rocksdb://"


def test_workers_of_one_machine_keep_their_tables_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_environment(monkeypatch)
    # Same OFFLOAD_WORKER_DATA_DIR, different ports: each worker gets its own directory (a RocksDB is
    # locked by the process that opened it), and a restarted worker finds its own again.
    one, two = (Settings(offload_worker_web_port=port) for port in (6066, 6067))
    assert one.worker_data_path != two.worker_data_path
    assert one.worker_data_path.parent == two.worker_data_path.parent == Path("worker-data/offload.streams")
    assert Settings(offload_worker_web_port=6066).worker_data_path == one.worker_data_path
    pinned = Settings(offload_worker_instance_id="worker-0", offload_worker_data_dir=Path("/data"))
    assert pinned.worker_data_path == Path("/data/offload.streams/worker-0")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("OFFLOAD_TOPIC_PARTITIONS", "six"),
        ("OFFLOAD_TOPIC_PARTITIONS", "0"),
        ("OFFLOAD_TOPIC_REPLICATION", "-1"),
        ("KAFKA_BOOTSTRAP_SERVERS", "broker-without-port"),
        ("OFFLOAD_BASE_URL", "not a url"),
        ("OFFLOAD_TOPIC_PREFIX", "bad prefix/"),
        ("OFFLOAD_WORKER_INSTANCE_ID", "worker 1"),
        ("OFFLOAD_WORKER_INSTANCE_ID", "w" * 250),
        ("OFFLOAD_WORKER_SESSION_TIMEOUT_S", "5"),
        ("OFFLOAD_WORKER_SESSION_TIMEOUT_S", "120"),
        ("OFFLOAD_WORKER_STANDBY_REPLICAS", "-1"),
        ("OFFLOAD_HISTORY_RETENTION_MS", "forever"),
        ("OFFLOAD_HISTORY_RETENTION_MS", "0"),
        ("OFFLOAD_HISTORY_RETENTION_MS", "-2"),
        ("OFFLOAD_HISTORY_RETENTION_MS", "86400000"),  # a day: shorter than the worker outage we survive
        ("OFFLOAD_HISTORY_RETENTION_MS", str(2**63)),  # beyond Kafka's long
    ],
)
def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert variable in str(caught.value)
    assert value in str(caught.value)


def test_history_retention_is_forever_unless_bounded_to_a_week_or_more(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clear_environment(monkeypatch)
    assert load_settings().offload_history_retention_ms == -1
    for accepted in (7 * DAY_MS, 400 * DAY_MS, -1):
        monkeypatch.setenv("OFFLOAD_HISTORY_RETENTION_MS", str(accepted))
        assert load_settings().offload_history_retention_ms == accepted
    monkeypatch.setenv("OFFLOAD_HISTORY_RETENTION_MS", str(7 * DAY_MS - 1))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "OFFLOAD_HISTORY_RETENTION_MS" in str(caught.value)
    assert "expected -1 (forever) or at least 604800000 ms (7 days" in str(caught.value)


def test_secret_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    error_text = ""
    monkeypatch.setenv("OFFLOAD_TOPIC_PARTITIONS", "x")
    monkeypatch.setenv("OFFLOAD_API_KEY", "sk-very-secret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    error_text = str(caught.value)
    assert "sk-very-secret" not in error_text


def test_cli_reports_bad_setting_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "kafka", "status"],
        env={"OFFLOAD_TOPIC_PARTITIONS": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0
    assert "OFFLOAD_TOPIC_PARTITIONS" in result.stderr


@pytest.mark.parametrize(
    ("bootstrap", "external"),
    [
        (None, False),
        ("127.0.0.1:9092", False),
        ("localhost:9092", False),
        ("kafka.internal:9092", True),
        ("127.0.0.1:9092,kafka-2.internal:9092", True),
        ("127.0.0.1:19092", True),
    ],
)
def test_external_cluster_detection(bootstrap: str | None, external: bool) -> None:
    settings = Settings(kafka_bootstrap_servers=bootstrap, offload_kafka_port=9092)
    assert settings.uses_external_kafka is external


def test_worker_group_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "OFFLOAD_")):
            monkeypatch.delenv(name)
    settings = load_settings()
    assert settings.offload_worker_session_timeout_s == 15.0
    assert settings.offload_worker_standby_replicas == 1
    assert settings.worker_instance_id == "worker-127.0.0.1-6066"


@pytest.mark.parametrize(
    ("overrides", "instance_id"),
    [
        ({"offload_worker_web_port": 6067}, "worker-127.0.0.1-6067"),
        ({"offload_worker_url": "http://worker-2.workers.svc:6066/"}, "worker-worker-2.workers.svc-6066"),
        ({"offload_worker_url": "http://[::1]:7000"}, "worker-1-7000"),
        ({"offload_worker_instance_id": "eu-worker-0", "offload_worker_web_port": 6067}, "eu-worker-0"),
    ],
)
def test_worker_instance_id_is_stable_per_worker_address(
    overrides: dict[str, object], instance_id: str
) -> None:
    settings = Settings.model_validate(overrides)
    assert settings.worker_instance_id == instance_id
    # The broker accepts only these characters in group.instance.id.
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,249}", settings.worker_instance_id)


@pytest.mark.parametrize("model", [Settings, SimulatorSettings], ids=lambda model: model.__name__)
def test_every_setting_says_what_it_does(model: type[BaseSettings]) -> None:
    # The docs' settings reference is generated from these descriptions: a setting without one would be a
    # row that says nothing.
    undescribed = [
        name for name, field in model.model_fields.items() if not (field.description or "").strip()
    ]
    assert undescribed == [], f"settings without Field(description=...): {undescribed}"
