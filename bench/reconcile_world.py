"""The world around the worker in ``bench.reconcile``: cases created through ``case-requests`` or directly
at the simulator and tracked through ``case-watch``, a person answering the questions the bridge shows, and
what the bench records of ``case-state`` and of the worker's reconcile counters."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import kafka_reading, worker_headers
from bench.reconcile_plan import CasePlan, Compression, index_of
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.connection import kafka_producer
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import Answer
from offload_bridge.schemas.case_requests import CaseRequest
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, case_body
from offload_bridge.topics import (
    ALL_TOPICS,
    ANSWERS,
    BY_CASE,
    CASE_REQUESTS,
    CASE_STATE,
    HISTORY,
    TopicSpec,
    topic_name,
)

CASE_WATCH_NAME = "case-watch"


def case_watch_spec() -> TopicSpec:
    """The registry's case-watch topic, or one like it (caseId-keyed, co-partitioned) until it is there."""
    for spec in ALL_TOPICS:
        if spec.name == CASE_WATCH_NAME:
            return spec
    return TopicSpec(
        CASE_WATCH_NAME, "Case watch", "Cases to track by reconciliation.", "caseId", None,
        writers=(), readers=(), partitioning=BY_CASE, retention=HISTORY,
    )  # fmt: skip


def create_topics(settings: Settings) -> None:
    ensure_topics(settings)
    ensure_topics(settings, [case_watch_spec()])


