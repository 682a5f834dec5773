"""Storage sizing: what each event and each case take on the broker, and what a year of them costs.

1. CASES cases go through the typical lifecycle, each record built and written as the part that writes it
   does, in a fresh topic prefix:
   - ``case-requests``: the request (a W-9 collection by email, with a resultSchema and metadata), as
     ``offload-bridge create-case`` publishes it; ``case-request-outcomes``: its ``created`` outcome, as
     the worker publishes it (header ``origin``);
   - ``case-events``: ``case.created`` as the case-request agent synthesizes it (``source=bridge``), then
     ``case.input_needed`` and ``case.completed`` (the signed form attached) as the simulator's webhooks
     send them (its own ``Engine`` and ``Case.event``), with the headers the ingress sets;
   - ``answers``: an answer to the question, as ``offload-bridge answer`` publishes it;
     ``answer-outcomes``: its ``accepted`` outcome (header ``origin``);
   - ``case-state``: the case's final state as the worker writes it (compacted: one record a case is
     what stays once the log is cleaned), measured on its own.
2. Each record is sent alone and acknowledged before the next, so it is a batch of its own: at the
   volumes sized here (1,000 cases a day are 8,000 records, one every 11 s) nothing shares a batch, and each
   record pays a batch header (61 bytes). A second prefix writes the same records in batches (a burst,
   or a backfill), the lower bound.
3. The broker's size of each topic (DescribeLogDirs: the bytes of its log segments on the leader), against
   the anchor measured in the same run: the bytes handed to the producer (key, value, header names and
   values). A cluster keeps a copy per replica: the yearly figures multiply by the replication factor.

Only targets the configured broker (the local one by default); the topics are deleted afterwards.
Run: ``.venv/bin/python -m bench.storage [--cases 1000]``.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, cast

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.connection import admin_for, kafka_producer
from offload_bridge.schemas.answers import Answer, AnswerOutcome, Outcome
from offload_bridge.schemas.case_requests import CaseRequest, CaseRequestOutcome, CaseRequestOutcomeKind
from offload_bridge.schemas.case_state import AnswerRecord
from offload_bridge.schemas.headers import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    ORIGIN_HEADER,
    RECEIVED_AT_HEADER,
    SOURCE_HEADER,
)
from offload_bridge.settings import Settings, get_settings
from offload_bridge.simulator.engine import QUESTIONS, Engine
from offload_bridge.simulator.models import CreateCaseRequest
from offload_bridge.simulator.store import INPUT_NEEDED_EVENT, CaseStore
from offload_bridge.simulator.webhooks import WebhookSender
from offload_bridge.streams.case_requests.outputs import created_event
from offload_bridge.streams.reconcile.diff import SOURCE_BRIDGE
from offload_bridge.streams.state.fold import fold
from offload_bridge.streams.state.records import decode_event
from offload_bridge.testing import delete_topics_with_prefix, unique_prefix
from offload_bridge.topics import (
    ANSWER_OUTCOMES,
    ANSWERS,
    CASE_EVENTS,
    CASE_REQUEST_OUTCOMES,
    CASE_REQUESTS,
    CASE_STATE,
    TopicSpec,
    topic_name,
)

HISTORY_OF_A_CASE = (CASE_REQUESTS, CASE_REQUEST_OUTCOMES, CASE_EVENTS, ANSWERS, ANSWER_OUTCOMES)
MEASURED = (*HISTORY_OF_A_CASE, CASE_STATE)
DAILY_CASES = (1_000, 10_000)
REPLICATION = 3
GB = 1_000_000_000

REQUEST: dict[str, Any] = {
    "channel": "EMAIL",
    "goal": {
        "objective": "Collect a signed W-9 form from the vendor",
        "knowledge": {
            "vendorName": "Acme Supplies Ltd",
            "invoiceNumber": "INV-2048",
            "context": "We need the W-9 on file before the first payment run of the quarter.",
        },
    },
    "counterparty": {"address": "accounts@acme-supplies.example", "name": "Acme Accounts Payable"},
    "senderPersona": {"name": "Sam Lee", "title": "Vendor onboarding", "company": "Example Corp"},
    "constraints": ["Be polite and concise", "Do not share banking details by email"],
    "resultSchema": {
        "type": "object",
        "properties": {
            "signedW9Received": {"type": "boolean"},
            "taxId": {"type": "string"},
            "documentUrl": {"type": "string"},
        },
        "required": ["signedW9Received"],
    },
    "clientWebhookUrl": "https://bridge.example.com/webhooks/offload/3f0c9d7e2b",
    # simAttachments: the simulator's counterparty replies with the signed form attached.
    "metadata": {"vendorId": "vendor_2048", "team": "procurement", "simAttachments": 1},
}
ANSWER_TEXT = "Yes, a signed PDF is fine. Please send it to accounts@example.com."


@dataclass(frozen=True)
class Record:
    spec: TopicSpec
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]

    @property
    def payload_bytes(self) -> int:
        return len(self.key) + len(self.value) + sum(len(name) + len(value) for name, value in self.headers)


def _event_headers(body: bytes, source: str) -> list[tuple[str, bytes]]:
    event = json.loads(body)
    return [
        (EVENT_TYPE_HEADER, event["event_type"].encode()),
        (EVENT_ID_HEADER, event["event_id"].encode()),
        (RECEIVED_AT_HEADER, str(time.time_ns() // 1_000_000).encode()),
        (SOURCE_HEADER, source.encode()),
    ]


def one_case(store: CaseStore, number: int) -> list[Record]:
    """Every record a typical case leaves: requested, created, asked, answered, completed."""
    reference = f"vendor_{number:06d}"
    body = {**REQUEST, "clientReferenceId": reference, "metadata": {**REQUEST["metadata"], "n": number}}
    request = CaseRequest.model_validate({**body, "requestId": f"req-{uuid.uuid4()}"})
    case = store.create("bench-key", CreateCaseRequest.model_validate(body), "input_then_complete", 200)
    key, request_key = case.case_id.encode(), request.requestId.encode()
    records = [Record(CASE_REQUESTS, request_key, request.model_dump_json(exclude_unset=True).encode(), [])]
    created = created_event(case.case_id, request, case.created_at)
    records.append(Record(CASE_EVENTS, key, created.body, _event_headers(created.body, SOURCE_BRIDGE)))
    outcome = CaseRequestOutcome(
        requestId=request.requestId, outcome=CaseRequestOutcomeKind.CREATED, caseId=case.case_id,
        httpStatus=201,
    )  # fmt: skip
    origin = f"offload.{CASE_REQUESTS.name}:3:{number}".encode()  # <topic>:<partition>:<offset>
    records.append(
        Record(
            CASE_REQUEST_OUTCOMES, request_key, outcome.model_dump_json().encode(), [(ORIGIN_HEADER, origin)]
        )
    )
    # The simulator's own steps (its Engine): the first email, a question, the answer, the reply with the
    # signed form attached, completion. Its webhooks are collected instead of sent.
    engine = Engine(cast(WebhookSender, _Webhooks(records, key)))
    engine.first_send(case)
    case.status = "INPUT_NEEDED"  # Engine.ask, which waits for the answer
    case.input_request = {"id": str(uuid.uuid4()), "question": QUESTIONS[0], "status": "PENDING"}
    case.input_request["requestedAt"] = case.touch()
    engine.emit(case, INPUT_NEEDED_EVENT)
    answer = Answer(
        caseId=case.case_id, inputRequestId=case.input_request["id"], providedContext=ANSWER_TEXT,
        submittedBy="jane.doe@example.com",
    )  # fmt: skip
    records.append(Record(ANSWERS, key, answer.model_dump_json(exclude_none=True).encode(), []))
    accepted = AnswerOutcome(
        answerId=answer.answer_id, caseId=case.case_id, inputRequestId=answer.inputRequestId,
        outcome=Outcome.ACCEPTED, attempt=1, httpStatus=202, caseStatus="INPUT_NEEDED",
        currentInputRequestId=answer.inputRequestId,
    )  # fmt: skip
    origin = f"offload.{ANSWERS.name}:3:{number}".encode()
    records.append(
        Record(ANSWER_OUTCOMES, key, accepted.model_dump_json().encode(), [(ORIGIN_HEADER, origin)])
    )
    case.input_request["status"] = "RESOLVED"
    case.status = "RUNNING"
    case.touch()
    engine.complete(case)
    records.append(_final_state(key, [r for r in records if r.spec is CASE_EVENTS], accepted))
    return records


@dataclass(frozen=True)
class _Webhooks:
    """Takes the simulator's webhooks as records of case-events, bodies as it would send them."""

    records: list[Record]
    key: bytes

    def send(self, case: Any, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()  # WebhookSender.send's encoding
        self.records.append(Record(CASE_EVENTS, self.key, body, _event_headers(body, "webhook")))


def _final_state(key: bytes, events: list[Record], accepted: AnswerOutcome) -> Record:
    """The case's last case-state record: its events folded, the answer's outcome recorded."""
    folded = None
    for event in events:
        folded, _ = fold(folded, decode_event(event.key, event.value), dict(event.headers))
    assert folded is not None
    answer = AnswerRecord(answerId=accepted.answerId, outcome=accepted.outcome.value, at=accepted.at)
    state = folded.state.model_copy(update={"answers": {accepted.inputRequestId or "": answer}})
    return Record(CASE_STATE, key, state.model_dump_json().encode(), [])


def write(settings: Settings, records: list[Record], batched: bool) -> float:
    """Write every record: one at a time (each its own batch), or all at once in batches; seconds taken."""
    options: dict[str, Any] = {"linger_ms": 50, "batch_size": 512 * 1024} if batched else {"linger_ms": 0}
    producer = kafka_producer(settings, **options)
    started = time.perf_counter()
    try:
        sent = []
        for record in records:
            future = producer.send(
                topic_name(record.spec, settings), key=record.key, value=record.value, headers=record.headers
            )
            if batched:
                sent.append(future)
            else:
                future.get(timeout=30)
        producer.flush(timeout=60)
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()
    return time.perf_counter() - started


def log_bytes(settings: Settings) -> dict[str, int]:
    """Bytes of each measured topic's log segments, summed over its partitions (leader replicas)."""
    names = {topic_name(spec, settings): spec.name for spec in MEASURED}
    admin = admin_for(settings)
    try:
        described = admin.describe_log_dirs(list(names))
    finally:
        admin.close()
    sizes: dict[str, int] = defaultdict(int)
    for broker in described:
        for log_dir in broker["log_dirs"]:
            for topic in log_dir["topics"]:
                if topic["name"] in names:
                    sizes[names[topic["name"]]] += sum(p["partition_size"] for p in topic["partitions"])
    return dict(sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases written (default 1000)")
    args = parser.parse_args()
    base = get_settings()
    store = CaseStore()
    records = [record for number in range(args.cases) for record in one_case(store, number)]
    payload: dict[str, int] = defaultdict(int)
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        payload[record.spec.name] += record.payload_bytes
        counts[record.spec.name] += 1

    measured: dict[str, dict[str, int]] = {}
    for mode in ("alone", "batched"):
        settings = base.model_copy(update={"offload_topic_prefix": unique_prefix(f"storage-{mode}")})
        try:
            ensure_topics(settings, MEASURED)
            seconds = write(settings, records, batched=mode == "batched")
            deadline = time.monotonic() + 30
            sizes = log_bytes(settings)
            while sum(sizes.values()) == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                sizes = log_bytes(settings)
            measured[mode] = sizes
            print(f"{mode}: {len(records)} records written in {seconds:.1f} s", flush=True)
        finally:
            delete_topics_with_prefix(settings)
    report(args.cases, counts, payload, measured)


def report(
    cases: int, counts: dict[str, int], payload: dict[str, int], measured: dict[str, dict[str, int]]
) -> None:
    print(f"\n{cases} cases, {sum(counts.values())} records; bytes on the broker (one replica)\n")
    print("| topic | records a case | handed to the producer, a record | on the broker, a record: alone "
          "| batched |")  # fmt: skip
    print("|---|---|---|---|---|")
    for spec in MEASURED:
        name, count = spec.name, counts[spec.name]
        alone, batched = measured["alone"].get(name, 0), measured["batched"].get(name, 0)
        print(
            f"| `{name}` | {count // cases} | {payload[name] / count:,.0f} | {alone / count:,.0f} "
            f"| {batched / count:,.0f} |"
        )
    history = [spec.name for spec in HISTORY_OF_A_CASE]
    per_case = {mode: sum(sizes.get(name, 0) for name in history) / cases for mode, sizes in measured.items()}
    handed = sum(payload[name] for name in history) / cases
    events = counts[CASE_EVENTS.name]
    print(
        f"\nA case event: {measured['alone'][CASE_EVENTS.name] / events:,.0f} bytes alone, "
        f"{measured['batched'][CASE_EVENTS.name] / events:,.0f} batched "
        f"({payload[CASE_EVENTS.name] / events:,.0f} handed to the producer)."
    )
    print(
        f"A case's history ({', '.join(history)}): {per_case['alone']:,.0f} bytes alone, "
        f"{per_case['batched']:,.0f} batched ({handed:,.0f} handed to the producer); its latest state "
        f"(case-state, compacted) {measured['alone'].get(CASE_STATE.name, 0) / cases:,.0f} more."
    )
    state = measured["alone"].get(CASE_STATE.name, 0) / cases
    print(
        f"\n| cases a day | history, a year (one replica) | x{REPLICATION} replicas "
        f"| with case-state, x{REPLICATION} |"
    )
    print("|---|---|---|---|")
    for daily in DAILY_CASES:
        year = per_case["alone"] * daily * 365
        with_state = (per_case["alone"] + state) * daily * 365 * REPLICATION
        figures = (year, year * REPLICATION, with_state)
        print(f"| {daily:,} | " + " | ".join(f"{value / GB:,.1f} GB" for value in figures) + " |")


if __name__ == "__main__":
    main()
