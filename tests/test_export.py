"""``offload-bridge export``: the fact topics as Parquet, exactly once, against the real broker.

The rows are judged against the topics as kafka-python reads them (a client the exporter does not use:
it reads with librdkafka), and read back with both pyarrow and DuckDB.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from offload_bridge.analytics.files import TEMPORARY_MARK, Target
from offload_bridge.analytics.tables import ANSWERS, CASE_REQUESTS, EVENTS, FACT_TABLES, TableSpec
from offload_bridge.export.batch import COLUMNAR_MIN, Records, arrow_table, read_records
from offload_bridge.export.exporter import Exporter, Summary
from offload_bridge.export.rows import (
    READERS,
    Row,
    Skip,
    read_answer_outcome,
    read_case_request_outcome,
    read_event,
)
from offload_bridge.kafka.connection import admin_for, kafka_producer
from offload_bridge.kafka.reading import read_topic
from offload_bridge.schemas.answers import AnswerOutcome, Outcome
from offload_bridge.schemas.case_requests import CaseRequestOutcome, CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.testing import ServiceProcess, free_port, settings_env, unique_group
from offload_bridge.topics import (
    ANSWER_OUTCOMES,
    CASE_EVENTS,
    CASE_REQUEST_OUTCOMES,
    TopicMissing,
    TopicSpec,
    topic_name,
)
from tests.streams_support import SEED_COMPLETED, SEED_INPUT_NEEDED, event_body, publish_webhooks, wait_for

DAY = 1_774_131_900_000  # 2026-03-21, when the repository's seed webhooks happened
RECEIVED = [("received_at", b"1774131900100"), ("source", b"webhook")]


# --- records -> rows (no broker) ----------------------------------------------------------------------------


def as_model(table: TableSpec, row: Row) -> Any:
    """The row as its table's row model: every column present, in order, of the declared type."""
    fields = list(table.row.model_fields)
    assert len(row.values) == len(fields)
    return table.row.model_validate(dict(zip(fields, row.values, strict=True)))


def test_a_webhook_record_makes_an_events_row_with_the_envelope_and_the_ingress_headers() -> None:
    row = read_event(SEED_INPUT_NEEDED, RECEIVED, 3, 41, 0)
    assert isinstance(row, Row)
    event = as_model(EVENTS, row)
    body = json.loads(SEED_INPUT_NEEDED)
    assert (event.event_id, event.case_id, event.event_type) == (
        body["event_id"], body["data"]["caseId"], "case.input_needed",
    )  # fmt: skip
    assert int(event.event_time.timestamp() * 1000) == body["timestamp"]
    assert int(event.received_at.timestamp() * 1000) == 1774131900100
    assert (event.source, event.input_request_id) == ("webhook", body["data"]["inputRequestId"])
    assert (event.question, event.attempt_count) == (body["data"]["inputRequest"], 1)
    assert (event.body, event.kafka_partition, event.kafka_offset) == (SEED_INPUT_NEEDED.decode(), 3, 41)
    assert (row.date, row.event_id) == ("2026-03-21", body["event_id"])
    completed = read_event(SEED_COMPLETED, None, 0, 0, 1774131999999)
    assert isinstance(completed, Row)
    done = as_model(EVENTS, completed)
    assert (done.result_status, done.status, done.source) == ("goal_achieved", "COMPLETED", None)
    # Without the ingress' received_at header the record's own Kafka timestamp stands in.
    assert int(done.received_at.timestamp() * 1000) == 1774131999999
    assert arrow_table(EVENTS, [row.values, completed.values]).num_rows == 2