def track(settings: Settings, case_ids: list[str]) -> None:
    """Ask the worker to track cases it did not create: one record per case on case-watch."""
    topic = topic_name(case_watch_spec(), settings)
    producer = kafka_producer(settings, client_id="bench-reconcile-track")
    try:
        sent = []
        for case_id in case_ids:
            # The same record `offload-bridge track CASE_ID` writes.
            value = json.dumps({"caseId": case_id, "at": time.time_ns() // 1_000_000}).encode()
            key = case_id.encode()
            partition = partition_for(key, settings.offload_topic_partitions)
            sent.append(producer.send(topic, value=value, key=key, partition=partition))
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()


def body_of(plan: CasePlan, run: str, compression: Compression, webhook_url: str | None) -> dict[str, Any]:
    return case_body(
        webhook_url,
        scenario=plan.scenario,
        step_ms=compression.real_ms(plan.step_sim_ms),
        clientReferenceId=plan.reference(run),
    )


async def request_cases(
    settings: Settings, plans: list[CasePlan], run: str, compression: Compression
) -> None:
    """Case requests on case-requests (acks=all); the worker creates the cases."""
    topic = topic_name(CASE_REQUESTS, settings)
    producer = kafka_reading.producer(settings)
    await producer.start()
    try:
        sent = []
        for plan in plans:
            request_id = f"req-{run}-{plan.index}"
            request = CaseRequest.model_validate(
                {**body_of(plan, run, compression, None), "requestId": request_id}
            )
            value = request.model_dump_json(exclude_unset=True).encode()
            sent.append(await producer.send(topic, value, key=request_id.encode()))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def create_directly(
    sim_url: str,
    webhook_url: str,
    plans: list[CasePlan],
    run: str,
    compression: Compression,
    deadline_s: float,
) -> list[str]:
    """POST /cases at the simulator, 8 at a time (a team that creates cases itself); the caseIds."""
    created: list[str] = []
    pending = iter(plans)
    headers = {"x-api-key": DEFAULT_API_KEY}
    async with httpx.AsyncClient(base_url=sim_url, headers=headers, timeout=30) as client:

        async def create() -> None:
            for plan in pending:
                response = await client.post("/cases", json=body_of(plan, run, compression, webhook_url))
                response.raise_for_status()
                created.append(response.json()["data"]["caseId"])

        await asyncio.wait_for(asyncio.gather(*(create() for _ in range(8))), deadline_s)
    return created


@dataclass
class CaseView:
    """What case-state said of one case: every record's (Kafka timestamp, lastEventAt), and the latest."""

    records: list[tuple[int, int | None]] = field(default_factory=list)
    latest: dict[str, Any] = field(default_factory=dict)


class Observer:
    """Reads case-state from its beginning for the whole run, and answers questions as a person would:
    once case-state shows one (a question whose webhook was dropped waits for the repair), after the
    plan's delay."""

    def __init__(self, settings: Settings, plans: list[CasePlan], compression: Compression) -> None:
        self.settings = settings
        self.plans = plans
        self.compression = compression
        self.views: dict[str, CaseView] = {}
        self.answered: set[tuple[str, str]] = set()
        self.answers_sent = 0
        self.last_record_at = time.monotonic()
        self._tasks: set[asyncio.Task[None]] = set()
        self._producer: Any = None
        self._consumer: Any = None
        self._reader: asyncio.Task[None] | None = None
        self.failure: BaseException | None = None

    def check(self) -> None:
        """Raise what stopped the reader or an answer: the run would otherwise wait for nothing."""
        if self.failure is not None:
            raise RuntimeError(f"the bench's case-state reader or answerer failed: {self.failure!r}")

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failure = self.failure or task.exception()

    async def start(self) -> None:
        self._producer = kafka_reading.producer(self.settings)
        await self._producer.start()
        self._consumer = await kafka_reading.from_beginning(
            self.settings, topic_name(CASE_STATE, self.settings)
        )
        self._reader = asyncio.create_task(self._read(), name="case-state-reader")
        self._reader.add_done_callback(self._done)

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._reader] if self._reader else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, *([self._reader] if self._reader else []), return_exceptions=True)
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _read(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5_000)
            for records in batches.values():
                for record in records:
                    if record.key is None or record.value is None:
                        continue
                    self._seen(record.key.decode(), record.timestamp, json.loads(record.value))

    def _seen(self, case_id: str, timestamp: int, state: dict[str, Any]) -> None:
        self.last_record_at = time.monotonic()
        view = self.views.setdefault(case_id, CaseView())
        view.records.append((timestamp, state.get("lastEventAt")))
        view.latest = state
        question = state.get("inputRequest") or {}
        if state.get("status") != "INPUT_NEEDED" or not question.get("id"):
            return
        if (case_id, question["id"]) in self.answered:
            return
        self.answered.add((case_id, question["id"]))
        index = index_of(state.get("clientReferenceId"))
        plan = self.plans[index] if index is not None and index < len(self.plans) else None
        asked = sum(1 for answered_case, _ in self.answered if answered_case == case_id) - 1
        delays = plan.answer_delays_sim_ms if plan is not None else ()
        delay_ms = delays[asked] if asked < len(delays) else 0
        delay_s = delay_ms / 1000 / self.compression.factor
        task = asyncio.create_task(self._answer(case_id, question["id"], delay_s))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _answer(self, case_id: str, question_id: str, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        answer = Answer(caseId=case_id, inputRequestId=question_id, providedContext="Yes, that works for us.")
        value = answer.model_dump_json(exclude_none=True).encode()
        await (await self._producer.send(topic_name(ANSWERS, self.settings), value, key=case_id.encode()))
        self.answers_sent += 1


class CounterSampler:
    """The worker's ``GET /stats/reconcile`` every ``every_s`` (real): the GETs it made over time."""

    # The counters that each stand for one GET /cases/{id} the reconciler made, whatever it answered.
    CALLS = ("checked", "not_found", "forbidden", "throttled", "invalid")

    def __init__(self, worker_url: str, every_s: float) -> None:
        self.worker_url = worker_url
        self.every_s = every_s
        self.samples: list[tuple[float, int]] = []  # (monotonic s, GETs so far)
        self.latest: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="reconcile-counters")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.sample()

    async def sample(self) -> None:
        async with httpx.AsyncClient(headers=worker_headers(), timeout=5) as client:
            await self._sample(client)

    async def _sample(self, client: httpx.AsyncClient) -> None:
        try:
            data = (await client.get(f"{self.worker_url}/stats/reconcile")).json()["data"]
        except (httpx.HTTPError, ValueError, KeyError):
            return  # a busy worker misses a sample; the next one carries the totals
        self.latest = {name: int(value) for name, value in data.items() if isinstance(value, int)}
        self.samples.append((time.monotonic(), self.calls))

    @property
    def calls(self) -> int:
        return sum(self.latest.get(name, 0) for name in self.CALLS)

    async def _run(self) -> None:
        async with httpx.AsyncClient(headers=worker_headers(), timeout=5) as client:
            while True:
                await self._sample(client)
                await asyncio.sleep(self.every_s)
