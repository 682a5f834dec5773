"""A broker that speaks only what a company's Kafka speaks: TLS, SCRAM, client certificates, optionally ACLs.

One JVM, from the local broker's jars (``.kafka/libs``), listening on free ports of 127.0.0.1:

- ``SETUP`` (PLAINTEXT): inter-broker and controller traffic, and the tests' own setup (topics, ACLs). Its
  principal is ``User:ANONYMOUS``, a super user when the authorizer is on: nothing the project ships uses it.
- ``SASL_SSL``: SCRAM-SHA-512 (and -256) users added when the storage is formatted; the broker's certificate
  names ``localhost`` and ``127.0.0.1``, so hostname verification passes.
- ``SSL``: a client certificate signed by the test CA is required; the principal is the certificate's CN.
- ``MISNAMED`` (SASL_SSL): the same broker with a certificate that names another host only, signed by the same
  CA: a client that verifies hostnames must refuse it.

The certificates are made with ``openssl`` in a directory of the test's (``Certificates``): a CA, the
broker's certificate as a PKCS12 keystore, client certificates issued on demand, an expired one, and one from
another CA.

Use it from a module-scoped fixture::

    @pytest.fixture(scope="module")
    def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
        with running_secure_broker(tmp_path_factory.mktemp("secure-kafka")) as broker:
            yield broker

``running_secure_broker(home, users=..., authorizer=True)`` enforces ACLs (``StandardAuthorizer``, nothing
allowed without an ACL, super users ``admin`` and ``ANONYMOUS``); ``broker.setup_settings()`` connects as
the super user to create topics and ACLs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from offload_bridge.kafka.local_broker import _LOG4J2, LocalBroker
from offload_bridge.settings import LOCAL_HOST, Settings
from offload_bridge.testing import free_port

# The super user (for setup through SASL_SSL) and the principal the project's processes use.
ADMIN = ("admin", "admin-secret")
BRIDGE = ("bridge", "bridge-secret")
DEFAULT_USERS: tuple[tuple[str, str], ...] = (ADMIN, BRIDGE)
# The password of the broker's PKCS12 keystores, and of the encrypted client keys the tests make.
KEYSTORE_PASSWORD = "keystore-secret"
CLIENT_KEY_PASSWORD = "client-key-secret"
# Another host's name, the only one the MISNAMED listener's certificate carries.
OTHER_HOST = "kafka.other.invalid"

_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"

# `openssl ca` signs the expired certificate: unlike `openssl x509 -req`, it takes explicit dates.
_CA_CONFIG = """[ca]
default_ca = test_ca
[test_ca]
database = {directory}/index.txt
new_certs_dir = {directory}
serial = {directory}/serial.txt
default_md = sha256
policy = any_subject
unique_subject = no
x509_extensions = client_ext
[any_subject]
commonName = supplied
organizationName = optional
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""
EXPIRED_NOT_BEFORE = "20240101000000Z"
EXPIRED_NOT_AFTER = "20240201000000Z"  # 1 Feb 2024: `openssl x509 -enddate` prints "Feb  1 00:00:00 2024 GMT"


@dataclass(frozen=True)
class ClientCertificate:
    """A client certificate and its private key (PEM), and the key's password when it is encrypted."""

    certfile: Path
    keyfile: Path
    key_password: str | None = None

    def settings(self) -> dict[str, Any]:
        """The Settings fields that present this certificate."""
        password = SecretStr(self.key_password) if self.key_password is not None else None
        return {
            "kafka_ssl_certfile": self.certfile,
            "kafka_ssl_keyfile": self.keyfile,
            "kafka_ssl_key_password": password,
        }


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {result.stderr.strip()}")


