"""The worker's logic in-process: no broker, no subprocess.

The simulator's ASGI app runs in the test's event loop (its lifespan too, so its cases move on), the
Offload client reaches it through ``httpx.ASGITransport``, tables are dicts, and the outputs are recorded
by sinks that implement the interfaces the delivery and creation classes publish to, with the journal's
rule (one terminal outcome per source record) kept in memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import HttpUrl, SecretStr

from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.schemas.answers import AnswerOutcome, RetryAnswer
from offload_bridge.schemas.case_requests import CaseRequest, CaseRequestOutcome, RetryCaseRequest
from offload_bridge.schemas.case_state import CheckSchedule
from offload_bridge.schemas.headers import ORIGIN_HEADER
from offload_bridge.settings import Settings
from offload_bridge.simulator.app import create_app as create_simulator
from offload_bridge.simulator.settings import SimulatorSettings
from offload_bridge.simulator.testing import DEFAULT_API_KEY
from offload_bridge.streams.case_requests.outputs import DeadLetter, SourceRecord
from offload_bridge.streams.offload_api import OffloadApi
from offload_bridge.streams.reconcile.diff import SynthesizedEvent

PARTITIONS = 6
SIM_URL = "http://offload.test"


def settings(**changes: Any) -> Settings:
    """Worker settings for in-process tests: fast retries, the simulator's key."""
    fast: dict[str, Any] = {"offload_retry_base_s": 0.01, "offload_retry_max_s": 0.05}
    return Settings(
        offload_base_url=HttpUrl(SIM_URL),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        offload_topic_partitions=PARTITIONS,
        **(fast | changes),
    )


