"""Thin factories for the kafka-python clients the project makes, so connection settings live in one place."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from offload_bridge.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnreachable(RuntimeError):
    """No broker answered a metadata request in time."""


def connection_options(settings: Settings) -> dict[str, Any]:
    """Options besides bootstrap_servers shared by every kafka-python client the project makes."""
    return {}


def bootstrap_list(settings: Settings) -> list[str]:
    return settings.bootstrap_servers.split(",")


def connect_admin(bootstrap_servers: str, timeout_s: float = 10.0, **options: Any) -> KafkaAdminClient:
    """An admin client whose bootstrap already succeeded, or KafkaUnreachable with a one-line reason."""
    timeout_ms = max(int(timeout_s * 1000), 1000)
    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap_servers.split(","),
            request_timeout_ms=timeout_ms,
            bootstrap_timeout_ms=timeout_ms,
            client_id="offload-bridge-admin",
            **options,
        )
    except (KafkaError, OSError, ValueError) as error:
        raise KafkaUnreachable(
            f"Kafka at {bootstrap_servers} is unreachable ({type(error).__name__}: {error})"
        ) from None


def admin_for(settings: Settings, timeout_s: float = 10.0) -> KafkaAdminClient:
    return connect_admin(settings.bootstrap_servers, timeout_s, **connection_options(settings))


def metadata_ok(bootstrap_servers: str, timeout_s: float = 2.0) -> bool:
    """True when a broker at the address answers a metadata request."""
    try:
        admin = connect_admin(bootstrap_servers, timeout_s)
    except KafkaUnreachable:
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError) as error:
        log.debug("metadata request to %s failed: %s", bootstrap_servers, error)
        return False
    finally:
        admin.close()
