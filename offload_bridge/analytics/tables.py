"""The analytics tables, declared once: name, row model, kind, the topic a fact table comes from.

Layout under the export target (a directory or any URL pyarrow's filesystem layer takes)::

    <target>/events/date=YYYY-MM-DD/<topic>+<partition>+<first offset>.parquet      facts (Hive layout)
    <target>/answers/date=YYYY-MM-DD/...
    <target>/case_requests/date=YYYY-MM-DD/...
    <target>/questions/questions.parquet                                             snapshots
    <target>/cases/cases.parquet

A fact file holds a contiguous run of one partition's records, named after the first offset of that run
(zero-padded to 20 digits, so names sort by offset); the ``date`` directory is the UTC day of the row's
``date_column``. Only pydantic is imported here: the arrow schema is built where pyarrow is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from offload_bridge.schemas.analytics import AnswerRow, CaseRequestRow, CaseRow, EventRow, QuestionRow
from offload_bridge.topics import ANSWER_OUTCOMES, CASE_EVENTS, CASE_REQUEST_OUTCOMES, TopicSpec

TableKind = Literal["fact", "snapshot"]
DATE_PARTITION = "date"  # the Hive partition column of fact tables: YYYY-MM-DD, UTC
OFFSET_DIGITS = 20


@dataclass(frozen=True)
class TableSpec:
    name: str
    row: type[BaseModel]
    kind: TableKind
    summary: str
    topic: TopicSpec | None = None  # facts: the topic read
    date_column: str | None = None  # facts: the time column that picks the date=... directory

    def fact_file_name(self, topic_full_name: str, partition: int, first_offset: int) -> str:
        return f"{topic_full_name}+{partition}+{first_offset:0{OFFSET_DIGITS}d}.parquet"

    @property
    def snapshot_file_name(self) -> str:
        return f"{self.name}.parquet"


EVENTS = TableSpec(
    "events", EventRow, "fact", "one row per distinct event_id of case-events", CASE_EVENTS, "event_time"
)
ANSWERS = TableSpec(
    "answers", AnswerRow, "fact", "one row per terminal answer outcome", ANSWER_OUTCOMES, "at"
)
CASE_REQUESTS = TableSpec(
    "case_requests",
    CaseRequestRow,
    "fact",
    "one row per terminal case-request outcome",
    CASE_REQUEST_OUTCOMES,
    "at",
)
QUESTIONS = TableSpec("questions", QuestionRow, "snapshot", "one row per inputRequestId")
CASES = TableSpec("cases", CaseRow, "snapshot", "the latest state of every case, with derived facts")

FACT_TABLES: tuple[TableSpec, ...] = (EVENTS, ANSWERS, CASE_REQUESTS)
SNAPSHOT_TABLES: tuple[TableSpec, ...] = (QUESTIONS, CASES)
ALL_TABLES: tuple[TableSpec, ...] = FACT_TABLES + SNAPSHOT_TABLES
