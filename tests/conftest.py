"""Fixtures: the real Kafka broker for the session, and a unique topic prefix per test."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from pydantic import SecretStr

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.local_broker import BrokerError, LocalBroker
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from tests.browser import browser  # noqa: F401  (the fixture, for every test module)
from tests.streams_support import WORKER_TOKEN


@dataclass
class _BrokerStart:
    """The controller's start of the local broker, run in a thread while the xdist workers start up."""

    broker: LocalBroker
    timeout_s: float
    started: bool = False
    thread: threading.Thread | None = None

    def run(self) -> None:
        # A failure shows in the workers, which wait for the broker to answer and say where its logs are.
        with contextlib.suppress(BrokerError):
            self.started = self.broker.start(timeout_s=self.timeout_s)


_BROKER_START = pytest.StashKey[_BrokerStart]()


def _distributes(config: pytest.Config) -> bool:
    """True in the controller of a pytest-xdist run (``-n N`` with N > 0)."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", 0))


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist the controller owns the local broker, so that no worker stops it under another.

    The broker starts in a thread: its JVM comes up while the workers start and collect the tests.
    """
    if not _distributes(config):
        return
    settings = Settings()
    if settings.uses_external_kafka:
        return
    start = _BrokerStart(LocalBroker.from_settings(settings), settings.offload_kafka_start_timeout_s)
    start.thread = threading.Thread(target=start.run, name="kafka-broker-start", daemon=True)
    start.thread.start()
    config.stash[_BROKER_START] = start


def pytest_unconfigure(config: pytest.Config) -> None:
    start = config.stash.get(_BROKER_START, None)
    if start is None:
        return
    if start.thread is not None:
        start.thread.join()
    if start.started:
        start.broker.stop()


def _wait_until_up(broker: LocalBroker, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not broker.is_up():
        if time.monotonic() > deadline:
            pytest.fail(f"the local broker at {broker.bootstrap} did not answer within {timeout_s:.0f}s; "
                        f"its logs are in {broker.logs_dir}")  # fmt: skip
        time.sleep(0.5)


@pytest.fixture(scope="session")
def kafka_broker(request: pytest.FixtureRequest) -> Iterator[str]:
    """The bootstrap address of a real broker: the configured cluster, or the local one.

    A local broker that was already running is left running; one this session started is stopped
    at the end, so a test run leaves no process behind. Under pytest-xdist the controller started it
    (``pytest_configure``) and stops it once every worker is done.
    """
    settings = Settings()
    if settings.uses_external_kafka:
        yield settings.bootstrap_servers
        return
    broker = LocalBroker.from_settings(settings)
    if hasattr(request.config, "workerinput"):
        _wait_until_up(broker, settings.offload_kafka_start_timeout_s)
        yield broker.bootstrap
        return
    started = broker.start(timeout_s=settings.offload_kafka_start_timeout_s)
    try:
        yield broker.bootstrap
    finally:
        if started:
            broker.stop()


@pytest.fixture
def topic_prefix() -> str:
    return unique_prefix()


@pytest.fixture
def settings(kafka_broker: str, topic_prefix: str) -> Iterator[Settings]:
    """Settings pointing at the test broker with this test's own topic prefix (topics not yet created),
    and the workers' bearer token: workers started with them need it, and every client built from them
    sends it.

    Afterwards every topic under the prefix goes (Faust's changelogs too): thousands of leftover
    partitions would slow every later test's metadata requests.
    """
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_topic_prefix=topic_prefix,
        offload_worker_api_tokens=SecretStr(WORKER_TOKEN),
    )
    yield settings
    delete_topics_with_prefix(settings)


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """``settings`` with every topic of the contract created."""
    ensure_topics(settings)
    return settings