def test_terminal_outcomes_make_rows_and_retrying_makes_none() -> None:
    answer = AnswerOutcome(answerId="a-1", caseId="c-1", inputRequestId="ir-1", outcome=Outcome.ACCEPTED,
                           attempt=2, httpStatus=202, submittedBy="ap-team", at=DAY)  # fmt: skip
    row = read_answer_outcome(answer.model_dump_json().encode(), None, 1, 7, 0)
    assert isinstance(row, Row)
    model = as_model(ANSWERS, row)
    assert (model.answer_id, model.outcome, model.attempt, model.http_status) == ("a-1", "accepted", 2, 202)
    assert model.submitted_by == "ap-team"
    retrying = answer.model_copy(update={"outcome": Outcome.RETRYING})
    assert read_answer_outcome(retrying.model_dump_json().encode(), None, 1, 8, 0) is None

    request = CaseRequestOutcome(requestId="r-1", outcome=CaseRequestOutcomeKind.CREATED, caseId="c-9",
                                 httpStatus=201, at=DAY)  # fmt: skip
    made = read_case_request_outcome(request.model_dump_json().encode(), None, 0, 3, 0)
    assert isinstance(made, Row)
    assert as_model(CASE_REQUESTS, made).case_id == "c-9"
    waiting = request.model_copy(update={"outcome": CaseRequestOutcomeKind.RETRYING})
    assert read_case_request_outcome(waiting.model_dump_json().encode(), None, 0, 4, 0) is None


def _without(path: str) -> bytes:
    body = json.loads(SEED_INPUT_NEEDED)
    *parents, last = path.split(".")
    holder = body
    for name in parents:
        holder = holder[name]
    del holder[last]
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "not_json"),
        (b"<html>", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1, 2]", "not_an_object"),
        (_without("data.caseId"), "missing_field"),
        (_without("timestamp"), "missing_field"),
        (SEED_INPUT_NEEDED.replace(b'"timestamp": 1774131900300', b'"timestamp": "soon"'), "bad_field"),
    ],
)
def test_an_unreadable_event_is_skipped_with_its_reason(value: bytes, reason: str) -> None:
    skipped = read_event(value, RECEIVED, 0, 0, 0)
    assert isinstance(skipped, Skip) and skipped.reason == reason, skipped


def good_events(count: int, start: int = 0) -> list[tuple[bytes, list[Any]]]:
    """Webhook bodies as the ingress stores them, with its headers."""
    return [
        (event_body(f"case-{n % 97}", "case.input_needed", DAY + n, "INPUT_NEEDED", inputRequest=f"q{n}",
                    inputRequestId=f"ir-{n}", attemptCount=1 + n % 3, clientReferenceId=f"ref-{n}"),
         [("received_at", str(DAY + n + 5).encode()), ("source", b"webhook")])
        for n in range(start, start + count)
    ]  # fmt: skip


def body_with(**changes: Any) -> bytes:
    """A valid body with envelope fields (or ``data`` fields, prefixed ``data_``) set to other values."""
    body = json.loads(event_body("case-x", "case.completed", DAY, "COMPLETED", attemptCount=2))
    for name, value in changes.items():
        holder, key = (body["data"], name.removeprefix("data_")) if name.startswith("data_") else (body, name)
        holder[key] = value
    return json.dumps(body).encode()


ENVELOPE = event_body("case-y", "case.failed", DAY, "FAILED")
# Records the columnar reading must refuse or read exactly as the record-by-record reader does.
TRICKY_ONES: list[tuple[bytes | None, Any]] = [
    (b"", RECEIVED), (None, RECEIVED), (b"<html>", RECEIVED), (b"[1, 2]", RECEIVED), (b" ", RECEIVED),
    (_without("data.caseId"), RECEIVED), (body_with(timestamp="soon"), RECEIVED),
    (body_with(timestamp=-5), RECEIVED), (body_with(event_id=""), RECEIVED), (body_with(data=None), RECEIVED),
    (body_with(data="x"), RECEIVED), (body_with(data_attemptCount="2"), RECEIVED),
    (body_with(data_resultStatus=7), RECEIVED), (body_with(data_channel=1.5), RECEIVED),
    (json.dumps(json.loads(ENVELOPE), indent=2).encode(), RECEIVED), (ENVELOPE + b"\r\n", RECEIVED),
    (b" " + ENVELOPE, RECEIVED), (ENVELOPE + b" " + ENVELOPE, RECEIVED),
    (ENVELOPE[:-1] + b', "x": "\xff"}', RECEIVED), (ENVELOPE[:-1] + b', "x": NaN}', RECEIVED),
    (ENVELOPE.replace(b'"event_id": "', b'"event_id": "\\ud800'), RECEIVED),
    (ENVELOPE.decode().encode("utf-16"), RECEIVED),
    (ENVELOPE[:-1] + b', "event_id": "evt_last"}', RECEIVED),
    (ENVELOPE, None), (ENVELOPE, [("received_at", b"soon")]), (ENVELOPE, [("received_at", b"9" * 25)]),
    (ENVELOPE, [("source", b"\xffbad")]), (ENVELOPE, [("received_at", b"1"), ("received_at", b"2")]),
]  # fmt: skip
_CUT = ENVELOPE.index(b'{"caseId"')
# Two bodies that together make one JSON object, then one that makes two: as many objects as bodies.
TRICKY: list[list[tuple[bytes | None, Any]]] = [
    *([record] for record in TRICKY_ONES),
    [(ENVELOPE[:_CUT], RECEIVED), (ENVELOPE[_CUT:], RECEIVED), (ENVELOPE + ENVELOPE, RECEIVED)],
]


