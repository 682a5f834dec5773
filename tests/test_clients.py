"""One connection configuration, rendered by each client library's own names."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import SecretStr

from offload_bridge.kafka.connection import (
    KafkaConnection,
    aiokafka_options,
    bootstrap_list,
    connection_options,
    librdkafka_options,
)
from offload_bridge.settings import Settings


def _sasl_ssl(cafile: Path | None = None) -> Settings:
    return Settings(
        kafka_bootstrap_servers="k1:9093,k2:9093",
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr("secret"),
        kafka_ssl_cafile=cafile,
        kafka_ssl_check_hostname=False,
    )


def test_plaintext_has_nothing_but_the_protocol() -> None:
    settings = Settings(kafka_bootstrap_servers="k1:9092")
    assert bootstrap_list(settings) == ["k1:9092"]
    assert connection_options(settings) == {"security_protocol": "PLAINTEXT"}
    assert librdkafka_options(settings) == {"security.protocol": "plaintext"}
    assert aiokafka_options(settings) == {
        "bootstrap_servers": ["k1:9092"],
        "security_protocol": "PLAINTEXT",
        "ssl_context": None,
    }


def test_sasl_ssl_in_each_librarys_names(tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not read by these renderers")
    settings = _sasl_ssl(cafile)
    assert KafkaConnection.of(settings).bootstrap_servers == ("k1:9093", "k2:9093")
    assert connection_options(settings) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bridge",
        "sasl_plain_password": "secret",
        "ssl_check_hostname": False,
        "ssl_cafile": str(cafile),
        "ssl_certfile": None,
        "ssl_keyfile": None,
        "ssl_password": None,
    }
    assert librdkafka_options(settings) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "bridge",
        "sasl.password": "secret",
        "ssl.ca.location": str(cafile),
        "ssl.endpoint.identification.algorithm": "none",
    }


def test_aiokafka_gets_a_tls_context_with_the_same_sasl() -> None:
    options = aiokafka_options(_sasl_ssl())
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext) and context.check_hostname is False
    assert options == {
        "bootstrap_servers": ["k1:9093", "k2:9093"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "bridge",
        "sasl_plain_password": "secret",
    }
