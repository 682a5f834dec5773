"""Helpers for the streams tests: Offload's documented example webhooks, produced as the ingress does,
and a worker run as a real process."""

from __future__ import annotations

import contextlib
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from offload_bridge.kafka.connection import kafka_producer
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.settings import Settings
from offload_bridge.testing import ServiceProcess, free_port, produce, settings_env
from offload_bridge.topics import CASE_EVENTS, topic_name
from offload_bridge.worker_client import bearer_headers

# Offload's documented example payloads, byte for byte (shared with the ingress tests).
SEED_INPUT_NEEDED = (Path(__file__).parent / "data" / "webhook_input_needed.json").read_bytes()
SEED_COMPLETED = (Path(__file__).parent / "data" / "webhook_completed.json").read_bytes()

WORKER_READY_TIMEOUT_S = 120.0
STATE_TIMEOUT_S = 60.0
# The store of a worker whose test does not choose one. The production default, rocksdb://, costs a few
# seconds more per start and restart, and most tests are about what the worker does, not where its tables
# live; the tests that choose rocksdb:// (or OFFLOAD_WORKER_STORE in the environment) run on it.
UNCHOSEN_STORE = "memory://"
# The bearer token of the workers the tests start (the ``settings`` fixture carries it), so the suite runs
# the worker's API as production should: behind a token, routed between workers with it. One per test
# process, shared by the workers of a group, since a routed request carries the caller's token.
WORKER_TOKEN = "test-worker-" + secrets.token_hex(16)


def event_body(
    case_id: str,
    event_type: str,
    timestamp: int,
    status: str,
    **data: Any,
) -> bytes:
    """A webhook body in Offload's format, with Offload's deterministic event id."""
    event_id = f"evt_{case_id}_{event_type.replace('.', '_')}_{timestamp}"
    payload = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": timestamp,
        "data": {"caseId": case_id, "status": status, "channel": "EMAIL", "attachments": [], **data},
    }
    return json.dumps(payload).encode()


def _as_ingress(body: bytes, received_at: int | None = None) -> tuple[bytes, dict[str, bytes]]:
    """The key and headers the ingress gives a webhook body: caseId, event_type, event_id, received_at
    (ms), source."""
    event = json.loads(body)
    headers = {
        "event_type": event["event_type"].encode(),
        "event_id": event["event_id"].encode(),
        "received_at": str(received_at if received_at is not None else int(time.time() * 1000)).encode(),
        "source": b"webhook",
    }
    return event["data"]["caseId"].encode(), headers


def publish_webhook(settings: Settings, body: bytes, received_at: int | None = None) -> tuple[int, int]:
    """Produce a webhook body to case-events exactly as the ingress does, the body unchanged."""
    key, headers = _as_ingress(body, received_at)
    return produce(settings, CASE_EVENTS, body, key=key, headers=headers)


def publish_webhooks(settings: Settings, events: Iterable[bytes | tuple[bytes, int]]) -> None:
    """``publish_webhook`` for many bodies (or (body, received_at)), in order, through one producer;
    returns once the broker acknowledged all."""
    # One request in flight: a retried send never overtakes the next, so each case keeps its order.
    producer = kafka_producer(settings, linger_ms=5, max_in_flight_requests_per_connection=1)
    try:
        topic = topic_name(CASE_EVENTS, settings)
        sent = []
        for event in events:
            body, received_at = event if isinstance(event, tuple) else (event, None)
            key, headers = _as_ingress(body, received_at)
            sent.append(producer.send(topic, value=body, key=key, headers=list(headers.items())))
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()


def cases_on_every_partition(label: str, partitions: int, per_partition: int = 2) -> list[str]:
    """Case ids, ``per_partition`` on each of the partitions (the first ids of ``label-N`` that fit)."""
    chosen: dict[int, list[str]] = {partition: [] for partition in range(partitions)}
    n = 0
    while any(len(ids) < per_partition for ids in chosen.values()):
        case_id = f"{label}-{n}"
        ids = chosen[partition_for(case_id, partitions)]
        if len(ids) < per_partition:
            ids.append(case_id)
        n += 1
    return [case_id for ids in chosen.values() for case_id in ids]