@dataclass
class Simulator:
    """The simulator app in this event loop: ``control`` for ``/_sim``, ``api`` as the worker's client."""

    app: Any
    control: httpx.AsyncClient
    transport: httpx.AsyncBaseTransport

    def api(self, worker_settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> OffloadApi:
        return OffloadApi(worker_settings, transport=transport or self.transport)

    async def set_faults(self, **changes: Any) -> None:
        response = await self.control.put("/_sim/faults", json=changes)
        assert response.status_code == 200, response.text

    async def case_ids(self) -> list[str]:
        ids: list[str] = (await self.control.get("/_sim/cases")).json()["data"]["caseIds"]
        return ids

    async def create_case(self, body: dict[str, Any]) -> str:
        response = await self.control.post("/cases", json=body, headers={"x-api-key": DEFAULT_API_KEY})
        assert response.status_code in (201, 202), response.text
        case_id: str = response.json()["data"]["caseId"]
        return case_id

    async def get_case(self, case_id: str) -> dict[str, Any]:
        response = await self.control.get(f"/cases/{case_id}", headers={"x-api-key": DEFAULT_API_KEY})
        data: dict[str, Any] = response.json()["data"]
        return data

    async def wait_for_case(
        self, case_id: str, ready: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            case = await self.get_case(case_id)
            if ready(case):
                return case
            assert time.monotonic() < deadline, f"case {case_id} never got there: {case}"
            await asyncio.sleep(0.01)


@asynccontextmanager
async def simulator(step_ms: int = 20) -> AsyncIterator[Simulator]:
    app = create_simulator(SimulatorSettings(step_ms=step_ms, api_keys=DEFAULT_API_KEY))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=SIM_URL) as control:
            yield Simulator(app, control, transport)


class RefusingTransport(httpx.AsyncBaseTransport):
    """Refuses the first ``refusals`` connections (the request never leaves), then passes through."""

    def __init__(self, inner: httpx.AsyncBaseTransport, refusals: int) -> None:
        self.inner = inner
        self.refusals = refusals

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.refusals > 0:
            self.refusals -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class Message:
    """A Kafka record as the agents see it (the fields of a Faust message they read)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    timestamp: float = field(default_factory=time.time)


class Topic:
    """Hands out offsets, and puts records where Kafka's default partitioner would."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.offset = 0

    def record(
        self, key: str | bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None
    ) -> Message:
        raw_key = key.encode() if isinstance(key, str) else key
        partition = partition_for(raw_key.decode(errors="replace"), PARTITIONS) if raw_key else 0
        self.offset += 1
        return Message(self.name, partition, self.offset, raw_key, value, list(headers or ()))


class MemoryTable(dict[str, Any]):
    """A table as the logic uses it; every write is durable at once. ``saved``: the keys of ``save``s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.saved: list[str] = []

    async def put_durably(self, key: str, value: Any, timeout_s: float) -> None:
        self[key] = value

    async def save(self, key: str, value: Any) -> None:
        self[key] = value
        self.saved.append(key)

    def reschedule(self, key: str, check: CheckSchedule | None) -> None:
        record = self.get(key)
        if record is not None:
            self[key] = record.model_copy(update={"check": check})


@dataclass
class _Journal:
    """The journal's rule in memory: the origins (per key) that have their terminal outcome."""

    done: set[tuple[str, str]] = field(default_factory=set)

    def claim(self, key: str, origin: str) -> bool:
        if (key, origin) in self.done:
            return False
        self.done.add((key, origin))
        return True


@dataclass
class AnswerRecording:
    """Implements ``streams.answers.outputs.AnswerSink``."""

    terminal_outcomes: list[tuple[str, AnswerOutcome]] = field(default_factory=list)  # (origin, outcome)
    progress: list[AnswerOutcome] = field(default_factory=list)
    retries: list[Message] = field(default_factory=list)
    dead_letters: list[tuple[Message, AnswerOutcome]] = field(default_factory=list)
    journal: _Journal = field(default_factory=_Journal)
    retry_topic: Topic = field(default_factory=lambda: Topic("answers.retry"))

    async def has_outcome(self, case_id: str, origin: str, partition: int) -> bool:
        return (case_id, origin) in self.journal.done

    async def outcome(self, record: AnswerOutcome) -> None:
        self.progress.append(record)

    async def terminal(self, message: Any, origin: str, record: AnswerOutcome, dead_letter: bool) -> bool:
        if not self.journal.claim(record.caseId, origin):
            return False
        if dead_letter:
            await self.dead_letter(message, record.caseId, record)
        self.terminal_outcomes.append((origin, record))
        return True

    async def schedule(self, retry: RetryAnswer, origin: str) -> None:
        value = retry.model_dump_json(exclude_none=True).encode()
        self.retries.append(self.retry_topic.record(retry.caseId, value, [(ORIGIN_HEADER, origin.encode())]))

    async def defer(self, message: Any) -> None:
        self.retries.append(self.retry_topic.record(message.key, message.value, message.headers))

    async def dead_letter(self, message: Any, case_id: str | None, outcome: AnswerOutcome) -> None:
        self.dead_letters.append((message, outcome))

    @property
    def ended(self) -> list[AnswerOutcome]:
        """The terminal outcomes, in order."""
        return [outcome for _, outcome in self.terminal_outcomes]


@dataclass
class CaseRequestRecording:
    """Implements ``streams.case_requests.outputs.CaseRequestSink``."""

    terminal_outcomes: list[tuple[str, CaseRequestOutcome]] = field(default_factory=list)
    progress_outcomes: list[CaseRequestOutcome] = field(default_factory=list)
    announced: list[tuple[str, str]] = field(default_factory=list)  # (caseId, requestId)
    retries: list[Message] = field(default_factory=list)
    dead_letters: list[tuple[SourceRecord, DeadLetter]] = field(default_factory=list)
    journal: _Journal = field(default_factory=_Journal)
    retry_topic: Topic = field(default_factory=lambda: Topic("case-requests.retry"))

    async def has_outcome(self, request_id: str, origin: str, partition: int) -> bool:
        return (request_id, origin) in self.journal.done

    async def terminal(
        self,
        partition: int,
        origin: str,
        outcome: CaseRequestOutcome,
        dead_letter: tuple[SourceRecord, DeadLetter] | None,
    ) -> bool:
        if not self.journal.claim(outcome.requestId, origin):
            return False
        if dead_letter is not None:
            self.dead_letters.append(dead_letter)
        self.terminal_outcomes.append((origin, outcome))
        return True

    async def progress(self, outcome: CaseRequestOutcome) -> None:
        self.progress_outcomes.append(outcome)

    async def announce(self, case_id: str, request: CaseRequest, started: int) -> None:
        self.announced.append((case_id, request.requestId))

    async def schedule(self, retry: RetryCaseRequest, origin: str) -> None:
        value = retry.model_dump_json(exclude_unset=True).encode()
        headers = [(ORIGIN_HEADER, origin.encode())]
        self.retries.append(self.retry_topic.record(retry.requestId, value, headers))

    async def defer(self, message: Any) -> None:
        self.retries.append(self.retry_topic.record(message.key, message.value, message.headers))

    @property
    def ended(self) -> list[CaseRequestOutcome]:
        """The terminal outcomes, in order."""
        return [outcome for _, outcome in self.terminal_outcomes]


async def drain_retries(
    retries: list[Message], handle: Callable[[Message], Awaitable[None]], limit: int = 20
) -> int:
    """Feed every scheduled retry (and those it schedules) to ``handle``, as the retry agent would."""
    handled = 0
    while retries:
        assert handled < limit, "retries never end"
        await handle(retries.pop(0))
        handled += 1
    return handled


@dataclass
class PublishedEvents:
    """Records what the reconciler publishes into case-events."""

    events: list[tuple[str, SynthesizedEvent]] = field(default_factory=list)

    async def __call__(self, case_id: str, event: SynthesizedEvent) -> None:
        self.events.append((case_id, event))