def reference_rows(values: Sequence[tuple[bytes | None, Any]]) -> tuple[Any, list[tuple[int, str]]]:
    """The events rows of records at offsets 0.. as ``read_event`` makes them one by one; a row Arrow
    cannot hold is skipped as bad_field."""
    rows: list[tuple[Any, ...]] = []
    skips: list[tuple[int, str]] = []
    for offset, (value, headers) in enumerate(values):
        row = read_event(value, headers, 0, offset, DAY + 1)
        if isinstance(row, Skip):
            skips.append((offset, row.reason))
            continue
        try:
            arrow_table(EVENTS, [row.values])
        except ValueError:
            skips.append((offset, "bad_field"))
            continue
        rows.append(row.values)
    return arrow_table(EVENTS, rows), skips


def read_in_batch(
    values: Sequence[tuple[bytes | None, Any]], monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, list[tuple[int, str]], int]:
    """The rows of the records read as one batch, the skips, and how many records went one by one."""
    one_by_one = 0

    def counted(*args: Any) -> Any:
        nonlocal one_by_one
        one_by_one += 1
        return read_event(*args)

    monkeypatch.setitem(READERS, EVENTS.name, counted)
    records = Records(
        [0] * len(values), list(range(len(values))), [value for value, _ in values],
        [headers for _, headers in values], [DAY + 1] * len(values),
    )  # fmt: skip
    rows = read_records(EVENTS, records)
    return rows.table, [(skipped.offset, skipped.skip.reason) for skipped in rows.skipped], one_by_one


SPACING = 300  # good records between two tricky ones


def test_a_batch_of_events_is_read_in_columns_exactly_as_record_by_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    records: list[tuple[bytes | None, Any]] = []
    good = good_events(SPACING * (len(TRICKY) + 1))
    for n, tricky in enumerate(TRICKY):
        records += [*good[SPACING * n : SPACING * (n + 1)], *tricky]
    records += good[SPACING * len(TRICKY) :]
    table, skips, one_by_one = read_in_batch(records, monkeypatch)
    expected, expected_skips = reference_rows(records)
    assert skips == expected_skips
    assert len(skips) >= 15  # the tricky records do include unreadable ones
    assert table.equals(expected), table.to_pylist()[:3]
    # The batch was halved around each tricky record down to runs of fewer than COLUMNAR_MIN records,
    # which went one by one; the others were read in columns.
    assert one_by_one < COLUMNAR_MIN * len(TRICKY), one_by_one


def test_pretty_printed_bodies_and_bodies_ending_with_a_newline_are_read_in_columns_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pretty = [(json.dumps(json.loads(body), indent=2).encode() + b"\n", headers)
              for body, headers in good_events(200)]  # fmt: skip
    table, skips, one_by_one = read_in_batch(pretty, monkeypatch)
    assert (skips, one_by_one) == ([], 0)
    assert table.equals(reference_rows(pretty)[0])
    assert table["body"].to_pylist() == [body.decode() for body, _ in pretty]  # kept as they were


# --- against the broker -------------------------------------------------------------------------------------


def export_settings(settings: Settings, **more: Any) -> Settings:
    """The test's settings with a consumer group of its own."""
    return settings.model_copy(update={"offload_export_group": unique_group("export"), **more})


