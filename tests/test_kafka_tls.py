"""TLS in the suite: every Kafka library the project uses goes through each TLS listener of a real broker,
and a wrong CA, a hostname mismatch or an expired client certificate stops each process at start in one line.

One broker (``tests/secure_kafka.py``) serves the module: SASL_SSL with SCRAM-SHA-512 and hostname
verification, and SSL with a client certificate whose key is encrypted, so that the key password reaches every
library too. Through each: kafka-python creates the topics (``topics create``) and publishes an answer
(``answer --wait``); librdkafka takes Offload's webhooks in the ingress; Faust and aiokafka fold them in the
worker, which forwards the answer to Offload; the exporter's confluent-kafka consumer writes the events as
Parquet.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from pydantic import HttpUrl, SecretStr

from offload_bridge.kafka.preflight import KafkaTlsError, check_tls
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import (
    DEFAULT_API_KEY,
    RunningSimulator,
    deliveries_done,
    simulator_process,
)
from offload_bridge.testing import free_port, unique_prefix
from tests.ingress_support import running_ingress
from tests.secure_kafka import CLIENT_KEY_PASSWORD, OTHER_HOST, SecureBroker, running_secure_broker
from tests.streams_support import WORKER_TOKEN, Worker, running_workers

LISTENERS = ("SASL_SSL", "SSL")
CLI_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    with running_secure_broker(tmp_path_factory.mktemp("secure-kafka")) as broker:
        yield broker


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    log_path = tmp_path_factory.mktemp("sim") / "simulator.log"
    with simulator_process("--step-ms", "100", log_path=log_path) as running:
        yield running


def _through(broker: SecureBroker, listener: str, **fields: Any) -> Settings:
    """Settings of every process, through one TLS listener, with a topic prefix of their own."""
    common = {"offload_topic_prefix": unique_prefix(listener.lower()), **fields}
    if listener == "SASL_SSL":
        return broker.sasl_ssl_settings(**common)
    client = broker.certificates.client("bridge", key_password=CLIENT_KEY_PASSWORD)
    return broker.ssl_settings(client, **common)


def _cli(
    settings: Settings, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", *args],
        env={**os.environ, **settings.as_env(), **(env or {})},
        capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )  # fmt: skip


@pytest.mark.parametrize("listener", LISTENERS)
def test_every_kafka_library_works_through_the_listener(
    secure_kafka: SecureBroker, sim: RunningSimulator, listener: str, tmp_path: Path
) -> None:
    settings = _through(
        secure_kafka,
        listener,
        offload_base_url=HttpUrl(sim.base_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        offload_worker_api_tokens=SecretStr(WORKER_TOKEN),
    )
    created = _cli(settings, "topics", "create")  # kafka-python's admin client
    assert created.returncode == 0, created.stderr
    assert "created  " in created.stdout

    worker = Worker(settings, tmp_path)
    with running_workers(worker), running_ingress(settings, tmp_path) as ingress:
        # Offload's webhooks reach the ingress, whose librdkafka producer answers 2xx once the broker acked.
        case_id = sim.create_case(
            f"{ingress.url}/webhooks/offload", scenario="input_then_complete", step_ms=100
        )
        # Faust consumed them and the fold wrote the state (aiokafka): the worker answers for the case.
        question = worker.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
        # kafka-python publishes the answer and reads its outcome; the worker's answer agent forwarded it.
        answered = worker.run_cli(
            "answer", case_id, question["inputRequest"]["id"], "Yes, over TLS.", "--wait"
        )
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip().splitlines()[-1].startswith("accepted answerId=")
        completed = worker.wait_case(case_id, lambda state: state["status"] == "COMPLETED")
    assert completed["resultStatus"] is not None
    truth = sim.wait_for_truth(case_id, deliveries_done)
    statuses = [delivery["httpStatus"] for webhook in truth["webhooks"] for delivery in webhook["deliveries"]]
    assert statuses and set(statuses) == {200}, truth["webhooks"]

    # The exporter's confluent-kafka consumer reads every event back.
    exported = _cli(settings, "export", "--to", str(tmp_path / "tables"))
    assert exported.returncode == 0, exported.stderr
    events = pq.read_table(tmp_path / "tables" / "events").to_pylist()
    mine = {row["event_type"] for row in events if row["case_id"] == case_id}
    assert {"case.input_needed", "case.completed"} <= mine


# How each process is told the wrong thing, and the one line it must answer with (broker -> settings, line).
Failure = Callable[[SecureBroker], tuple[Settings, str]]


def _wrong_ca(broker: SecureBroker) -> tuple[Settings, str]:
    settings = broker.sasl_ssl_settings(kafka_ssl_cafile=broker.certificates.other_ca)
    return settings, (
        f"KAFKA_SSL_CAFILE: the broker's certificate at {broker.sasl_ssl_bootstrap} is not signed by this CA "
        f"({broker.certificates.other_ca})"
    )


def _hostname_mismatch(broker: SecureBroker) -> tuple[Settings, str]:
    settings = broker.sasl_ssl_settings(kafka_bootstrap_servers=broker.misnamed_bootstrap)
    return settings, (
        f"hostname mismatch: the broker's certificate at {broker.misnamed_bootstrap} does not name 127.0.0.1 "
        f"(it names {OTHER_HOST}); fix KAFKA_BOOTSTRAP_SERVERS or KAFKA_SSL_CHECK_HOSTNAME"
    )


def _expired_client_certificate(broker: SecureBroker) -> tuple[Settings, str]:
    expired = broker.certificates.expired_client("bridge")
    settings = broker.ssl_settings(expired)
    return settings, (
        f"KAFKA_SSL_CERTFILE: the client certificate expired on 2024-02-01 00:00 UTC ({expired.certfile}); "
        "renew it"
    )


FAILURES: dict[str, Failure] = {
    "wrong CA": _wrong_ca,
    "hostname mismatch": _hostname_mismatch,
    "expired client certificate": _expired_client_certificate,
}
# Each long-running process and a CLI command as the shipped stacks start them (PORT and DIR filled in).
COMMANDS = {
    "ingress": ["ingress", "--port", "PORT"],
    "worker": ["worker"],
    "exporter": ["export", "--to", "DIR", "--follow"],
    "cli": ["topics", "create"],
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_tls_setting_stops_the_process_at_start_in_one_line(
    secure_kafka: SecureBroker, command: str, failure: str, tmp_path: Path
) -> None:
    settings, line = FAILURES[failure](secure_kafka)
    filled = {"PORT": str(free_port()), "DIR": str(tmp_path / "tables")}
    args = [filled.get(arg, arg) for arg in COMMANDS[command]]
    env = {
        "OFFLOAD_TOPIC_PREFIX": unique_prefix("tls-fail"),
        "OFFLOAD_WORKER_WEB_PORT": str(free_port()),
        "OFFLOAD_WORKER_DATA_DIR": str(tmp_path / "worker-data"),
        "OFFLOAD_EXPORT_METRICS_PORT": "0",
    }
    # A hang would end in the timeout of _cli, a failure of this test.
    result = _cli(settings, *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.splitlines() == [f"offload-bridge: {line}"]
    assert result.stdout == ""


def _raised(settings: Settings) -> str:
    with pytest.raises(KafkaTlsError) as raised:
        check_tls(settings)
    return str(raised.value)


def test_a_client_certificate_the_broker_does_not_trust_is_named(secure_kafka: SecureBroker) -> None:
    foreign = secure_kafka.certificates.client("bridge", other_ca=True)
    assert _raised(secure_kafka.ssl_settings(foreign)) == (
        f"KAFKA_SSL_CERTFILE: the broker at {secure_kafka.ssl_bootstrap} refused the client certificate "
        f"(sslv3_alert_certificate_unknown): is {foreign.certfile} signed by a CA the broker trusts, and in "
        "date?"
    )
    good = secure_kafka.certificates.client("bridge")
    no_certificate = secure_kafka.ssl_settings(good, kafka_ssl_certfile=None, kafka_ssl_keyfile=None)
    assert _raised(no_certificate) == (
        f"KAFKA_SSL_CERTFILE: the broker at {secure_kafka.ssl_bootstrap} requires a client certificate; set "
        "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
    )


def test_key_problems_name_the_key_settings(secure_kafka: SecureBroker) -> None:
    locked = secure_kafka.certificates.client("locked", key_password=CLIENT_KEY_PASSWORD)
    wrong = secure_kafka.ssl_settings(locked, kafka_ssl_key_password=SecretStr("not-the-password"))
    assert _raised(wrong) == f"KAFKA_SSL_KEY_PASSWORD: it does not decrypt the key in {locked.keyfile}"
    missing = secure_kafka.ssl_settings(locked, kafka_ssl_key_password=None)
    assert (
        _raised(missing)
        == f"KAFKA_SSL_KEY_PASSWORD: the key in {locked.keyfile} is encrypted; set its password"
    )
    other_key = secure_kafka.certificates.client("other").keyfile
    mismatched = secure_kafka.ssl_settings(locked, kafka_ssl_keyfile=other_key)
    assert _raised(mismatched) == (
        f"KAFKA_SSL_KEYFILE: the key in {other_key} does not belong to the certificate in {locked.certfile}"
    )


def test_the_ca_file_and_the_listener_kind_are_named(secure_kafka: SecureBroker) -> None:
    not_a_ca = secure_kafka.certificates.directory / "ca.key"
    assert _raised(secure_kafka.sasl_ssl_settings(kafka_ssl_cafile=not_a_ca)).startswith(
        f"KAFKA_SSL_CAFILE: {not_a_ca} holds no PEM certificate"
    )
    assert _raised(secure_kafka.sasl_ssl_settings(kafka_ssl_cafile=None)) == (
        f"KAFKA_SSL_CAFILE: the broker's certificate at {secure_kafka.sasl_ssl_bootstrap} is not signed by a "
        "CA this system trusts; set KAFKA_SSL_CAFILE to your cluster's CA certificate (PEM)"
    )
    plaintext = secure_kafka.sasl_ssl_settings(kafka_bootstrap_servers=secure_kafka.bootstrap)
    assert _raised(plaintext).startswith(
        f"KAFKA_SECURITY_PROTOCOL=SASL_SSL: {secure_kafka.bootstrap} does not complete a TLS handshake ("
    )


def test_what_is_right_passes(secure_kafka: SecureBroker) -> None:
    check_tls(secure_kafka.sasl_ssl_settings())
    # The certificate's DNS name, not only its IP address.
    check_tls(
        secure_kafka.sasl_ssl_settings(kafka_bootstrap_servers=f"localhost:{secure_kafka.sasl_ssl_port}")
    )
    check_tls(secure_kafka.ssl_settings(secure_kafka.certificates.client("bridge")))
    # A server that does not answer is not a TLS question: the libraries wait for it and say so.
    check_tls(secure_kafka.sasl_ssl_settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}"))


def test_without_hostname_verification_the_misnamed_listener_is_accepted(secure_kafka: SecureBroker) -> None:
    settings = secure_kafka.sasl_ssl_settings(
        kafka_bootstrap_servers=secure_kafka.misnamed_bootstrap,
        kafka_ssl_check_hostname=False,
        offload_topic_prefix=unique_prefix("tls-nohost"),
    )
    check_tls(settings)
    created = _cli(settings, "topics", "create")
    assert created.returncode == 0, created.stderr
