"""Fixtures: the real Kafka broker for the session, and a unique topic prefix per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from offload_bridge.admin import ensure_topics
from offload_bridge.local_kafka import LocalBroker
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """The bootstrap address of a real broker: the configured cluster, or the local one.

    A local broker that was already running is left running; one this session started is stopped
    at the end, so a test run leaves no process behind.
    """
    settings = Settings()
    if settings.uses_external_kafka:
        yield settings.bootstrap_servers
        return
    broker = LocalBroker.from_settings(settings)
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