def lifecycle(case_id: str, start: int) -> list[bytes]:
    """Three webhooks of one case: asked, asked again, completed."""
    return [
        event_body(case_id, "case.input_needed", start, "INPUT_NEEDED", inputRequest="Signed PDF ok?",
                   inputRequestId=f"{case_id}-q1", attemptCount=1, clientReferenceId=f"ref-{case_id}"),
        event_body(case_id, "case.input_needed", start + 60_000, "INPUT_NEEDED",
                   inputRequest="Which address?", inputRequestId=f"{case_id}-q2", attemptCount=1),
        event_body(case_id, "case.completed", start + 3_600_000, "COMPLETED", resultStatus="goal_achieved"),
    ]  # fmt: skip


def publish_raw(
    settings: Settings, spec: TopicSpec, records: Iterable[tuple[bytes, bytes, list[Any]]]
) -> None:
    """(key, value, headers) records through one kafka-python producer (Kafka's default partitioner)."""
    producer = kafka_producer(settings, linger_ms=5)
    try:
        sent = [producer.send(topic_name(spec, settings), value=value, key=key, headers=headers)
                for key, value, headers in records]  # fmt: skip
        for future in sent:
            future.get(timeout=30)
    finally:
        producer.close()


def reconciler_copy(body: bytes) -> tuple[bytes, bytes, list[Any]]:
    """The same event as the reconciler publishes it when it finds what the webhook said: same id."""
    event = json.loads(body)
    headers = [("event_type", event["event_type"].encode()), ("event_id", event["event_id"].encode()),
               ("received_at", b"1774140000000"), ("source", b"reconciler")]  # fmt: skip
    return event["data"]["caseId"].encode(), body, headers


def topic_event_ids(settings: Settings) -> list[str]:
    """Every record's event_id as kafka-python reads case-events (duplicates included)."""
    records = read_topic(settings, topic_name(CASE_EVENTS, settings))
    return [json.loads(record.value)["event_id"] for record in records]


def terminal_outcomes(settings: Settings, spec: TopicSpec, id_field: str) -> list[tuple[str, str]]:
    records = read_topic(settings, topic_name(spec, settings))
    values = [json.loads(record.value) for record in records]
    return sorted((value[id_field], value["outcome"]) for value in values if value["outcome"] != "retrying")


def duck(query: str) -> list[tuple[Any, ...]]:
    relation = duckdb.sql(query)
    assert relation is not None
    rows: list[tuple[Any, ...]] = relation.fetchall()
    return rows


def parquet_rows(directory: Path, table: str, columns: list[str]) -> list[tuple[Any, ...]]:
    """The table's rows as pyarrow reads the Hive layout, sorted."""
    if not (directory / table).exists():
        return []
    dataset = ds.dataset(directory / table, format="parquet", partitioning="hive")
    data = dataset.to_table(columns=columns).to_pylist()
    return sorted(tuple(row[name] for name in columns) for row in data)


def fact_files(directory: Path) -> dict[str, float]:
    paths = [path for table in FACT_TABLES for path in (directory / table.name).rglob("*")]
    return {str(path): path.stat().st_mtime for path in paths if path.is_file()}


def export(settings: Settings, directory: Path) -> Summary:
    return Exporter(settings, Target.parse(str(directory))).run()