@dataclass(frozen=True)
class Certificates:
    """A test PKI in ``directory``: ``make`` creates the CAs and the broker's keystores; ``client`` issues."""

    directory: Path

    @property
    def ca(self) -> Path:
        """The CA that signed the broker's certificates and the good client certificates (PEM)."""
        return self.directory / "ca.crt"

    @property
    def other_ca(self) -> Path:
        """A CA nobody here trusts: what the broker's certificate is not signed by."""
        return self.directory / "other-ca.crt"

    @property
    def broker_keystore(self) -> Path:
        return self.directory / "broker.p12"

    @property
    def misnamed_keystore(self) -> Path:
        return self.directory / "misnamed.p12"

    @classmethod
    def make(cls, directory: Path) -> Certificates:
        directory.mkdir(parents=True, exist_ok=True)
        certificates = cls(directory)
        certificates._make_ca("ca", "offload-bridge test CA")
        certificates._make_ca("other-ca", "another CA")
        certificates._make_broker("broker", f"DNS:localhost,IP:{LOCAL_HOST}")
        certificates._make_broker("misnamed", f"DNS:{OTHER_HOST}")
        (directory / "index.txt").write_text("")
        (directory / "serial.txt").write_text("1000\n")
        (directory / "ca.cnf").write_text(_CA_CONFIG.format(directory=directory))
        return certificates

    def _make_ca(self, name: str, common_name: str) -> None:
        _openssl(
            "req", "-x509", "-new", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "30",
            "-keyout", f"{name}.key", "-out", f"{name}.crt",
            "-subj", f"/O=offload-bridge tests/CN={common_name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=self.directory,
        )  # fmt: skip

    def _sign(self, name: str, ca: str, extensions: str, days: int = 30) -> None:
        """``name``.csr signed by ``ca`` into ``name``.crt with these X.509v3 extensions."""
        (self.directory / f"{name}.ext").write_text(
            "basicConstraints = critical,CA:FALSE\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n" + extensions
        )
        _openssl(
            "x509", "-req", "-sha256", "-days", str(days), "-in", f"{name}.csr",
            "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=self.directory,
        )  # fmt: skip

    def _request(self, name: str, subject: str, key_password: str | None = None) -> None:
        encryption = ["-passout", f"pass:{key_password}"] if key_password else ["-nodes"]
        _openssl(
            "req", "-new", "-newkey", "rsa:2048", *encryption, "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", subject,
            cwd=self.directory,
        )  # fmt: skip

    def _make_broker(self, name: str, alt_names: str) -> None:
        """The broker's certificate (signed by the test CA) and key as a PKCS12 keystore, chain included."""
        self._request(name, f"/O=offload-bridge tests/CN={name}")
        self._sign(
            name,
            "ca",
            f"subjectAltName = {alt_names}\nkeyUsage = critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage = serverAuth\n",
        )
        _openssl(
            "pkcs12", "-export", "-in", f"{name}.crt", "-inkey", f"{name}.key", "-certfile", "ca.crt",
            "-name", "broker", "-out", f"{name}.p12", "-passout", f"pass:{KEYSTORE_PASSWORD}",
            cwd=self.directory,
        )  # fmt: skip

    def client(
        self, common_name: str, *, key_password: str | None = None, other_ca: bool = False
    ) -> ClientCertificate:
        """A client certificate for ``common_name`` (the principal on the SSL listener), valid 30 days.

        ``key_password`` encrypts its key; ``other_ca`` has it signed by the CA the broker does not trust.
        """
        name = f"client-{common_name}" + ("-other-ca" if other_ca else "")
        self._request(name, f"/O=offload-bridge tests/CN={common_name}", key_password)
        self._sign(name, "other-ca" if other_ca else "ca", _CLIENT_EXTENSIONS)
        return ClientCertificate(self.directory / f"{name}.crt", self.directory / f"{name}.key", key_password)

    def expired_client(self, common_name: str) -> ClientCertificate:
        """A client certificate of the test CA that expired on 1 Feb 2024 (``EXPIRED_NOT_AFTER``)."""
        name = f"client-{common_name}-expired"
        self._request(name, f"/O=offload-bridge tests/CN={common_name}")
        _openssl(
            "ca", "-batch", "-notext", "-config", "ca.cnf", "-cert", "ca.crt", "-keyfile", "ca.key",
            "-startdate", EXPIRED_NOT_BEFORE, "-enddate", EXPIRED_NOT_AFTER,
            "-in", f"{name}.csr", "-out", f"{name}.crt",
            cwd=self.directory,
        )  # fmt: skip
        return ClientCertificate(self.directory / f"{name}.crt", self.directory / f"{name}.key")


_CLIENT_EXTENSIONS = "keyUsage = critical,digitalSignature,keyEncipherment\nextendedKeyUsage = clientAuth\n"


