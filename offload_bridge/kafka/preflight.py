"""Before any Kafka library connects over TLS: one handshake with Python's ``ssl``, and why it fails.

librdkafka, aiokafka, Faust and kafka-python each report a TLS failure their own way: a retry loop in a log,
a timeout long after start, "NoBrokersAvailable". None of them says which setting to fix. Every process
that talks to Kafka (the ingress, the worker, the exporter, each CLI command) therefore runs ``check_tls``
at start:

- locally, the files: the CA file loads, the client certificate is in date, its key opens with the password
  and belongs to it;
- then a TLS handshake with the first bootstrap server that accepts a connection, with the same context
  aiokafka and Faust use, and one ApiVersions request: under TLS 1.3 the broker judges a client certificate
  after the handshake, so its verdict arrives with the first answer.

A failure raises ``KafkaTlsError`` with one line that names the setting to fix. A server that does not accept
a connection is not judged here: the libraries wait for it and say so their way.
"""

from __future__ import annotations

import _ssl
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from offload_bridge.kafka.connection import KafkaConnection
from offload_bridge.settings import Settings

# OpenSSL's verify codes (X509_V_ERR_*) behind the messages below.
_NOT_TRUSTED = {2, 18, 19, 20, 21}  # no issuer found / self-signed / not signed by a trusted CA
_EXPIRED, _NOT_YET_VALID = 10, 9
_NAME_MISMATCH = {62, 64}  # hostname, IP address
# The TLS alerts a broker sends about the client's certificate, by OpenSSL's reason.
_CERTIFICATE_REQUIRED = "TLSV13_ALERT_CERTIFICATE_REQUIRED"
_CERTIFICATE_ALERTS = (
    "ALERT_BAD_CERTIFICATE",
    "ALERT_UNKNOWN_CA",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_CERTIFICATE_EXPIRED",
    "ALERT_UNSUPPORTED_CERTIFICATE",
    "ALERT_CERTIFICATE_REVOKED",
)

# ApiVersions v0 (api key 18): the one request every Kafka listener answers before any authentication.
_CLIENT_ID = b"offload-bridge-preflight"
_API_VERSIONS = struct.pack(">hhih", 18, 0, 1, len(_CLIENT_ID)) + _CLIENT_ID
_API_VERSIONS_REQUEST = struct.pack(">i", len(_API_VERSIONS)) + _API_VERSIONS


class KafkaTlsError(RuntimeError):
    """The TLS settings cannot reach the cluster; the message names the setting to fix."""


def check_tls(settings: Settings, timeout_s: float = 10.0) -> None:
    """Raise KafkaTlsError when the TLS settings would fail (nothing to check without TLS)."""
    connection = KafkaConnection.of(settings)
    if not connection.tls:
        return
    context = _context(connection)
    for server in connection.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            raw = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
        except OSError:
            continue  # down or unreachable: not a TLS question
        with raw:
            _handshake(context, raw, host.strip("[]"), server, connection)
        return


def _context(connection: KafkaConnection, check_hostname: bool | None = None) -> ssl.SSLContext:
    """The clients' TLS context, its files checked one by one so that a failure names its setting."""
    cafile, certfile, keyfile = connection.ssl_cafile, connection.ssl_certfile, connection.ssl_keyfile
    try:
        # As KafkaConnection.ssl_context and librdkafka do: a CA file replaces the system's CAs.
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as error:
        raise KafkaTlsError(
            f"KAFKA_SSL_CAFILE: {cafile} holds no PEM certificate ({_reason(error)})"
        ) from None
    if certfile is not None and keyfile is not None:
        _check_validity(certfile)
        try:
            context.load_cert_chain(certfile, keyfile, connection.key_password_or_empty)
        except ssl.SSLError as error:
            raise KafkaTlsError(_key_problem(error, certfile, keyfile, connection)) from None
    context.check_hostname = connection.ssl_check_hostname if check_hostname is None else check_hostname
    return context


def _check_validity(certfile: str) -> None:
    # CPython's only decoder of a certificate file (private, so looked up rather than imported): the dates
    # are all this needs, and a library for them (cryptography) would be a dependency of every install.
    decode: Callable[[str], dict[str, Any]] | None = getattr(_ssl, "_test_decode_cert", None)
    if decode is None:
        return  # an interpreter without it: the broker's alert still says "expired"
    try:
        certificate = decode(certfile)
    except (ssl.SSLError, OSError) as error:
        raise KafkaTlsError(f"KAFKA_SSL_CERTFILE: {certfile} holds no PEM certificate ({error})") from None
    now = time.time()
    not_after = ssl.cert_time_to_seconds(certificate["notAfter"])
    if not_after < now:
        raise KafkaTlsError(
            f"KAFKA_SSL_CERTFILE: the client certificate expired on {_utc(not_after)} ({certfile}); renew it"
        )
    not_before = ssl.cert_time_to_seconds(certificate["notBefore"])
    if not_before > now:
        raise KafkaTlsError(
            f"KAFKA_SSL_CERTFILE: the client certificate is not valid before {_utc(not_before)} ({certfile})"
        )


def _key_problem(error: ssl.SSLError, certfile: str, keyfile: str, connection: KafkaConnection) -> str:
    reason = _reason(error)
    if "KEY_VALUES_MISMATCH" in reason:
        return f"KAFKA_SSL_KEYFILE: the key in {keyfile} does not belong to the certificate in {certfile}"
    if _encrypted(keyfile):
        # OpenSSL says only "PEM lib" for a missing or wrong password.
        if connection.ssl_key_password is None:
            return f"KAFKA_SSL_KEY_PASSWORD: the key in {keyfile} is encrypted; set its password"
        return f"KAFKA_SSL_KEY_PASSWORD: it does not decrypt the key in {keyfile}"
    return f"KAFKA_SSL_KEYFILE: {keyfile} holds no PEM private key for {certfile} ({reason})"


