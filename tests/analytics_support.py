"""Fact files built by hand for the analytics tests, and expectations computed without DuckDB.

Rows go through the tables' arrow schemas (``offload_bridge.analytics.arrow``) into Parquet files laid out
as ``offload-bridge export`` lays them out; what the tests read back is read with pyarrow alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from offload_bridge.analytics.arrow import table_schema
from offload_bridge.analytics.tables import TableSpec


def event_row(
    event_id: str,
    case_id: str,
    event_type: str,
    status: str,
    event_time: datetime,
    *,
    offset: int,
    partition: int = 0,
    received_after_ms: int = 200,
    source: str = "webhook",
    input_request_id: str | None = None,
    question: str | None = None,
    input_request_status: str | None = None,
    result_status: str | None = None,
    failure_reason: str | None = None,
    attempt_count: int | None = 1,
    client_reference_id: str | None = None,
    channel: str | None = "EMAIL",
) -> dict[str, Any]:
    """An ``events`` row whose body is the webhook it stands for."""
    data: dict[str, Any] = {"caseId": case_id, "status": status}
    for name, value in (
        ("clientReferenceId", client_reference_id), ("channel", channel), ("attemptCount", attempt_count),
        ("inputRequest", question), ("inputRequestId", input_request_id),
        ("inputRequestStatus", input_request_status), ("resultStatus", result_status),
        ("failureReason", failure_reason),
    ):  # fmt: skip
        if value is not None:
            data[name] = value
    body = {
        "event_id": event_id,
        "event_type": event_type,
        "timestamp": int(event_time.timestamp() * 1000),
        "data": data,
    }
    return {
        "event_id": event_id,
        "case_id": case_id,
        "event_type": event_type,
        "status": status,
        "result_status": result_status,
        "event_time": event_time,
        "received_at": event_time + timedelta(milliseconds=received_after_ms),
        "source": source,
        "input_request_id": input_request_id,
        "question": question,
        "attempt_count": attempt_count,
        "client_reference_id": client_reference_id,
        "channel": channel,
        "failure_reason": failure_reason,
        "body": json.dumps(body),
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


def answer_row(
    answer_id: str,
    case_id: str,
    input_request_id: str | None,
    outcome: str,
    at: datetime,
    *,
    offset: int,
    partition: int = 0,
    submitted_by: str | None = None,
    http_status: int | None = 202,
    error_code: str | None = None,
    attempt: int = 1,
) -> dict[str, Any]:
    return {
        "answer_id": answer_id,
        "case_id": case_id,
        "input_request_id": input_request_id,
        "outcome": outcome,
        "http_status": http_status,
        "error_code": error_code,
        "attempt": attempt,
        "submitted_by": submitted_by,
        "at": at,
        "kafka_partition": partition,
        "kafka_offset": offset,
    }


def write_fact_file(root: Path, spec: TableSpec, day: str, rows: Sequence[dict[str, Any]]) -> Path:
    """One fact file as the exporter names it: ``<table>/date=<day>/<topic>+<partition>+<offset>.parquet``."""
    first = rows[0]
    name = spec.fact_file_name(f"t.{spec.name}", first["kafka_partition"], first["kafka_offset"])
    path = root / spec.name / f"date={day}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(list(rows), schema=table_schema(spec)), path)
    return path


def read_rows(path: Path) -> tuple[pa.Schema, list[dict[str, Any]]]:
    """A Parquet file's schema and rows, read by pyarrow alone."""
    table = pq.read_table(path)
    return table.schema, table.to_pylist()


def percentile(values: Sequence[float], fraction: float) -> float:
    """The interpolated percentile (what SQL's percentile_cont computes), written out by hand."""
    ordered = sorted(values)
    rank = fraction * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def wait_stats(waits_ms: Sequence[int]) -> dict[str, float]:
    """p50, p90 and max of waits in ms, as the reports show them: seconds rounded to the millisecond."""
    return {
        "p50": round(percentile(waits_ms, 0.5) / 1000, 3),
        "p90": round(percentile(waits_ms, 0.9) / 1000, 3),
        "max": round(max(waits_ms) / 1000, 3),
    }
