"""Fixtures: the real Kafka broker for the session, and a unique topic prefix per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.local_broker import LocalBroker
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix

_BROKER_STARTED = pytest.StashKey[LocalBroker]()


def _distributes(config: pytest.Config) -> bool:
    """True in the controller of a pytest-xdist run (``-n N`` with N > 0)."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", 0))


def pytest_configure(config: pytest.Config) -> None:
    """With pytest-xdist the controller owns the local broker, so that no worker stops it under another."""
    if not _distributes(config):
        return
    settings = Settings()
    if settings.uses_external_kafka:
        return
    broker = LocalBroker.from_settings(settings)
    if broker.start(timeout_s=settings.offload_kafka_start_timeout_s):
        config.stash[_BROKER_STARTED] = broker


def pytest_unconfigure(config: pytest.Config) -> None:
    broker = config.stash.get(_BROKER_STARTED, None)
    if broker is not None:
        broker.stop()


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
    """Settings pointing at the test broker with this test's own topic prefix (topics not yet created).

    Afterwards every topic under the prefix goes (Faust's changelogs too): thousands of leftover
    partitions would slow every later test's metadata requests.
    """
    settings = Settings(kafka_bootstrap_servers=kafka_broker, offload_topic_prefix=topic_prefix)
    yield settings
    delete_topics_with_prefix(settings)


@pytest.fixture
def topics(settings: Settings) -> Settings:
    """``settings`` with every topic of the contract created."""
    ensure_topics(settings)
    return settings
