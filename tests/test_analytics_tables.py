"""questions, cases and every report from hand-built fact files: each lifecycle with its expected rows.

The facts cover: a question answered through offload-bridge (case A, whose terminal event ties with a later
synthesized one), two questions with a late answer that ends conflict and an outcome written twice (B), a
question answered outside offload-bridge with a conflicting answer of ours (C, still open), a failed and a
bounced case in the next week (D, E), a question still waiting with a rejected answer and a re-sent event
(F), and a question resolved in place (G). The expected rows are written out here, the report numbers
computed in Python; the snapshot files are read back with pyarrow, not DuckDB.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyarrow import fs

from offload_bridge.analytics.arrow import table_schema
from offload_bridge.analytics.derive import write_snapshots
from offload_bridge.analytics.files import TEMPORARY_MARK, Target
from offload_bridge.analytics.tables import ANSWERS, CASE_REQUESTS, CASES, EVENTS, QUESTIONS
from offload_bridge.cli import main
from tests.analytics_support import answer_row, event_row, read_rows, wait_stats, write_fact_file

WEEK1 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)  # a Monday
WEEK2 = WEEK1 + timedelta(days=7)
NOW = WEEK2 + timedelta(seconds=5000)


def w1(seconds: float) -> datetime:
    return WEEK1 + timedelta(seconds=seconds)


def w2(seconds: float) -> datetime:
    return WEEK2 + timedelta(seconds=seconds)


INPUT_NEEDED, COMPLETED, FAILED = "case.input_needed", "case.completed", "case.failed"


def asked(
    event_id: str, case_id: str, at: datetime, question_id: str, text: str, offset: int, **more: Any
) -> dict[str, Any]:
    """A case.input_needed event (PENDING unless said)."""
    more.setdefault("input_request_status", "PENDING")
    return event_row(event_id, case_id, INPUT_NEEDED, "INPUT_NEEDED", at, offset=offset,
                     input_request_id=question_id, question=text, **more)  # fmt: skip


EVENTS_P0 = [
    # A: one question, answered by alice; completed, and a synthesized RUNNING in the same millisecond
    # (received later) that must not replace the terminal state.
    asked("a1", "case-a", w1(10), "qa", "Is a signed PDF acceptable?", 0, client_reference_id="ref-a"),
    event_row("a2", "case-a", COMPLETED, "COMPLETED", w1(100), offset=1, result_status="goal_achieved",
              client_reference_id="ref-a"),
    event_row("a3", "case-a", "case.running", "RUNNING", w1(100), offset=2, received_after_ms=900,
              source="reconciler", channel=None, attempt_count=None),
    # B: two questions.
    asked("b1", "case-b", w1(3600), "qb1", "First?", 3, client_reference_id="ref-b"),
    asked("b2", "case-b", w1(7200), "qb2", "Second?", 4, attempt_count=2, client_reference_id="ref-b"),
    event_row("b3", "case-b", COMPLETED, "COMPLETED", w1(10800), offset=5, result_status="goal_achieved",
              attempt_count=2, client_reference_id="ref-b"),
]  # fmt: skip
EVENTS_P1 = [
    # C: answered outside offload-bridge: the reconciler saw RUNNING (no clientReferenceId, no channel).
    asked("c1", "case-c", w1(20000), "qc", "Third?", 0, partition=1, client_reference_id="ref-c"),
    event_row("c2", "case-c", "case.running", "RUNNING", w1(20600), offset=1, partition=1,
              source="reconciler", channel=None, attempt_count=2),
]  # fmt: skip
EVENTS_WEEK2 = [
    # D: created by offload-bridge, failed after its follow-ups.
    event_row("d1", "case-d", "case.created", "CREATED", w2(0), offset=2, partition=1, source="bridge",
              attempt_count=0, client_reference_id="ref-d"),
    event_row("d2", "case-d", FAILED, "FAILED", w2(500), offset=3, partition=1, result_status="max_retries",
              attempt_count=3, client_reference_id="ref-d"),
    # E: bounced.
    event_row("e1", "case-e", FAILED, "FAILED", w2(1000), offset=4, partition=1, result_status="BOUNCED",
              failure_reason="The email bounced.", client_reference_id="ref-e"),
    # F: still waiting; the reconciler re-sent the same open question later.
    asked("f1", "case-f", w2(2000), "qf", "Fourth?", 5, partition=1, client_reference_id="ref-f"),
    asked("f2", "case-f", w2(2500), "qf", "Fourth?", 6, partition=1, client_reference_id="ref-f",
          source="reconciler"),
    # G: the same question, RESOLVED at Offload (answered there).
    asked("g1", "case-g", w2(3000), "qg", "Fifth?", 7, partition=1),
    asked("g2", "case-g", w2(3005), "qg", "Fifth?", 8, partition=1, source="reconciler",
          input_request_status="RESOLVED"),
    # H: a question first seen already RESOLVED (the reconciler found it answered at Offload).
    asked("h1", "case-h", w2(4000), "qh", "Sixth?", 9, partition=1, source="reconciler",
          input_request_status="RESOLVED"),
]  # fmt: skip
ANSWER_ROWS = [
    answer_row("ans-a", "case-a", "qa", "accepted", w1(40), offset=0, submitted_by="alice"),
    answer_row("ans-b1", "case-b", "qb1", "accepted", w1(3900), offset=1, submitted_by="bob"),
    answer_row("ans-b2", "case-b", "qb2", "accepted", w1(7260), offset=2),  # no submittedBy
    answer_row("ans-b2", "case-b", "qb2", "duplicate", w1(7300), offset=3),  # the same answer, re-sent
    answer_row("ans-b-late", "case-b", "qb1", "conflict", w1(7500), offset=4, submitted_by="carol",
               http_status=409, error_code="INPUT_REQUEST_MISMATCH"),
    answer_row("ans-c", "case-c", "qc", "conflict", w1(20700), offset=5, submitted_by="dave",
               http_status=409, error_code="CASE_NOT_WAITING_FOR_INPUT"),
    answer_row("ans-e", "case-e", None, "dead_lettered", w2(1200), offset=6, http_status=503,
               error_code="INTERNAL_ERROR", attempt=5),
    answer_row("ans-f", "case-f", "qf", "rejected", w2(2100), offset=7, submitted_by="erin",
               http_status=400, error_code="INVALID_REQUEST"),
]  # fmt: skip

EXPECTED_QUESTIONS = [
    # case_id, input_request_id, question, asked_at, answered_at, answer_id, answer_outcome,
    # submitted_by, wait_ms
    ("case-a", "qa", "Is a signed PDF acceptable?", w1(10), w1(40), "ans-a", "accepted", "alice", 30_000),
    ("case-b", "qb1", "First?", w1(3600), w1(3900), "ans-b1", "accepted", "bob", 300_000),
    ("case-b", "qb2", "Second?", w1(7200), w1(7260), "ans-b2", "accepted", None, 60_000),
    ("case-c", "qc", "Third?", w1(20000), w1(20600), "ans-c", "conflict", "dave", 600_000),
    ("case-f", "qf", "Fourth?", w2(2000), None, "ans-f", "rejected", "erin", None),
    ("case-g", "qg", "Fifth?", w2(3000), w2(3005), None, None, None, 5_000),
    ("case-h", "qh", "Sixth?", w2(4000), w2(4000), None, None, None, 0),
]
EXPECTED_CASES = [
    # case_id, client_reference_id, status, result_status, channel, attempt_count, failure_reason,
    # last_event_type, last_event_at, first_seen_at, completed_at, duration_ms, questions, answers_accepted
    ("case-a", "ref-a", "COMPLETED", "goal_achieved", "EMAIL", 1, None, COMPLETED, w1(100), w1(10), w1(100),
     90_000, 1, 1),
    ("case-b", "ref-b", "COMPLETED", "goal_achieved", "EMAIL", 2, None, COMPLETED, w1(10800), w1(3600),
     w1(10800), 7_200_000, 2, 2),
    ("case-c", "ref-c", "RUNNING", None, "EMAIL", 2, None, "case.running", w1(20600), w1(20000),
     None, None, 1, 0),
    ("case-d", "ref-d", "FAILED", "max_retries", "EMAIL", 3, None, FAILED, w2(500), w2(0),
     w2(500), 500_000, 0, 0),
    ("case-e", "ref-e", "FAILED", "BOUNCED", "EMAIL", 1, "The email bounced.", FAILED, w2(1000), w2(1000),
     w2(1000), 0, 0, 0),
    ("case-f", "ref-f", "INPUT_NEEDED", None, "EMAIL", 1, None, INPUT_NEEDED, w2(2500), w2(2000),
     None, None, 1, 0),
    ("case-g", None, "INPUT_NEEDED", None, "EMAIL", 1, None, INPUT_NEEDED, w2(3005), w2(3000),
     None, None, 1, 0),
    ("case-h", None, "INPUT_NEEDED", None, "EMAIL", 1, None, INPUT_NEEDED, w2(4000), w2(4000),
     None, None, 1, 0),
]  # fmt: skip


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    """The facts above as the exporter lays them out, with a file being written that readers must skip."""
    root = tmp_path / "tables"
    write_fact_file(root, EVENTS, "2026-12-07", EVENTS_P0)
    write_fact_file(root, EVENTS, "2026-12-07", EVENTS_P1)
    last = write_fact_file(root, EVENTS, "2026-12-14", EVENTS_WEEK2)
    write_fact_file(root, ANSWERS, "2026-12-07", ANSWER_ROWS[:6])
    write_fact_file(root, ANSWERS, "2026-12-14", ANSWER_ROWS[6:])
    request = {"request_id": "req-d", "case_id": "case-d", "outcome": "created", "http_status": 201,
               "error_code": None, "at": w2(0), "kafka_partition": 0, "kafka_offset": 0}  # fmt: skip
    write_fact_file(root, CASE_REQUESTS, "2026-12-14", [request])
    # A half-written file: its rows (a whole other case) must not be read.
    stray = [event_row("x1", "case-x", FAILED, "FAILED", w2(9), offset=9, partition=1)]
    partial = last.with_name(last.name + TEMPORARY_MARK + "abc")
    pq.write_table(pa.Table.from_pylist(stray, schema=table_schema(EVENTS)), partial)
    return root


def as_tuples(rows: list[dict[str, Any]], schema: pa.Schema) -> list[tuple[Any, ...]]:
    return [tuple(row[name] for name in schema.names) for row in rows]


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["analytics", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def report_rows(capsys: pytest.CaptureFixture[str], root: Path, report: str) -> list[dict[str, Any]]:
    code, out, err = run_cli(capsys, str(root), report, "--format", "json", "--now", NOW.isoformat())
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_snapshots_hold_each_question_as_documented(exported: Path) -> None:
    counts = write_snapshots(Target.parse(str(exported)))
    assert counts == {"questions": len(EXPECTED_QUESTIONS), "cases": len(EXPECTED_CASES)}
    schema, rows = read_rows(exported / "questions" / "questions.parquet")
    assert schema == table_schema(QUESTIONS)
    assert sorted(as_tuples(rows, schema)) == EXPECTED_QUESTIONS


def test_snapshots_hold_each_case_as_documented(exported: Path) -> None:
    write_snapshots(Target.parse(str(exported)))
    schema, rows = read_rows(exported / "cases" / "cases.parquet")
    assert schema == table_schema(CASES)
    assert sorted(as_tuples(rows, schema)) == EXPECTED_CASES


def test_snapshots_on_a_filesystem_that_is_not_local(exported: Path) -> None:
    # pyarrow's in-memory filesystem stands for an object store: nothing may assume a local path.
    remote, root = fs.FileSystem.from_uri("mock:///tables")
    fs.copy_files(str(exported), root, source_filesystem=fs.LocalFileSystem(), destination_filesystem=remote)
    target = Target(remote, root)
    assert not target.is_local
    assert write_snapshots(target) == {"questions": len(EXPECTED_QUESTIONS), "cases": len(EXPECTED_CASES)}
    for spec, expected in ((QUESTIONS, EXPECTED_QUESTIONS), (CASES, EXPECTED_CASES)):
        table = pq.read_table(target.path(spec.name, spec.snapshot_file_name), filesystem=remote)
        assert table.schema == table_schema(spec)
        assert sorted(as_tuples(table.to_pylist(), table.schema)) == expected
    assert not (exported / "questions").exists()


def test_snapshots_of_tables_without_files_are_empty_with_their_schema(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    assert write_snapshots(Target.parse(str(tmp_path))) == {"questions": 0, "cases": 0}
    for spec in (QUESTIONS, CASES):
        schema, rows = read_rows(tmp_path / spec.name / spec.snapshot_file_name)
        assert schema == table_schema(spec) and rows == []


def test_a_rerun_replaces_the_snapshots_with_the_facts_now_present(exported: Path) -> None:
    target = Target.parse(str(exported))
    write_snapshots(target)
    late = [event_row("f3", "case-f", COMPLETED, "COMPLETED", w2(4000), offset=10, partition=1,
                      result_status="goal_achieved", client_reference_id="ref-f")]  # fmt: skip
    write_fact_file(exported, EVENTS, "2026-12-14", late)
    write_snapshots(target)
    _, questions = read_rows(exported / "questions" / "questions.parquet")
    waiting = next(row for row in questions if row["input_request_id"] == "qf")
    assert (waiting["answered_at"], waiting["wait_ms"]) == (w2(4000), 2_000_000)
    _, cases = read_rows(exported / "cases" / "cases.parquet")
    assert next(row for row in cases if row["case_id"] == "case-f")["status"] == "COMPLETED"
    leftovers = [p.name for p in exported.glob("*/*") if TEMPORARY_MARK in p.name]
    assert leftovers == []


def test_question_wait_by_submitter_and_by_week(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    answered = [q for q in EXPECTED_QUESTIONS if q[4] is not None]
    by_submitter: dict[str, list[int]] = {}
    by_week: dict[str, list[int]] = {}
    for _, _, _, asked_at, _, _, outcome, submitted_by, wait_ms in answered:
        assert wait_ms is not None
        if outcome in ("accepted", "duplicate"):
            who = submitted_by or "(not given)"
        else:
            who = "(outside offload-bridge)"
        by_submitter.setdefault(who, []).append(wait_ms)
        monday = (asked_at - timedelta(days=asked_at.weekday())).date().isoformat()
        by_week.setdefault(monday, []).append(wait_ms)
    expected = []
    for dimension, groups in (("submitted_by", by_submitter), ("week", by_week)):
        for bucket in sorted(groups):
            stats = wait_stats(groups[bucket])
            expected.append({"dimension": dimension, "bucket": bucket, "questions": len(groups[bucket]),
                             "p50_wait_s": stats["p50"], "p90_wait_s": stats["p90"],
                             "max_wait_s": stats["max"]})  # fmt: skip
    assert report_rows(capsys, exported, "question-wait") == expected
    # The figures by hand, so the helper above is checked too.
    assert expected[0] == {"dimension": "submitted_by", "bucket": "(not given)", "questions": 1,
                           "p50_wait_s": 60.0, "p90_wait_s": 60.0, "max_wait_s": 60.0}  # fmt: skip
    outside = next(row for row in expected if row["bucket"] == "(outside offload-bridge)")
    assert (outside["p50_wait_s"], outside["p90_wait_s"], outside["max_wait_s"]) == (5.0, 481.0, 600.0)


def test_outcomes_count_ended_cases_per_week(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    assert report_rows(capsys, exported, "outcomes") == [
        {"week": "2026-12-07", "status": "COMPLETED", "result_status": "goal_achieved", "cases": 2,
         "share": 1.0},
        {"week": "2026-12-14", "status": "FAILED", "result_status": "BOUNCED", "cases": 1, "share": 0.5},
        {"week": "2026-12-14", "status": "FAILED", "result_status": "max_retries", "cases": 1, "share": 0.5},
    ]  # fmt: skip


def test_completion_times_per_week_and_status(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    completed = wait_stats([90_000, 7_200_000])
    failed = wait_stats([500_000, 0])
    assert report_rows(capsys, exported, "completion") == [
        {"week": "2026-12-07", "status": "COMPLETED", "cases": 2, "p50_duration_s": completed["p50"],
         "p90_duration_s": completed["p90"], "max_duration_s": completed["max"]},
        {"week": "2026-12-14", "status": "FAILED", "cases": 2, "p50_duration_s": failed["p50"],
         "p90_duration_s": failed["p90"], "max_duration_s": failed["max"]},
    ]  # fmt: skip
    assert (completed["p50"], failed["p90"]) == (3645.0, 450.0)


def test_waiting_lists_open_questions_with_their_age(
    capsys: pytest.CaptureFixture[str], exported: Path
) -> None:
    assert report_rows(capsys, exported, "waiting") == [
        {"case_id": "case-f", "client_reference_id": "ref-f", "input_request_id": "qf", "question": "Fourth?",
         "asked_at": iso(w2(2000)), "age_s": (NOW - w2(2000)).total_seconds(),
         "last_answer_outcome": "rejected"},
    ]  # fmt: skip


def test_answer_problems_lists_conflicts_rejections_and_dead_letters(
    capsys: pytest.CaptureFixture[str], exported: Path
) -> None:
    problems = [row for row in ANSWER_ROWS if row["outcome"] in ("conflict", "rejected", "dead_lettered")]
    problems.sort(key=lambda row: row["at"], reverse=True)
    columns = ("outcome", "case_id", "input_request_id", "answer_id", "submitted_by", "http_status",
               "error_code", "attempt")  # fmt: skip
    expected = [{"at": iso(row["at"]), **{name: row[name] for name in columns}} for row in problems]
    assert report_rows(capsys, exported, "answer-problems") == expected
    assert [row["answer_id"] for row in expected] == ["ans-f", "ans-e", "ans-c", "ans-b-late"]


def test_text_output_is_an_aligned_table(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    code, out, err = run_cli(capsys, str(exported), "outcomes")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["week", "status", "result_status", "cases", "share"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["2026-12-07", "COMPLETED", "goal_achieved", "2", "1.0"]
    assert lines[-1] == "(3 rows)"
    # Every column starts where its header starts (numbers end where the header ends).
    assert lines[2].index("COMPLETED") == lines[0].index("status")
    assert lines[2].index("2 ") + 1 == lines[0].index("cases") + len("cases")


def test_csv_output(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    code, out, _ = run_cli(capsys, str(exported), "waiting", "--format", "csv", "--now", NOW.isoformat())
    assert code == 0
    assert out.splitlines() == [
        "case_id,client_reference_id,input_request_id,question,asked_at,age_s,last_answer_outcome",
        f"case-f,ref-f,qf,Fourth?,{iso(w2(2000))},3000.0,rejected",
    ]


def test_sql_runs_over_every_view(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    tables = ("events", "answers", "case_requests", "questions", "cases")
    query = "SELECT " + ", ".join(f"(SELECT count(*) FROM {name}) AS {name}" for name in tables)
    code, out, err = run_cli(capsys, str(exported), "--sql", query, "--format", "json")
    assert code == 0, err
    events = len(EVENTS_P0) + len(EVENTS_P1) + len(EVENTS_WEEK2)  # not the half-written file's
    counts = (events, len(ANSWER_ROWS), 1, len(EXPECTED_QUESTIONS), len(EXPECTED_CASES))
    assert json.loads(out) == [dict(zip(tables, counts, strict=True))]


def test_without_a_report_it_lists_them(capsys: pytest.CaptureFixture[str], exported: Path) -> None:
    code, out, _ = run_cli(capsys, str(exported))
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()[:5]]
    assert names == ["answer-problems", "completion", "outcomes", "question-wait", "waiting"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("{missing}",), "no such directory"),
        (("{empty}",), "holds no analytics table"),
        (("{dir}", "--sql", "SELEC 1"), "Parser Error: syntax error at or near"),
        (("{dir}", "--sql", "SELECT nope FROM events"), 'Binder Error: Referenced column "nope" not found'),
        (("{dir}", "nonsense"), "no report 'nonsense'; the reports: answer-problems, completion"),
        (("{dir}", "waiting", "--sql", "SELECT 1"), "give a REPORT or --sql QUERY, not both"),
    ],
    ids=["missing-dir", "no-tables", "bad-syntax", "bad-column", "unknown-report", "both"],
)
def test_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], exported: Path, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    places = {"dir": str(exported), "missing": str(tmp_path / "missing"), "empty": str(tmp_path / "empty")}
    code, out, err = run_cli(capsys, *(arg.format(**places) for arg in args))
    assert code == 2 and out == ""
    assert err.startswith("offload-bridge: ") and message in err
    assert err.count("\n") == 1