@dataclass(frozen=True, kw_only=True)
class SecureBroker(LocalBroker):
    """The local broker's JVM with the listeners above; ``port`` is the SETUP listener's."""

    certificates: Certificates
    sasl_ssl_port: int
    ssl_port: int
    misnamed_port: int
    authorizer: bool = False
    # Which client certificate the SSL listener maps to which principal: the CN.
    principal_rules: str = field(default="RULE:^CN=([^,]+).*$/$1/,DEFAULT")

    @property
    def client_options(self) -> dict[str, str]:
        # Whether the broker is up is asked on the SETUP listener, which needs no credentials.
        return {}

    @property
    def sasl_ssl_bootstrap(self) -> str:
        return f"{LOCAL_HOST}:{self.sasl_ssl_port}"

    @property
    def ssl_bootstrap(self) -> str:
        return f"{LOCAL_HOST}:{self.ssl_port}"

    @property
    def misnamed_bootstrap(self) -> str:
        return f"{LOCAL_HOST}:{self.misnamed_port}"

    # --- settings of the clients ----------------------------------------------------------------
    def setup_settings(self, **fields: Any) -> Settings:
        """PLAINTEXT on the SETUP listener as ``User:ANONYMOUS``: topics and ACLs, not the code under test."""
        return Settings(kafka_bootstrap_servers=self.bootstrap, **fields)

    def sasl_ssl_settings(self, user: tuple[str, str] = BRIDGE, **fields: Any) -> Settings:
        """SCRAM-SHA-512 over TLS as ``user``, the broker's certificate checked against the test CA."""
        username, password = user
        return Settings(
            **{
                "kafka_bootstrap_servers": self.sasl_ssl_bootstrap,
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": username,
                "kafka_sasl_password": SecretStr(password),
                "kafka_ssl_cafile": self.certificates.ca,
                **fields,
            }
        )

    def ssl_settings(self, client: ClientCertificate, **fields: Any) -> Settings:
        """TLS with ``client``'s certificate, the broker's certificate checked against the test CA."""
        return Settings(
            **{
                "kafka_bootstrap_servers": self.ssl_bootstrap,
                "kafka_security_protocol": "SSL",
                "kafka_ssl_cafile": self.certificates.ca,
                **client.settings(),
                **fields,
            }
        )

    # --- the JVM ------------------------------------------------------------------------------
    def _write_config(self) -> None:
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listeners = {
            "SETUP": self.port,
            "SASL_SSL": self.sasl_ssl_port,
            "SSL": self.ssl_port,
            "MISNAMED": self.misnamed_port,
        }
        advertised = ",".join(f"{name}://{LOCAL_HOST}:{port}" for name, port in listeners.items())
        keystore = {
            "ssl.keystore.type": "PKCS12",
            "ssl.keystore.location": str(self.certificates.broker_keystore),
            "ssl.keystore.password": KEYSTORE_PASSWORD,
        }
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{LOCAL_HOST}:{self.controller_port}",
            "listeners": f"{advertised},CONTROLLER://{LOCAL_HOST}:{self.controller_port}",
            "advertised.listeners": advertised,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "SETUP",
            "listener.security.protocol.map": (
                "SETUP:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL,MISNAMED:SASL_SSL"
            ),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
            **{
                f"listener.name.{listener}.{mechanism}.sasl.jaas.config": _SCRAM_LOGIN
                for listener in ("sasl_ssl", "misnamed")
                for mechanism in ("scram-sha-512", "scram-sha-256")
            },
            **keystore,
            "listener.name.misnamed.ssl.keystore.type": "PKCS12",
            "listener.name.misnamed.ssl.keystore.location": str(self.certificates.misnamed_keystore),
            "listener.name.misnamed.ssl.keystore.password": KEYSTORE_PASSWORD,
            "listener.name.ssl.ssl.client.auth": "required",
            "listener.name.ssl.ssl.truststore.type": "PEM",
            "listener.name.ssl.ssl.truststore.location": str(self.certificates.ca),
            "ssl.principal.mapping.rules": self.principal_rules,
            **(
                {
                    "authorizer.class.name": _AUTHORIZER,
                    "allow.everyone.if.no.acl.found": "false",
                    # ANONYMOUS: the PLAINTEXT listeners (inter-broker, controller, SETUP) only.
                    "super.users": f"User:{ADMIN[0]};User:ANONYMOUS",
                }
                if self.authorizer
                else {}
            ),
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),
        }
        self.config_path.write_text("".join(f"{key}={value}\n" for key, value in properties.items()))
        (self.home / "log4j2.properties").write_text(_LOG4J2.format(logs=self.logs_dir))


def _free_ports(count: int) -> list[int]:
    """``count`` different free ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@contextmanager
def running_secure_broker(
    home: Path,
    users: Sequence[tuple[str, str]] = DEFAULT_USERS,
    authorizer: bool = False,
    heap: str = "384m",
) -> Iterator[SecureBroker]:
    """Start the broker in ``home`` (certificates under ``home/certs``); stop it on exit.

    ``users``: the SCRAM users (name, password); ``admin`` is added when missing, as the super user.
    """
    shared = LocalBroker.from_settings(Settings())
    shared.fetch()
    home.mkdir(parents=True, exist_ok=True)
    (home / "libs").symlink_to(shared.libs_dir)
    scram_users = tuple(users) if any(name == ADMIN[0] for name, _ in users) else (ADMIN, *users)
    setup_port, controller_port, sasl_ssl_port, ssl_port, misnamed_port = _free_ports(5)
    broker = SecureBroker(
        home,
        setup_port,
        controller_port,
        heap=heap,
        sasl_users=scram_users,
        certificates=Certificates.make(home / "certs"),
        sasl_ssl_port=sasl_ssl_port,
        ssl_port=ssl_port,
        misnamed_port=misnamed_port,
        authorizer=authorizer,
    )
    broker.start(timeout_s=120)
    try:
        yield broker
    finally:
        broker.stop()