def test_a_run_exports_each_distinct_event_and_terminal_outcome_once_and_a_rerun_only_what_is_new(
    topics: Settings, tmp_path: Path
) -> None:
    settings = export_settings(topics)
    cases = [f"case-{n}" for n in range(12)]
    bodies = [body for n, case in enumerate(cases) for body in lifecycle(case, DAY + n * 1000)]
    publish_webhooks(settings, bodies)
    # The reconciler found one of them first: the same event_id again, later in the partition.
    publish_raw(settings, CASE_EVENTS, [reconciler_copy(bodies[4])])
    outcomes = [
        AnswerOutcome(answerId="ans-1", caseId="case-1", inputRequestId="case-1-q1", outcome=Outcome.RETRYING,
                      attempt=1, httpStatus=503, at=DAY + 10),
        AnswerOutcome(answerId="ans-1", caseId="case-1", inputRequestId="case-1-q1", outcome=Outcome.ACCEPTED,
                      attempt=2, httpStatus=202, submittedBy="ap-team", at=DAY + 20),
        AnswerOutcome(answerId="ans-2", caseId="case-2", inputRequestId="old", outcome=Outcome.CONFLICT,
                      attempt=1, httpStatus=409, errorCode="INPUT_REQUEST_MISMATCH", at=DAY + 30),
    ]  # fmt: skip
    publish_raw(
        settings, ANSWER_OUTCOMES, [(o.caseId.encode(), o.model_dump_json().encode(), []) for o in outcomes]
    )
    requests = [
        CaseRequestOutcome(requestId="req-1", outcome=CaseRequestOutcomeKind.RETRYING, httpStatus=429,
                           at=DAY),
        CaseRequestOutcome(requestId="req-1", outcome=CaseRequestOutcomeKind.CREATED, caseId="case-0",
                           httpStatus=201, at=DAY + 5),
        CaseRequestOutcome(requestId="req-2", outcome=CaseRequestOutcomeKind.REJECTED, httpStatus=400,
                           at=DAY + 6),
    ]  # fmt: skip
    publish_raw(
        settings,
        CASE_REQUEST_OUTCOMES,
        [(r.requestId.encode(), r.model_dump_json().encode(), []) for r in requests],
    )

    first = export(settings, tmp_path)

    in_topic = topic_event_ids(settings)
    assert len(in_topic) == len(bodies) + 1 and len(set(in_topic)) == len(bodies)
    assert first.rows == {"events": len(bodies), "answers": 2, "case_requests": 2}
    assert first.duplicates == {"events": 1} and first.skipped == {}
    events = tmp_path / "events"
    by_arrow = parquet_rows(tmp_path, "events", ["event_id"])
    assert by_arrow == sorted((event_id,) for event_id in set(in_topic))
    glob = f"read_parquet('{events}/**/*.parquet', hive_partitioning=1)"
    assert duck(f"select count(*), count(distinct event_id) from {glob}") == [(len(bodies), len(bodies))]
    # The row kept is the webhook's (the first record), not the reconciler's copy.
    assert duck(f"select distinct source from {glob}") == [("webhook",)]
    # Hive partitions by the envelope's UTC day: the completions an hour later stay on 2026-03-21.
    assert duck(f"select distinct cast(date as varchar) from {glob}") == [("2026-03-21",)]
    answers = parquet_rows(tmp_path, "answers", ["answer_id", "outcome"])
    assert answers == terminal_outcomes(settings, ANSWER_OUTCOMES, "answerId") == [
        ("ans-1", "accepted"), ("ans-2", "conflict"),
    ]  # fmt: skip
    assert duck(f"select submitted_by from read_parquet('{tmp_path}/answers/**/*.parquet') "
                "where answer_id = 'ans-1'") == [("ap-team",)]  # fmt: skip
    assert parquet_rows(tmp_path, "case_requests", ["request_id", "outcome"]) == terminal_outcomes(
        settings, CASE_REQUEST_OUTCOMES, "requestId"
    )
    assert set(first.snapshots) == {"questions", "cases"} and first.snapshots["cases"] == len(cases)
    assert (tmp_path / "cases" / "cases.parquet").is_file()

    # A rerun finds nothing new: no row, no file touched.
    before = fact_files(tmp_path)
    again = export(settings, tmp_path)
    assert (again.rows, again.files) == ({}, {})
    assert fact_files(tmp_path) == before

    # New records, one of them a redelivery of an event written in the first run: exactly the new ones.
    late = [body for n in range(3) for body in lifecycle(f"late-{n}", DAY + 50_000 + n)]
    publish_webhooks(settings, [*late, bodies[0]])
    third = export(settings, tmp_path)
    assert third.rows == {"events": len(late)} and third.duplicates == {"events": 1}
    distinct = set(topic_event_ids(settings))
    assert duck(f"select count(*), count(distinct event_id) from {glob}") == [(len(distinct), len(distinct))]
    assert parquet_rows(tmp_path, "events", ["event_id"]) == sorted((event_id,) for event_id in distinct)