class Worker:
    """``offload-bridge worker`` as a real child process with its own web port."""

    def __init__(self, settings: Settings, workdir: Path, name: str = "worker", port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        chosen = "offload_worker_store" in settings.model_fields_set
        self.env = {
            **settings_env(settings),
            "OFFLOAD_WORKER_STORE": settings.offload_worker_store if chosen else UNCHOSEN_STORE,
            "OFFLOAD_WORKER_WEB_PORT": str(self.port),
            "OFFLOAD_WORKER_DATA_DIR": str(workdir / f"{name}-data"),
        }
        self.service = ServiceProcess(["worker"], env=self.env, log_path=workdir / f"{name}.log", cwd=workdir)
        # What a client of this worker sends: the settings' token, as the CLI and QuestionReader do.
        self.headers = bearer_headers(settings.worker_client_token)

    def start(self, wait: bool = True) -> Worker:
        self.service.start()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self) -> None:
        self.service.wait_http(f"{self.url}/ready", timeout_s=WORKER_READY_TIMEOUT_S)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        """GET a path of this worker's API, with its token when it has one."""
        kwargs.setdefault("timeout", 10.0)
        return httpx.get(f"{self.url}{path}", headers=self.headers, **kwargs)

    def get_case(self, case_id: str) -> httpx.Response:
        return self.get(f"/cases/{case_id}")

    def wait_case(
        self, case_id: str, until: Callable[[dict[str, Any]], bool], timeout_s: float = STATE_TIMEOUT_S
    ) -> dict[str, Any]:
        """Poll GET /cases/{id} until the state satisfies ``until``; its last answer on timeout."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            try:
                response = self.get_case(case_id)
                last = (response.status_code, response.text)
                if response.status_code == 200:
                    state: dict[str, Any] = response.json()["data"]
                    if until(state):
                        return state
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.25)
        raise AssertionError(f"case {case_id} never matched; last answer {last}\n{self.service.log_tail(40)}")

    def owned_partitions(self) -> list[int] | None:
        """The case-events partitions this worker owns now; None while it is not ready."""
        try:
            answer = self.get("/cases")
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        partitions: list[int] = answer.json()["data"]["partitions"]
        return partitions

    def stats(self) -> dict[str, int]:
        counters: dict[str, int] = self.get("/stats").json()["data"]["caseEvents"]
        return counters

    def reconcile_stats(self) -> dict[str, Any]:
        """``GET /stats/reconcile``: the reconciler's counters and gauges, and the case-watch counters."""
        data: dict[str, Any] = self.get("/stats/reconcile").json()["data"]
        return data

    def run_cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "offload_bridge.cli", *args]
        return subprocess.run(command, env={**self.service.env}, capture_output=True, text=True, timeout=60)


def wait_for(condition: Callable[[], bool], timeout_s: float = 30.0, what: str = "the condition") -> None:
    """Poll ``condition`` until it holds; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


@contextlib.contextmanager
def running_workers(*workers: Worker) -> Iterator[None]:
    try:
        for worker in workers:
            worker.start(wait=False)
        for worker in workers:
            worker.wait_ready()
        yield
    finally:
        for worker in workers:
            worker.service.stop()


def wait_for_spread(
    workers: Sequence[Worker], partitions: int, timeout_s: float = 120.0
) -> dict[str, list[int]]:
    """Wait until the group settled: every worker owns partitions and each partition has exactly one owner.

    Returns each worker's partitions by URL.
    """
    deadline = time.monotonic() + timeout_s
    owned: dict[str, list[int] | None] = {}
    while time.monotonic() < deadline:
        owned = {worker.url: worker.owned_partitions() for worker in workers}
        settled = {url: ps for url, ps in owned.items() if ps}
        if len(settled) == len(workers) and sorted(p for ps in settled.values() for p in ps) == list(
            range(partitions)
        ):
            return settled
        time.sleep(0.5)
    raise AssertionError(f"the partitions never settled over {len(workers)} workers: {owned}")