def _encrypted(keyfile: str) -> bool:
    """True for a PEM key under a password (PKCS#8 "ENCRYPTED PRIVATE KEY" or the older Proc-Type header)."""
    try:
        with open(keyfile, errors="replace") as pem:
            text = pem.read(1 << 16)
    except OSError:
        return False
    return "ENCRYPTED PRIVATE KEY" in text or "Proc-Type: 4,ENCRYPTED" in text


def _handshake(
    context: ssl.SSLContext, raw: socket.socket, host: str, server: str, connection: KafkaConnection
) -> None:
    try:
        tls = context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        raise KafkaTlsError(_verification_problem(error, host, server, connection)) from None
    except ssl.SSLError as error:
        raise KafkaTlsError(_handshake_problem(error, server, connection)) from None
    except (ConnectionError, TimeoutError, OSError) as error:
        raise KafkaTlsError(_not_tls(server, connection, type(error).__name__)) from None
    with tls:
        try:
            tls.sendall(_API_VERSIONS_REQUEST)
            answered = tls.recv(4)
        except ssl.SSLError as error:
            raise KafkaTlsError(_handshake_problem(error, server, connection)) from None
        except (ConnectionError, TimeoutError, OSError) as error:
            answered, closed = b"", type(error).__name__
        else:
            closed = "closed"
        if not answered:
            raise KafkaTlsError(
                f"{server} ended the connection after the TLS handshake ({closed}) without answering Kafka's "
                "ApiVersions request: check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL"
                + (" and the client certificate (KAFKA_SSL_CERTFILE)" if connection.ssl_certfile else "")
            )


def _verification_problem(
    error: ssl.SSLCertVerificationError, host: str, server: str, connection: KafkaConnection
) -> str:
    code, message = error.verify_code, error.verify_message
    if code in _NAME_MISMATCH:
        names = _names_in_certificate(connection, host, server)
        shown = f" (it names {names})" if names else ""
        return (
            f"hostname mismatch: the broker's certificate at {server} does not name {host}{shown}; "
            "fix KAFKA_BOOTSTRAP_SERVERS or KAFKA_SSL_CHECK_HOSTNAME"
        )
    if code in _NOT_TRUSTED:
        if connection.ssl_cafile is None:
            return (
                f"KAFKA_SSL_CAFILE: the broker's certificate at {server} is not signed by a CA this system "
                "trusts; set KAFKA_SSL_CAFILE to your cluster's CA certificate (PEM)"
            )
        cafile = connection.ssl_cafile
        return f"KAFKA_SSL_CAFILE: the broker's certificate at {server} is not signed by this CA ({cafile})"
    if code == _EXPIRED:
        return (
            f"the broker's certificate at {server} has expired: renew it on the broker, or fix "
            "KAFKA_BOOTSTRAP_SERVERS"
        )
    if code == _NOT_YET_VALID:
        return f"the broker's certificate at {server} is not valid yet: check this machine's clock"
    return f"KAFKA_SSL_CAFILE: the broker's certificate at {server} does not verify ({message})"


def _handshake_problem(error: ssl.SSLError, server: str, connection: KafkaConnection) -> str:
    reason = _reason(error)
    certificate_alert = any(alert in reason for alert in _CERTIFICATE_ALERTS)
    if reason == _CERTIFICATE_REQUIRED or (
        connection.ssl_certfile is None and (certificate_alert or "HANDSHAKE_FAILURE" in reason)
    ):
        return (
            f"KAFKA_SSL_CERTFILE: the broker at {server} requires a client certificate; set "
            "KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE"
        )
    if certificate_alert:
        return (
            f"KAFKA_SSL_CERTFILE: the broker at {server} refused the client certificate ({reason.lower()}): "
            f"is {connection.ssl_certfile} signed by a CA the broker trusts, and in date?"
        )
    if "WRONG_VERSION_NUMBER" in reason or "UNEXPECTED_EOF" in reason or "RECORD_LAYER" in reason:
        return _not_tls(server, connection, reason.lower())
    detail = reason.lower()
    return f"TLS with {server} failed ({detail}): check KAFKA_SECURITY_PROTOCOL and the KAFKA_SSL_* settings"


def _not_tls(server: str, connection: KafkaConnection, detail: str) -> str:
    return (
        f"KAFKA_SECURITY_PROTOCOL={connection.security_protocol}: {server} does not complete a TLS handshake "
        f"({detail}); is it a TLS listener of your cluster?"
    )


def _names_in_certificate(connection: KafkaConnection, host: str, server: str) -> str | None:
    """The names in the broker's certificate, read through a second handshake without the name check."""
    context = _context(connection, check_hostname=False)
    _, _, port = server.rpartition(":")
    try:
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate: dict[str, Any] = dict(tls.getpeercert() or {})
    except (OSError, ssl.SSLError):
        return None
    alt_names: tuple[tuple[str, str], ...] = certificate.get("subjectAltName", ())
    names = [value for kind, value in alt_names if kind in ("DNS", "IP Address")]
    return ", ".join(names) or None


def _reason(error: ssl.SSLError) -> str:
    return str(error.reason or error.strerror or error)


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(seconds))