def test_unreadable_records_are_skipped_and_counted_and_the_others_exported(
    topics: Settings, tmp_path: Path
) -> None:
    settings = export_settings(topics)
    good = lifecycle("case-ok", DAY)
    publish_webhooks(settings, good)
    broken = json.loads(good[0])
    del broken["data"]["status"]
    broken["event_id"] = "evt_case-ok_broken"
    publish_raw(settings, CASE_EVENTS, [(b"case-ok", json.dumps(broken).encode(), RECEIVED)])
    accepted = AnswerOutcome(answerId="a-ok", caseId="case-ok", outcome=Outcome.ACCEPTED, at=DAY)
    unreadable: tuple[bytes, bytes, list[Any]] = (b"case-ok", b"this is not json", [])
    publish_raw(
        settings, ANSWER_OUTCOMES, [unreadable, (b"case-ok", accepted.model_dump_json().encode(), [])]
    )

    summary = export(settings, tmp_path)

    assert summary.skipped == {("events", "missing_field"): 1, ("answers", "not_json"): 1}
    assert summary.rows == {"events": len(good), "answers": 1}
    assert parquet_rows(tmp_path, "answers", ["answer_id"]) == [("a-ok",)]
    # Skipped records are behind the committed offset: a rerun does not stumble on them again.
    assert export(settings, tmp_path).skipped == {}


# --- the command, as a real process -------------------------------------------------------------------------


def exporter_process(settings: Settings, log: Path, *args: str, **env: str) -> ServiceProcess:
    return ServiceProcess(["export", *args], env={**settings_env(settings), **env}, log_path=log)


def run_to_end(settings: Settings, log: Path, *args: str, timeout_s: float = 180, **env: str) -> str:
    """Run ``export`` without --follow to its end; returns its output (it must exit 0)."""
    service = exporter_process(settings, log, *args, **env).start()
    try:
        assert service.process is not None
        code = service.process.wait(timeout=timeout_s)
    finally:
        service.stop()
    output = log.read_text()
    assert code == 0, output
    return output


def test_the_command_exports_to_a_file_url_and_prints_what_it_wrote(topics: Settings, tmp_path: Path) -> None:
    settings = export_settings(topics)
    publish_webhooks(settings, lifecycle("case-url", DAY))
    target = tmp_path / "lake"
    output = run_to_end(settings, tmp_path / "export.log", "--to", target.as_uri())
    assert re.search(r"^events\s+3 rows in 1 files$", output, re.MULTILINE), output
    assert re.search(r"^cases\s+1 rows \(snapshot\)$", output, re.MULTILINE), output
    [written] = (target / "events").rglob("*.parquet")
    assert (
        written.name == f"{topic_name(CASE_EVENTS, settings)}+{written.name.split('+')[1]}+{0:020d}.parquet"
    )
    assert pq.read_table(written).num_rows == 3


@pytest.mark.parametrize("location", ["nosuch://bucket/tables", "/dev/null/tables"])
def test_an_unusable_target_is_one_line_and_exit_2(location: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "export", "--to", location],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith(f"offload-bridge: cannot use {location} as an export target"), line


