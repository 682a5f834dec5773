"""How every Kafka client the project makes reaches the cluster: one configuration, one rendering per library.

``KafkaConnection`` reads the bootstrap servers, the security protocol, SASL and TLS from Settings once; the
renderers below spell it in each library's own names: kafka-python (admin, CLI, submitters, DLQ, tail),
aiokafka and Faust (inside the worker) and librdkafka (confluent-kafka, the ingress producer). A new setting
is added to ``KafkaConnection`` and to each renderer, so no client can miss it.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import KafkaError

from offload_bridge.settings import Settings

log = logging.getLogger(__name__)


class KafkaUnreachable(RuntimeError):
    """No broker answered a metadata request in time."""


class NotAuthorized(RuntimeError):
    """The cluster's ACLs refuse this client's principal an operation on a resource; one line naming both."""

    def __init__(self, principal: str, action: str, resource: str, error: str) -> None:
        super().__init__(
            f"{principal} is not allowed to {action} {resource} ({error}); `offload-bridge acls` lists what"
            " each role is allowed"
        )


def principal(security_protocol: str, sasl_username: str | None, client_certificate: bool) -> str:
    """The principal the cluster sees for these credentials, as its ACLs name it."""
    if security_protocol.startswith("SASL") and sasl_username:
        return f"User:{sasl_username}"
    if security_protocol == "SSL" and client_certificate:
        return "the client certificate's principal"
    return "User:ANONYMOUS"


def principal_of(settings: Settings) -> str:
    return principal(
        settings.kafka_security_protocol,
        settings.kafka_sasl_username,
        settings.kafka_ssl_certfile is not None,
    )


# Kafka's authorization errors, by the names kafka-python gives them, and what each one refuses.
_REFUSED = {
    "TopicAuthorizationFailedError": "topic",
    "GroupAuthorizationFailedError": "group",
    "ClusterAuthorizationFailedError": "cluster operation",
    "TransactionalIdAuthorizationFailedError": "transactional id",
}


def refusal(
    error: Exception, settings: Settings, action: str = "use", resource: str | None = None
) -> NotAuthorized | None:
    """``error`` as a NotAuthorized when it is one of Kafka's authorization errors, else None.

    kafka-python raises them from a send, a poll or an admin call with the refused names in the message
    (``[Error 29] TopicAuthorizationFailedError: offload.answers``); an idempotent producer that may write
    nowhere is refused its producer id (ClusterAuthorizationFailed) inside a generic KafkaError. ``action``
    and ``resource`` say what was refused when the caller knows it better than the message.
    """
    text = str(error)
    for name, kind in _REFUSED.items():
        if type(error).__name__ != name and name not in text:
            continue
        code = name.removesuffix("Error")
        if resource is None and "InitProducerId" in text:
            return NotAuthorized(principal_of(settings), "produce to", "any topic", code)
        if resource is None:
            refused = text.split(f"{name}:", 1)[1] if f"{name}:" in text else ""
            refused = ", ".join(
                sorted(part.strip(" '\"") for part in refused.strip(" {}").split(",") if part.strip(" '\""))
            )
            resource = f"{kind} {refused}" if refused else kind
        return NotAuthorized(principal_of(settings), action, resource, code)
    return None


@dataclass(frozen=True)
class KafkaConnection:
    """The connection settings of one cluster, independent of any client library."""

    bootstrap_servers: tuple[str, ...]
    security_protocol: str
    sasl_mechanism: str | None = None  # set when the protocol is SASL_*
    sasl_username: str | None = None
    sasl_password: str | None = None
    tls: bool = False  # the protocol is SSL or SASL_SSL
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_key_password: str | None = None
    ssl_check_hostname: bool = True

    @classmethod
    def of(cls, settings: Settings) -> KafkaConnection:
        protocol = settings.kafka_security_protocol
        sasl = protocol.startswith("SASL")
        tls = protocol.endswith("SSL")
        password, key_password = settings.kafka_sasl_password, settings.kafka_ssl_key_password
        return cls(
            bootstrap_servers=tuple(settings.bootstrap_servers.split(",")),
            security_protocol=protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism if sasl else None,
            sasl_username=settings.kafka_sasl_username if sasl else None,
            sasl_password=password.get_secret_value() if sasl and password else None,
            tls=tls,
            ssl_cafile=_path(settings.kafka_ssl_cafile) if tls else None,
            ssl_certfile=_path(settings.kafka_ssl_certfile) if tls else None,
            ssl_keyfile=_path(settings.kafka_ssl_keyfile) if tls else None,
            ssl_key_password=key_password.get_secret_value() if tls and key_password else None,
            ssl_check_hostname=settings.kafka_ssl_check_hostname,
        )

    @property
    def key_password_or_empty(self) -> str:
        """The key's password for Python's ``ssl``: with None, OpenSSL would ask for one on the terminal."""
        return self.ssl_key_password or ""

    @property
    def sasl(self) -> bool:
        return self.sasl_mechanism is not None

    def sasl_options(self) -> dict[str, Any]:
        """SASL by the names kafka-python and aiokafka share."""
        if not self.sasl:
            return {}
        return {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
        }

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of aiokafka and Faust clients, or None without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(cafile=self.ssl_cafile)
        if self.ssl_certfile is not None:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile, self.key_password_or_empty)
        context.check_hostname = self.ssl_check_hostname
        return context


def bootstrap_list(settings: Settings) -> list[str]:
    return list(KafkaConnection.of(settings).bootstrap_servers)


def connection_options(settings: Settings) -> dict[str, Any]:
    """kafka-python: options besides bootstrap_servers shared by every client the project makes."""
    connection = KafkaConnection.of(settings)
    options: dict[str, Any] = {"security_protocol": connection.security_protocol, **connection.sasl_options()}
    if connection.tls:
        options["ssl_check_hostname"] = connection.ssl_check_hostname
        options["ssl_cafile"] = connection.ssl_cafile
        options["ssl_certfile"] = connection.ssl_certfile
        options["ssl_keyfile"] = connection.ssl_keyfile
        options["ssl_password"] = connection.key_password_or_empty if connection.ssl_certfile else None
    return options


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of aiokafka and Faust clients, or None without SSL."""
    return KafkaConnection.of(settings).ssl_context()


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """aiokafka: connection options of the clients the worker makes besides Faust's own."""
    connection = KafkaConnection.of(settings)
    return {
        "bootstrap_servers": list(connection.bootstrap_servers),
        "security_protocol": connection.security_protocol,
        "ssl_context": connection.ssl_context(),
        **connection.sasl_options(),
    }


