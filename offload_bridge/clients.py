"""Thin factories for the kafka-python clients the project makes, so connection settings live in one place."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from offload_bridge.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnreachable(RuntimeError):
    """No broker answered a metadata request in time."""


def connection_options(settings: Settings) -> dict[str, Any]:
    """Options besides bootstrap_servers shared by every kafka-python client the project makes."""
    options: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    if settings.kafka_security_protocol.endswith("SSL"):
        key_password = settings.kafka_ssl_key_password
        options["ssl_check_hostname"] = settings.kafka_ssl_check_hostname
        options["ssl_cafile"] = _path(settings.kafka_ssl_cafile)
        options["ssl_certfile"] = _path(settings.kafka_ssl_certfile)
        options["ssl_keyfile"] = _path(settings.kafka_ssl_keyfile)
        options["ssl_password"] = key_password.get_secret_value() if key_password else None
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of aiokafka and Faust clients, or None without SSL."""
    if not settings.kafka_security_protocol.endswith("SSL"):
        return None
    key_password = settings.kafka_ssl_key_password
    context = ssl.create_default_context(cafile=_path(settings.kafka_ssl_cafile))
    if settings.kafka_ssl_certfile is not None:
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile),
            _path(settings.kafka_ssl_keyfile),
            key_password.get_secret_value() if key_password else None,
        )
    context.check_hostname = settings.kafka_ssl_check_hostname
    return context


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Connection options of aiokafka clients the project makes besides Faust's own."""
    options: dict[str, Any] = {
        "bootstrap_servers": bootstrap_list(settings),
        "security_protocol": settings.kafka_security_protocol,
        "ssl_context": ssl_context(settings),
    }
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    return options


def librdkafka_options(settings: Settings) -> dict[str, str]:
    """Security options of librdkafka clients (confluent-kafka), by librdkafka's own names."""
    options = {"security.protocol": settings.kafka_security_protocol.lower()}
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        options["sasl.mechanisms"] = settings.kafka_sasl_mechanism
        options["sasl.username"] = settings.kafka_sasl_username or ""
        options["sasl.password"] = password.get_secret_value() if password else ""
    if settings.kafka_security_protocol.endswith("SSL"):
        for name, path in (
            ("ssl.ca.location", settings.kafka_ssl_cafile),
            ("ssl.certificate.location", settings.kafka_ssl_certfile),
            ("ssl.key.location", settings.kafka_ssl_keyfile),
        ):
            if path is not None:
                options[name] = str(path)
        if settings.kafka_ssl_key_password is not None:
            options["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
        options["ssl.endpoint.identification.algorithm"] = (
            "https" if settings.kafka_ssl_check_hostname else "none"
        )
    return options


def faust_credentials(settings: Settings) -> Any:
    """``broker_credentials`` for the Faust app, or None for PLAINTEXT."""
    import faust

    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = ssl_context(settings)
    if protocol == "SSL":
        return faust.SSLCredentials(context)
    password = settings.kafka_sasl_password
    return faust.SASLCredentials(
        username=settings.kafka_sasl_username,
        password=password.get_secret_value() if password else None,
        mechanism=settings.kafka_sasl_mechanism,
        ssl_context=context,
    )


def _path(path: Path | None) -> str | None:
    return str(path) if path is not None else None


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


def metadata_ok(bootstrap_servers: str, timeout_s: float = 2.0, **options: Any) -> bool:
    """True when a broker at the address answers a metadata request (``options``: security)."""
    try:
        admin = connect_admin(bootstrap_servers, timeout_s, **options)
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