def test_topics_that_do_not_exist_are_one_line_and_exit_2(settings: Settings, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "export", "--to", str(tmp_path / "lake")],
        capture_output=True, text=True, timeout=60, env={**os.environ, **settings_env(settings)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line == f"offload-bridge: {TopicMissing(topic_name(CASE_EVENTS, settings))}", line
    assert not (tmp_path / "lake" / "events").exists()


def committed_offsets(settings: Settings) -> dict[tuple[str, int], int]:
    """The exporter group's committed offsets, as Kafka's admin API tells them."""
    admin = admin_for(settings)
    try:
        offsets = admin.list_group_offsets(settings.export_group)[settings.export_group]
    finally:
        admin.close()
    return {(tp.topic, tp.partition): meta.offset for tp, meta in offsets.items()}


def written_event_rows(directory: Path) -> int:
    files = [path for path in (directory / "events").rglob("*.parquet") if TEMPORARY_MARK not in path.name]
    total = 0
    for path in files:
        with contextlib.suppress(OSError):  # removed by the exporter while listing
            total += pq.ParquetFile(path).metadata.num_rows
    return total


def test_sigkill_in_the_middle_then_a_restart_gives_exactly_the_rows_of_one_clean_run(
    topics: Settings, tmp_path: Path
) -> None:
    settings = export_settings(topics)
    cases = [f"kill-{n}" for n in range(400)]
    publish_webhooks(settings, [body for n, case in enumerate(cases) for body in lifecycle(case, DAY + n)])
    publish_raw(
        settings,
        CASE_EVENTS,
        [reconciler_copy(lifecycle(case, DAY + n)[0]) for n, case in enumerate(cases[:50])],
    )
    distinct = set(topic_event_ids(settings))
    target = tmp_path / "killed"
    # Five rows a file: hundreds of write-then-commit steps, so the kill lands among them.
    small_files = {"OFFLOAD_EXPORT_ROLL_ROWS": "5", "OFFLOAD_EXPORT_METRICS_PORT": "0"}
    follow = exporter_process(
        settings, tmp_path / "follow.log", "--to", str(target), "--follow", **small_files
    )
    follow.start()
    try:
        wait_for(lambda: written_event_rows(target) >= 100, timeout_s=60, what="the first files")
    finally:
        follow.kill()
    at_kill = written_event_rows(target)
    assert 100 <= at_kill < len(distinct), "the kill came after the export was done: nothing was tested"

    # What a crash between a flush's files and its commit leaves: a file at the committed offset (here a
    # copy of a committed one) and a temporary file that was never renamed. Both must go on restart.
    topic = topic_name(CASE_EVENTS, settings)
    committed = committed_offsets(settings)
    partition, offset = next((p, o) for (t, p), o in committed.items() if t == topic and o > 0)
    [earlier, *_] = sorted((target / "events").rglob(f"{topic}+{partition}+*.parquet"))
    leftover = earlier.with_name(f"{topic}+{partition}+{offset:020d}.parquet")
    shutil.copy(earlier, leftover)
    unfinished = earlier.with_name(f"{topic}+{partition}+{offset + 7:020d}.parquet{TEMPORARY_MARK}crash")
    shutil.copy(earlier, unfinished)

    run_to_end(settings, tmp_path / "restart.log", "--to", str(target))

    assert not unfinished.exists()
    glob = f"read_parquet('{target}/events/**/*.parquet', hive_partitioning=1)"
    assert duck(f"select count(*), count(distinct event_id) from {glob}") == [(len(distinct), len(distinct))]
    # One clean run elsewhere, in a group of its own: the very same rows, column for column.
    clean = tmp_path / "clean"
    export(export_settings(topics), clean)
    columns = ["event_id", "kafka_partition", "kafka_offset", "event_time", "received_at", "source", "body"]
    assert parquet_rows(target, "events", columns) == parquet_rows(clean, "events", columns)


def metrics_of(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def owned_partitions(exposition: str) -> set[tuple[str, str]]:
    """The (topic, partition) an exporter reports lag for: the partitions it owns."""
    return set(
        re.findall(r'^offload_export_consumer_lag\{partition="(\d+)",topic="([^"]+)"\}', exposition, re.M)
    )


def sample(exposition: str, series: str) -> float:
    """The value of one series in a Prometheus text exposition."""
    found = re.search(rf"^{re.escape(series)} (\S+)$", exposition, re.MULTILINE)
    assert found, f"no {series} in\n{exposition}"
    return float(found.group(1))


def exited(service: ServiceProcess, timeout_s: float) -> int | None:
    """The exit code of a process told to stop, once it exited by itself (None: it did not, and was
    killed). Stopping it again at once would send a second SIGTERM while it shuts down."""
    assert service.process is not None
    try:
        return service.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    finally:
        service.stop()


def test_two_exporters_in_one_group_split_the_partitions_and_write_every_row_once(
    topics: Settings, tmp_path: Path
) -> None:
    settings = export_settings(topics, offload_export_roll_s=1.0)
    target = tmp_path / "shared"
    ports = [free_port(), free_port()]
    exporters = [
        exporter_process(settings, tmp_path / f"exporter-{n}.log", "--to", str(target), "--follow",
                         OFFLOAD_EXPORT_METRICS_PORT=str(port), OFFLOAD_EXPORT_ROLL_ROWS="50")
        for n, port in enumerate(ports)
    ]  # fmt: skip
    all_partitions = 3 * settings.offload_topic_partitions
    try:
        for exporter in exporters:
            exporter.start()
        for exporter, port in zip(exporters, ports, strict=True):
            exporter.wait_http(f"http://127.0.0.1:{port}/metrics")

        def split() -> bool:
            owned = [owned_partitions(metrics_of(port)) for port in ports]
            return all(owned) and not owned[0] & owned[1] and len(owned[0] | owned[1]) == all_partitions

        wait_for(split, timeout_s=90, what="both exporters to own partitions, each partition once")
        cases = [f"pair-{n}" for n in range(200)]
        publish_webhooks(
            settings, [body for n, case in enumerate(cases) for body in lifecycle(case, DAY + n)]
        )
        answers = [
            AnswerOutcome(answerId=f"a-{case}", caseId=case, outcome=Outcome.ACCEPTED, at=DAY)
            for case in cases
        ]
        publish_raw(
            settings,
            ANSWER_OUTCOMES,
            [(a.caseId.encode(), a.model_dump_json().encode(), []) for a in answers],
        )
        distinct = set(topic_event_ids(settings))
        wait_for(
            lambda: written_event_rows(target) >= len(distinct), timeout_s=90, what="every event in files"
        )
        wait_for(lambda: (target / "cases" / "cases.parquet").exists(), timeout_s=30, what="a snapshot")
        scrapes = [metrics_of(port) for port in ports]
    finally:
        for exporter in exporters:
            exporter.signal(signal.SIGTERM)
        codes = [exited(exporter, timeout_s=60) for exporter in exporters]
    assert codes == [0, 0], [exporter.log_tail() for exporter in exporters]
    glob = f"read_parquet('{target}/events/**/*.parquet', hive_partitioning=1)"
    assert duck(f"select count(*), count(distinct event_id) from {glob}") == [(len(distinct), len(distinct))]
    assert parquet_rows(target, "answers", ["answer_id"]) == sorted((a.answerId,) for a in answers)
    # Both did a share of the work, and say so in their metrics.
    written = [sample(text, 'offload_export_rows_written_total{table="events"}') for text in scrapes]
    assert all(rows > 0 for rows in written) and sum(written) == len(distinct), written
    for text in scrapes:
        assert re.search(r"^offload_export_last_file_time_seconds [1-9]", text, re.M), text
        assert re.search(r"^offload_export_last_snapshot_time_seconds ", text, re.M), text


def test_on_a_filesystem_without_rename_files_are_written_whole_and_leftovers_removed(
    topics: Settings,
) -> None:
    """pyarrow's mock filesystem stands in for an object store: no rename, one write per file, and no
    local path; what the exporter lists, removes and reads back goes through the filesystem layer."""
    settings = export_settings(topics)
    publish_webhooks(settings, [body for n in range(6) for body in lifecycle(f"remote-{n}", DAY + n)])
    target = Target.parse("mock:///lake")
    assert not target.is_local
    first = Exporter(settings, target).run()
    assert first.rows == {"events": 18} and first.snapshots["cases"] == 6
    selector = fs.FileSelector(target.path("events"), recursive=True)
    files = [info.path for info in target.filesystem.get_file_info(selector) if info.is_file]
    assert TEMPORARY_MARK not in "".join(files)
    # A write that was never committed, at a partition's committed offset: the next run removes it.
    topic = topic_name(CASE_EVENTS, settings)
    partition, offset = next(
        (p, o) for (t, p), o in committed_offsets(settings).items() if t == topic and o > 0
    )
    copy = next(path for path in files if f"+{partition}+" in path)
    leftover = copy.rsplit("+", 1)[0] + f"+{offset:020d}.parquet"
    target.filesystem.copy_file(copy, leftover)
    assert Exporter(settings, target).run().rows == {}
    assert target.filesystem.get_file_info(leftover).type == fs.FileType.NotFound
    event_ids = [pq.read_table(path, filesystem=target.filesystem)["event_id"].to_pylist() for path in files]
    flat = [str(event_id) for ids in event_ids for event_id in ids]
    assert sorted(flat) == sorted(set(topic_event_ids(settings)))
