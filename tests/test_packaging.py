"""docker-compose.yml and the Dockerfile name things that exist: the broker version, our CLI commands."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from offload_bridge.cli import build_parser
from offload_bridge.local_kafka import KAFKA_VERSION

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_kafka_image_matches_the_local_broker_version(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller", "single-node KRaft"
    assert "healthcheck" in kafka


def test_topic_init_runs_our_own_topics_create(compose: dict[str, Any]) -> None:
    # yaml.safe_load resolves the `<<: *bridge` merge.
    init = compose["services"]["topic-init"]
    assert init["command"] == ["topics", "create"]
    assert init["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert init["environment"]["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert init["build"] == "."


def test_every_service_command_is_a_real_cli_command(compose: dict[str, Any]) -> None:
    parser = build_parser()
    for name, service in compose["services"].items():
        if service.get("build") == "." and "command" in service:
            parsed = parser.parse_args(service["command"])
            assert callable(parsed.handler), name


def test_dockerfile_installs_the_project_and_runs_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["offload-bridge"\]$', dockerfile, re.MULTILINE)
    for package in ("offload_bridge", "ingress", "streams", "schemas", "simulator"):
        assert f"COPY {package} ./{package}" in dockerfile, package
    assert (ROOT / "pyproject.toml").read_text().count('offload-bridge = "offload_bridge.cli:main"') == 1


def test_services_have_health_checks_and_start_after_the_topics(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "topic-init", "ingress", "worker", "simulator"} <= set(services)
    for name in ("ingress", "worker"):
        assert services[name]["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name], name
    assert services["simulator"]["profiles"] == ["demo"]
    assert services["worker"]["environment"]["OFFLOAD_WORKER_WEB_HOST"] == "0.0.0.0"
    assert "/readyz" in " ".join(services["ingress"]["healthcheck"]["test"])
    assert "/ready" in " ".join(services["worker"]["healthcheck"]["test"])
