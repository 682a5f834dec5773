"""The local broker: start, status, stop, no-op restarts, and nothing local for an external cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from offload_bridge.kafka.connection import metadata_ok
from offload_bridge.kafka.local_broker import LocalBroker, _cluster_id
from offload_bridge.settings import Settings
from offload_bridge.testing import free_port


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", *args],
        env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _java_processes_using(config: Path) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if "kafka.Kafka" in cmdline and str(config) in cmdline:
                found.append(entry.name)
    return found


def test_session_broker_survives_a_second_start(kafka_broker: str) -> None:
    settings = Settings(kafka_bootstrap_servers=kafka_broker)
    if settings.uses_external_kafka:
        return
    broker = LocalBroker.from_settings(settings)
    assert broker.start() is False, "start on a running broker must be a no-op"
    assert metadata_ok(kafka_broker)
    assert _cli("kafka", "start").returncode == 0
    status = _cli("kafka", "status")
    assert status.returncode == 0 and "up" in status.stdout


def test_status_is_nonzero_when_down() -> None:
    result = _cli("kafka", "status", "--port", str(free_port()))
    assert result.returncode == 1
    assert "down" in result.stdout


def test_start_status_stop_of_a_second_broker_leaves_no_process(kafka_broker: str, tmp_path: Path) -> None:
    shared = LocalBroker.from_settings(Settings())
    shared.fetch()
    home = tmp_path / "kafka"
    home.mkdir()
    (home / "libs").symlink_to(shared.libs_dir)
    port, controller = free_port(), free_port()
    env = {
        "OFFLOAD_KAFKA_DIR": str(home),
        "OFFLOAD_KAFKA_PORT": str(port),
        "OFFLOAD_KAFKA_CONTROLLER_PORT": str(controller),
        "KAFKA_BOOTSTRAP_SERVERS": "",
    }
    broker = LocalBroker(home, port, controller)
    try:
        started = _cli("kafka", "start", env=env)
        assert started.returncode == 0, started.stderr
        assert "started" in started.stdout
        assert (home / "data" / "meta.properties").exists(), "storage is formatted on first start"
        assert (home / "logs" / "server.log").exists(), "the broker logs under its home"
        assert metadata_ok(f"127.0.0.1:{port}")
        assert "already running" in _cli("kafka", "start", env=env).stdout
        assert _cli("kafka", "status", env=env).returncode == 0

        stopped = _cli("kafka", "stop", env=env)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert _java_processes_using(broker.config_path) == []
        assert _cli("kafka", "status", env=env).returncode == 1
        assert "no local Kafka broker" in _cli("kafka", "stop", env=env).stdout
    finally:
        broker.stop(grace_s=5)


def test_external_cluster_starts_nothing_locally(tmp_path: Path) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kafka.example.internal:9092", "OFFLOAD_KAFKA_DIR": str(tmp_path)}
    result = _cli("kafka", "start", env=env)
    assert result.returncode == 0
    assert "nothing local" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_cluster_ids_never_look_like_an_option() -> None:
    # urlsafe base64 starts with "-" for one uuid in 64; the storage tool then refuses to format.
    ids = {_cluster_id() for _ in range(5000)}
    assert len(ids) == 5000
    assert not [cluster_id for cluster_id in ids if cluster_id.startswith("-") or len(cluster_id) != 22]