def faust_credentials(settings: Settings) -> Any:
    """Faust: ``broker_credentials`` for the app, or None for PLAINTEXT."""
    import faust  # the worker's library: only the worker renders this

    connection = KafkaConnection.of(settings)
    if not connection.sasl and not connection.tls:
        return None
    if not connection.sasl:
        return faust.SSLCredentials(connection.ssl_context())
    return faust.SASLCredentials(
        username=connection.sasl_username,
        password=connection.sasl_password,
        mechanism=connection.sasl_mechanism,
        ssl_context=connection.ssl_context(),
    )


def librdkafka_options(settings: Settings) -> dict[str, str]:
    """librdkafka (confluent-kafka): security options by librdkafka's own names."""
    connection = KafkaConnection.of(settings)
    options = {"security.protocol": connection.security_protocol.lower()}
    if connection.sasl:
        options["sasl.mechanisms"] = connection.sasl_mechanism or ""
        options["sasl.username"] = connection.sasl_username or ""
        options["sasl.password"] = connection.sasl_password or ""
    if connection.tls:
        for name, path in (
            ("ssl.ca.location", connection.ssl_cafile),
            ("ssl.certificate.location", connection.ssl_certfile),
            ("ssl.key.location", connection.ssl_keyfile),
        ):
            if path is not None:
                options[name] = path
        if connection.ssl_key_password is not None:
            options["ssl.key.password"] = connection.ssl_key_password
        check = "https" if connection.ssl_check_hostname else "none"
        options["ssl.endpoint.identification.algorithm"] = check
    return options


def kafka_consumer(settings: Settings, **options: Any) -> KafkaConsumer:
    """A kafka-python consumer of the cluster; it commits only when told to (``options`` override)."""
    return KafkaConsumer(
        **{
            "bootstrap_servers": bootstrap_list(settings),
            "enable_auto_commit": False,
            **connection_options(settings),
            **options,
        }
    )


def kafka_producer(settings: Settings, **options: Any) -> KafkaProducer:
    """A kafka-python producer of the cluster whose sends every in-sync replica acknowledged."""
    return KafkaProducer(
        **{
            "bootstrap_servers": bootstrap_list(settings),
            "acks": "all",
            **connection_options(settings),
            **options,
        }
    )


def _path(path: Path | None) -> str | None:
    return str(path) if path is not None else None


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
