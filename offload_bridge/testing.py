"""Helpers for tests against the real broker: unique topic prefixes, produce/consume, service processes.

Used by the project's own test suite and usable by teams testing code that talks to offload-bridge.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from offload_bridge.clients import bootstrap_list, connection_options
from offload_bridge.settings import Settings
from offload_bridge.topics import TopicSpec, topic_name


def unique_prefix(label: str = "t") -> str:
    """A topic prefix no other test uses, e.g. ``t-3f9a1c2b.``."""
    return f"{label}-{uuid.uuid4().hex[:8]}."


def unique_group(label: str = "g") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that reproduce these settings in a child process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(exclude_none=True).items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[name.upper()] = str(value)
    env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]


def produce(
    settings: Settings,
    spec: TopicSpec,
    value: bytes,
    key: bytes | None = None,
    headers: Mapping[str, bytes] | None = None,
) -> tuple[int, int]:
    """Produce one record (acks=all) and return its (partition, offset)."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap_list(settings), acks="all", **connection_options(settings)
    )
    try:
        future = producer.send(
            topic_name(spec, settings), value=value, key=key, headers=list((headers or {}).items())
        )
        metadata = future.get(timeout=30)
        return metadata.partition, metadata.offset
    finally:
        producer.close()


def consume(settings: Settings, spec: TopicSpec, count: int, timeout_s: float = 30.0) -> list[Record]:
    """Read from the start of the topic until ``count`` records arrived or the timeout passed."""
    name = topic_name(spec, settings)
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_list(settings),
        enable_auto_commit=False,
        consumer_timeout_ms=500,
        **connection_options(settings),
    )
    try:
        partitions = [TopicPartition(name, p) for p in consumer.partitions_for_topic(name) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < count and time.monotonic() < deadline:
            for message in consumer:
                records.append(
                    Record(
                        message.topic, message.partition, message.offset, message.key, message.value,
                        {k: v for k, v in message.headers},
                    )
                )  # fmt: skip
                if len(records) >= count:
                    break
        return records
    finally:
        consumer.close()


class ServiceProcess:
    """A project command run as a real child process in its own process group; always cleaned up."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.args = [sys.executable, "-m", "offload_bridge.cli", *args]
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        output: Any = self.log_path.open("ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(
            self.args, env=self.env, stdout=output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.cwd,
        )  # fmt: skip
        if self.log_path:
            output.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def wait_http(self, url: str, timeout_s: float = 60.0, ok: Sequence[int] = (200,)) -> httpx.Response:
        """Poll ``url`` until it answers with one of ``ok``; fail early if the process died."""
        deadline = time.monotonic() + timeout_s
        last: str = "no answer"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.args[3:]} exited with {self.process.returncode}: {self.log_tail()}"
                )
            try:
                response = httpx.get(url, timeout=2.0)
                if response.status_code in ok:
                    return response
                last = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                last = type(error).__name__
            time.sleep(0.2)
        raise TimeoutError(f"{url} did not answer {list(ok)} within {timeout_s}s ({last}): {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def stop(self, grace_s: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace_s``; returns the exit code."""
        if self.process is None:
            return None
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        # Children the service left in its group go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash would."""
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)


@contextlib.contextmanager
def running(service: ServiceProcess) -> Iterator[ServiceProcess]:
    service.start()
    try:
        yield service
    finally:
        service.stop()
