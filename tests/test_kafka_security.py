"""Kafka security settings reach the clients: a local broker with a SASL listener, PLAIN and SCRAM."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.local_broker import LocalBroker
from offload_bridge.settings import Settings, SettingsError, load_settings
from offload_bridge.testing import consume, free_port, produce, unique_prefix
from offload_bridge.topics import ANSWERS
from tests.ingress_support import JSON, running_ingress
from tests.streams_support import SEED_COMPLETED, Worker, running_workers

USERS = (("admin", "admin-secret"), ("bridge", "bridge-secret"))


@pytest.fixture(scope="module")
def sasl_broker(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    shared = LocalBroker.from_settings(Settings())
    shared.fetch()
    home = tmp_path_factory.mktemp("sasl-kafka")
    (home / "libs").symlink_to(shared.libs_dir)
    broker = LocalBroker(home, free_port(), free_port(), heap="384m", sasl_users=USERS)
    broker.start(timeout_s=120)
    try:
        yield broker
    finally:
        broker.stop()


def _env(broker: LocalBroker, mechanism: str, password: str) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap,
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": mechanism,
        "KAFKA_SASL_USERNAME": "bridge",
        "KAFKA_SASL_PASSWORD": password,
        "OFFLOAD_TOPIC_PREFIX": unique_prefix("sasl"),
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_cli_and_clients_authenticate(sasl_broker: LocalBroker, mechanism: str) -> None:
    env = _env(sasl_broker, mechanism, "bridge-secret")
    created = _cli(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert "created  " in created.stdout
    assert _cli(env, "kafka", "status").returncode == 0

    settings = Settings(
        kafka_bootstrap_servers=sasl_broker.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,  # type: ignore[arg-type]
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr("bridge-secret"),
        offload_topic_prefix=env["OFFLOAD_TOPIC_PREFIX"],
    )
    produce(settings, ANSWERS, b"through SASL", key=b"case-1")
    assert [record.value for record in consume(settings, ANSWERS, 1)] == [b"through SASL"]


def test_a_wrong_password_fails_in_one_line(sasl_broker: LocalBroker) -> None:
    result = _cli(_env(sasl_broker, "SCRAM-SHA-256", "not-the-password"), "topics", "create")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not-the-password" not in result.stderr + result.stdout


def test_plaintext_clients_are_refused(sasl_broker: LocalBroker) -> None:
    settings = Settings(kafka_bootstrap_servers=sasl_broker.bootstrap, offload_topic_prefix=unique_prefix())
    with pytest.raises(Exception):  # noqa: B017 - any failure will do: nothing may get through
        ensure_topics(settings)


def test_sasl_without_credentials_is_a_settings_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.delenv("KAFKA_SASL_USERNAME", raising=False)
    with pytest.raises(SettingsError, match="KAFKA_SASL_USERNAME"):
        load_settings()
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("KAFKA_SSL_CAFILE", str(tmp_path / "missing-ca.pem"))
    with pytest.raises(SettingsError, match=r"missing-ca\.pem"):
        load_settings()


def test_ingress_and_worker_run_through_sasl(sasl_broker: LocalBroker, tmp_path: Path) -> None:
    settings = Settings(
        kafka_bootstrap_servers=sasl_broker.bootstrap,
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr("bridge-secret"),
        offload_topic_prefix=unique_prefix("sasl"),
    )
    ensure_topics(settings)
    worker = Worker(settings, tmp_path)
    with running_workers(worker), running_ingress(settings, tmp_path) as ingress:
        posted = httpx.post(
            f"{ingress.url}/webhooks/offload", content=SEED_COMPLETED, headers=JSON, timeout=30
        )
        assert posted.status_code == 200, posted.text
        state = worker.wait_case("case_123", lambda case: case["status"] == "COMPLETED")
    assert state["resultStatus"] == "goal_achieved"
    logs = "".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    assert "bridge-secret" not in logs
