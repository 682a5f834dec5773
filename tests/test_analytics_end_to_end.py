"""The case lifecycle as tables, end to end: every table's rows and every report's numbers equal what the
simulator (Offload's truth) and the topics say.

Real processes throughout: the simulator, the ingress, a worker (case requests and answers through Offload's
API), then ``offload-bridge export`` and ``offload-bridge analytics``. Seven cases whose lifecycle is known:
one question answered by alice; two questions (bob, then carol) with a late answer by dave to the first that
ends ``conflict``; a question answered at Offload directly (outside offload-bridge); a question left waiting;
a case that completes without a question; one that fails after its follow-ups; one that bounces.

The expected rows come from the simulator's truth (``/_sim/cases/{id}``: its webhooks, history, inputs and
the questions it asked), from the topics read with a plain consumer, and from what this test published; the
exported files are read back with pyarrow, the reports through the command's JSON output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pydantic import HttpUrl

from offload_bridge.analytics.arrow import table_schema
from offload_bridge.analytics.tables import ANSWERS, CASE_REQUESTS, CASES, EVENTS, QUESTIONS, TableSpec
from offload_bridge.answers import AnswerSubmitter
from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.schemas.answers import Outcome
from offload_bridge.schemas.case_requests import CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, case_body, deliveries_done, simulator_process
from offload_bridge.testing import settings_env
from offload_bridge.topics import ANSWER_OUTCOMES, CASE_EVENTS, CASE_REQUEST_OUTCOMES
from tests.analytics_support import wait_stats
from tests.ingress_support import read_topic, running_ingress
from tests.streams_support import Worker, running_workers
from tests.test_case_requests_worker import with_offload

STEP_MS = 150
SCENARIOS = {
    "one-question": "input_then_complete",
    "two-questions": "input_twice_then_complete",
    "outside": "input_then_complete",
    "waiting": "input_then_complete",
    "complete": "complete",
    "failed": "fail_max_retries",
    "bounced": "fail_bounced",
}
TERMINAL = ("COMPLETED", "FAILED")
STATUS_OF = {"case.input_needed": "INPUT_NEEDED", "case.completed": "COMPLETED", "case.failed": "FAILED"}
SETTLED = ("accepted", "duplicate")
Row = dict[str, Any]


def ms(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def monday(moment: datetime) -> str:
    return (moment - timedelta(days=moment.weekday())).date().isoformat()


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Lifecycles:
    """Drives the seven cases and keeps what Offload asked (its truth, not our tables)."""

    def __init__(self, sim: RunningSimulator, answers: AnswerSubmitter) -> None:
        self.sim = sim
        self.answers = answers
        self.case_of: dict[str, str] = {}  # name -> caseId
        self.questions: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
        self.published: dict[str, tuple[str, str, str | None]] = {}  # answerId -> (name, question, by)

    def next_question(self, name: str) -> dict[str, Any]:
        """The question Offload asks next (id, text, requestedAt), once it asks it."""
        known = {question["id"] for question in self.questions[name]}
        truth = self.sim.wait_for_truth(
            self.case_of[name],
            lambda t: t["status"] == "INPUT_NEEDED" and t["inputRequest"]["id"] not in known,
            timeout_s=60,
        )
        question: dict[str, Any] = truth["inputRequest"]
        self.questions[name].append(question)
        return question

    def answer(self, name: str, question: dict[str, Any], text: str, by: str, expected: Outcome) -> None:
        answer_id = self.answers.publish(self.case_of[name], question["id"], text, submitted_by=by)
        self.published[answer_id] = (name, question["id"], by)
        outcome = self.answers.wait_for_outcome(answer_id, timeout_s=60)
        assert outcome.outcome is expected, outcome

    def play(self) -> None:
        first = self.next_question("one-question")
        self.answer("one-question", first, "Yes, a signed PDF is fine.", "alice", Outcome.ACCEPTED)

        first = self.next_question("two-questions")
        self.answer("two-questions", first, "Yes.", "bob", Outcome.ACCEPTED)
        second = self.next_question("two-questions")
        # Offload has moved on to the second question: a late answer to the first is a conflict.
        self.answer("two-questions", first, "Yes, and in blue.", "dave", Outcome.CONFLICT)
        self.answer("two-questions", second, "Next Monday is fine.", "carol", Outcome.ACCEPTED)

        outside = self.next_question("outside")
        # Answered at Offload directly: offload-bridge sees only the case move on.
        assert self.sim.answer(self.case_of["outside"], outside["id"], "Agreed by phone.").status_code == 202

        self.next_question("waiting")  # never answered

    def settled_truths(self) -> dict[str, dict[str, Any]]:
        """Each case's truth once it is where it stays and every webhook it sent was delivered."""
        truths = {}
        for name, case_id in self.case_of.items():

            def still(truth: dict[str, Any], name: str = name) -> bool:
                where = (
                    truth["status"] == "INPUT_NEEDED" if name == "waiting" else truth["status"] in TERMINAL
                )
                return where and deliveries_done(truth)

            truths[name] = self.sim.wait_for_truth(case_id, still, timeout_s=90)
            failed = [d for w in truths[name]["webhooks"] for d in w["deliveries"] if not d["ok"]]
            assert failed == [], failed
        return truths


def fact_rows(root: Path, spec: TableSpec) -> list[Row]:
    """A fact table read by pyarrow as a Hive-partitioned dataset; each row's ``date`` must be its day."""
    dataset = ds.dataset(root / spec.name, format="parquet", partitioning="hive")
    table = dataset.to_table()
    assert table.schema.remove(table.schema.get_field_index("date")) == table_schema(spec)
    rows = table.to_pylist()
    for row in rows:
        assert str(row.pop("date")) == row[spec.date_column or ""].date().isoformat()
    return rows


def snapshot_rows(root: Path, spec: TableSpec) -> list[Row]:
    table = pq.read_table(root / spec.name / spec.snapshot_file_name)
    assert table.schema == table_schema(spec)
    rows: list[Row] = table.to_pylist()
    return rows


def by(key: str | tuple[str, ...]) -> Callable[[Row], Any]:
    keys = (key,) if isinstance(key, str) else key
    return lambda row: tuple(str(row[name]) for name in keys)


def expected_events(
    play: Lifecycles, truths: dict[str, dict[str, Any]], announced: dict[str, int]
) -> list[Row]:
    """The webhooks Offload sent, and the case.created offload-bridge announced each case with."""
    rows = []
    for name, started in announced.items():
        case_id = play.case_of[name]
        rows.append(
            {
                "event_id": f"evt_{case_id}_case_created_{started}",
                "case_id": case_id,
                "event_type": "case.created",
                "status": "CREATED",
                "result_status": None,
                "event_time": ms(started),
                "source": "bridge",
                "input_request_id": None,
                "question": None,
                "attempt_count": 0,
                "client_reference_id": f"ref-{name}",
                "channel": "EMAIL",
                "failure_reason": None,
            }
        )
    for name, truth in truths.items():
        asked = {question["requestedAt"]: question for question in play.questions[name]}
        attempts = {step["at"]: step["attemptCount"] for step in truth["history"]}
        for webhook in truth["webhooks"]:
            question = (
                asked.get(webhook["timestamp"]) if webhook["event_type"] == "case.input_needed" else None
            )
            terminal = webhook["event_type"] != "case.input_needed"
            rows.append(
                {
                    "event_id": webhook["event_id"],
                    "case_id": truth["caseId"],
                    "event_type": webhook["event_type"],
                    "status": STATUS_OF[webhook["event_type"]],
                    "result_status": truth["resultStatus"] if terminal else None,
                    "event_time": ms(webhook["timestamp"]),
                    "source": "webhook",
                    "input_request_id": question["id"] if question else None,
                    "question": question["question"] if question else None,
                    "attempt_count": attempts[webhook["timestamp"]],
                    "client_reference_id": f"ref-{name}",
                    "channel": "EMAIL",
                    "failure_reason": truth["failureReason"]
                    if webhook["event_type"] == "case.failed"
                    else None,
                }
            )
    return rows


def expected_answers(settings: Settings) -> list[Row]:
    rows = []
    for record in read_topic(settings, ANSWER_OUTCOMES):
        outcome = json.loads(record.value or b"{}")
        if outcome["outcome"] == "retrying":
            continue
        rows.append(
            {
                "answer_id": outcome["answerId"],
                "case_id": outcome["caseId"],
                "input_request_id": outcome.get("inputRequestId"),
                "outcome": outcome["outcome"],
                "http_status": outcome.get("httpStatus"),
                "error_code": outcome.get("errorCode"),
                "attempt": outcome["attempt"],
                "submitted_by": outcome.get("submittedBy"),
                "at": ms(outcome["at"]),
                "kafka_partition": record.partition,
                "kafka_offset": record.offset,
            }
        )
    return rows


def expected_questions(play: Lifecycles, truths: dict[str, dict[str, Any]], answers: list[Row]) -> list[Row]:
    rows = []
    for name, questions in play.questions.items():
        for question in questions:
            ours = sorted(
                (a for a in answers if a["input_request_id"] == question["id"]), key=lambda a: a["at"]
            )
            settling = [a for a in ours if a["outcome"] in SETTLED]
            chosen = settling[0] if settling else (ours[-1] if ours else None)
            asked_at = ms(question["requestedAt"])
            assert asked_at is not None
            if settling:
                answered_at = settling[0]["at"]
            else:  # the next webhook Offload sent about the case, if any
                later = [
                    w["timestamp"]
                    for w in truths[name]["webhooks"]
                    if w["timestamp"] > question["requestedAt"]
                ]
                answered_at = ms(min(later)) if later else None
            rows.append(
                {
                    "case_id": play.case_of[name],
                    "input_request_id": question["id"],
                    "question": question["question"],
                    "asked_at": asked_at,
                    "answered_at": answered_at,
                    "answer_id": chosen["answer_id"] if chosen else None,
                    "answer_outcome": chosen["outcome"] if chosen else None,
                    "submitted_by": chosen["submitted_by"] if chosen else None,
                    "wait_ms": (answered_at - asked_at) // timedelta(milliseconds=1) if answered_at else None,
                }
            )
    return rows


def expected_cases(
    play: Lifecycles, truths: dict[str, dict[str, Any]], answers: list[Row], announced: dict[str, int]
) -> list[Row]:
    rows = []
    for name, truth in truths.items():
        webhooks = truth["webhooks"]
        first, last = ms(announced[name]), ms(webhooks[-1]["timestamp"])
        assert first is not None and last is not None
        ended = [ms(w["timestamp"]) for w in webhooks if w["event_type"] != "case.input_needed"]
        completed_at = ended[0] if ended else None
        taken = {
            a["answer_id"] for a in answers if a["case_id"] == truth["caseId"] and a["outcome"] in SETTLED
        }
        rows.append(
            {
                "case_id": truth["caseId"],
                "client_reference_id": f"ref-{name}",
                "status": truth["status"],
                "result_status": truth["resultStatus"],
                "channel": "EMAIL",
                "attempt_count": truth["attemptCount"],
                "failure_reason": truth["failureReason"],
                "last_event_type": webhooks[-1]["event_type"],
                "last_event_at": last,
                "first_seen_at": first,
                "completed_at": completed_at,
                "duration_ms": (completed_at - first) // timedelta(milliseconds=1) if completed_at else None,
                "questions": len(play.questions[name]),
                "answers_accepted": len(taken),
            }
        )
    return rows


def analytics(settings: Settings, root: Path, *args: str) -> Any:
    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "analytics", str(root), *args, "--format", "json"],
        env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def approx_rows(rows: list[Row]) -> list[Row]:
    """Seconds from percentiles: equal to the millisecond (SQL and Python may round a half differently)."""
    return [
        {k: pytest.approx(v, abs=0.0011) if isinstance(v, float) else v for k, v in r.items()} for r in rows
    ]


def expected_question_wait(questions: list[Row]) -> list[Row]:
    groups: dict[tuple[str, str], list[int]] = {}
    for question in questions:
        if question["answered_at"] is None:
            continue
        settled_by_us = question["answer_outcome"] in SETTLED
        who = (question["submitted_by"] or "(not given)") if settled_by_us else "(outside offload-bridge)"
        groups.setdefault(("submitted_by", who), []).append(question["wait_ms"])
        groups.setdefault(("week", monday(question["asked_at"])), []).append(question["wait_ms"])
    rows = []
    for (dimension, bucket), waits in sorted(groups.items()):
        stats = wait_stats(waits)
        rows.append(
            {
                "dimension": dimension,
                "bucket": bucket,
                "questions": len(waits),
                "p50_wait_s": stats["p50"],
                "p90_wait_s": stats["p90"],
                "max_wait_s": stats["max"],
            }
        )
    return rows


def expected_outcomes_and_completion(cases: list[Row]) -> tuple[list[Row], list[Row]]:
    ended: dict[tuple[str, str, str], int] = {}
    durations: dict[tuple[str, str], list[int]] = {}
    for case in cases:
        if case["completed_at"] is None:
            continue
        week = monday(case["completed_at"])
        ended[(week, case["status"], case["result_status"])] = (
            ended.get((week, case["status"], case["result_status"]), 0) + 1
        )
        durations.setdefault((week, case["status"]), []).append(case["duration_ms"])
    per_week: dict[str, int] = {}
    for (week, _, _), count in ended.items():
        per_week[week] = per_week.get(week, 0) + count
    outcomes = [
        {"week": week, "status": status, "result_status": result, "cases": count,
         "share": round(count / per_week[week], 3)}
        for (week, status, result), count in sorted(ended.items())
    ]  # fmt: skip
    completion = []
    for (week, status), values in sorted(durations.items()):
        stats = wait_stats(values)
        completion.append(
            {
                "week": week,
                "status": status,
                "cases": len(values),
                "p50_duration_s": stats["p50"],
                "p90_duration_s": stats["p90"],
                "max_duration_s": stats["max"],
            }
        )
    return outcomes, completion


def test_tables_and_reports_equal_the_simulators_truth(topics: Settings, tmp_path: Path) -> None:
    root = tmp_path / "tables"
    with (
        simulator_process("--step-ms", str(STEP_MS)) as sim,
        running_ingress(topics, tmp_path) as ingress,
    ):
        # No reconciliation during the test: every event is a webhook Offload sent, as the truth lists them.
        settings = with_offload(
            topics, sim.base_url, offload_public_webhook_url=HttpUrl(f"{ingress.url}/webhooks/offload"),
            offload_reconcile_hints=False, offload_reconcile_stale_s=86_400.0,
        )  # fmt: skip
        worker = Worker(settings, tmp_path)
        with (
            running_workers(worker),
            CaseRequestSubmitter(settings) as requests,
            AnswerSubmitter(settings) as answers,
        ):
            play = Lifecycles(sim, answers)
            for name, scenario in SCENARIOS.items():
                requests.publish(
                    case_body(scenario=scenario, clientReferenceId=f"ref-{name}"), request_id=name
                )
            for name in SCENARIOS:
                created = requests.wait_for_outcome(name, timeout_s=60)
                assert created.outcome is CaseRequestOutcomeKind.CREATED and created.caseId, created
                play.case_of[name] = created.caseId
            play.play()
            truths = play.settled_truths()

        exported = subprocess.run(
            [sys.executable, "-m", "offload_bridge.cli", "export", "--to", str(root)],
            env={**os.environ, **settings_env(settings)}, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stdout + exported.stderr

    # events: one row per webhook Offload sent, each the record the ingress wrote to case-events.
    # Before them, the case.created offload-bridge announced each case with when it asked Offload to create
    # it: timed when the call started, so never after Offload's createdAt.
    events = fact_rows(root, EVENTS)
    records = {r.headers["event_id"].decode(): r for r in read_topic(settings, CASE_EVENTS)}
    arrivals = {w["event_id"]: w["deliveries"][0]["at"] for t in truths.values() for w in t["webhooks"]}
    name_of = {case_id: name for name, case_id in play.case_of.items()}
    announced: dict[str, int] = {}
    for record in records.values():
        if record.headers["source"] == b"bridge":
            body = json.loads(record.value or b"{}")
            name = name_of[body["data"]["caseId"]]
            assert name not in announced and body["timestamp"] <= truths[name]["createdAt"]
            announced[name] = body["timestamp"]
            arrivals[body["event_id"]] = int(record.headers["received_at"])
    assert len(announced) == len(SCENARIOS)
    assert len(records) == len(arrivals) == len(events)
    for event in events:
        record = records[event["event_id"]]
        assert event.pop("body") == (record.value or b"").decode()
        assert (event.pop("kafka_partition"), event.pop("kafka_offset")) == (record.partition, record.offset)
        received_ms = event.pop("received_at").timestamp() * 1000
        assert arrivals[event["event_id"]] <= received_ms <= arrivals[event["event_id"]] + 30_000
    expected = expected_events(play, truths, announced)
    assert sorted(events, key=by("event_id")) == sorted(expected, key=by("event_id"))

    # answers: one row per terminal outcome on answer-outcomes, each as this test published it.
    answer_rows = expected_answers(settings)
    assert sorted(fact_rows(root, ANSWERS), key=by("answer_id")) == sorted(answer_rows, key=by("answer_id"))
    seen = {(*play.published[a["answer_id"]], a["outcome"]) for a in answer_rows}
    first_q, second_q = (q["id"] for q in play.questions["two-questions"])
    assert seen == {
        ("one-question", play.questions["one-question"][0]["id"], "alice", "accepted"),
        ("two-questions", first_q, "bob", "accepted"),
        ("two-questions", first_q, "dave", "conflict"),
        ("two-questions", second_q, "carol", "accepted"),
    }
    # Offload's side of the same answers: what it took (202) and what it refused (409).
    inputs = [
        (i["body"]["inputRequestId"], i["httpStatus"], i["errorCode"])
        for t in truths.values()
        for i in t["inputs"]
    ]
    assert sorted(inputs, key=str) == sorted([
        (play.questions["one-question"][0]["id"], 202, None), (first_q, 202, None),
        (first_q, 409, "INPUT_REQUEST_MISMATCH"), (second_q, 202, None),
        (play.questions["outside"][0]["id"], 202, None),
    ], key=str)  # fmt: skip

    # case_requests: one row per terminal outcome on case-request-outcomes: every case created.
    requests_expected = []
    for record in read_topic(settings, CASE_REQUEST_OUTCOMES):
        outcome = json.loads(record.value or b"{}")
        requests_expected.append(
            {
                "request_id": outcome["requestId"],
                "case_id": outcome["caseId"],
                "outcome": outcome["outcome"],
                "http_status": outcome["httpStatus"],
                "error_code": outcome.get("errorCode"),
                "at": ms(outcome["at"]),
                "kafka_partition": record.partition,
                "kafka_offset": record.offset,
            }
        )
    case_request_rows = fact_rows(root, CASE_REQUESTS)
    assert sorted(case_request_rows, key=by("request_id")) == sorted(requests_expected, key=by("request_id"))
    assert {(r["request_id"], r["case_id"], r["outcome"]) for r in case_request_rows} == {
        (name, case_id, "created") for name, case_id in play.case_of.items()
    }

    # questions and cases: the snapshot files the export wrote, equal to the truth.
    questions = expected_questions(play, truths, answer_rows)
    cases = expected_cases(play, truths, answer_rows, announced)
    assert sorted(snapshot_rows(root, QUESTIONS), key=by("input_request_id")) == sorted(
        questions, key=by("input_request_id")
    )
    assert sorted(snapshot_rows(root, CASES), key=by("case_id")) == sorted(cases, key=by("case_id"))
    shapes = sorted(
        (
            name_of[q["case_id"]],
            q["submitted_by"] or "",
            q["answer_outcome"] or "",
            q["answered_at"] is not None,
        )
        for q in questions
    )
    assert shapes == [
        ("one-question", "alice", "accepted", True), ("outside", "", "", True),
        ("two-questions", "bob", "accepted", True), ("two-questions", "carol", "accepted", True),
        ("waiting", "", "", False),
    ]  # fmt: skip

    # The reports, each against the same truth.
    now = max(e["event_time"] for e in events) + timedelta(hours=1)
    assert analytics(settings, root, "question-wait") == approx_rows(expected_question_wait(questions))
    outcomes, completion = expected_outcomes_and_completion(cases)
    assert analytics(settings, root, "outcomes") == approx_rows(outcomes)
    assert analytics(settings, root, "completion") == approx_rows(completion)
    (waiting,) = play.questions["waiting"]
    assert analytics(settings, root, "waiting", "--now", now.isoformat()) == [
        {
            "case_id": play.case_of["waiting"],
            "client_reference_id": "ref-waiting",
            "input_request_id": waiting["id"],
            "question": waiting["question"],
            "asked_at": iso(ms(waiting["requestedAt"]) or now),
            "age_s": pytest.approx((now.timestamp() * 1000 - waiting["requestedAt"]) / 1000, abs=0.0011),
            "last_answer_outcome": None,
        }
    ]
    problems = sorted((a for a in answer_rows if a["outcome"] in ("conflict", "rejected", "dead_lettered")),
                      key=lambda a: a["at"], reverse=True)  # fmt: skip
    assert analytics(settings, root, "answer-problems") == [
        {"at": iso(a["at"]), **{k: a[k] for k in ("outcome", "case_id", "input_request_id", "answer_id",
                                                  "submitted_by", "http_status", "error_code", "attempt")}}
        for a in problems
    ]  # fmt: skip
    assert [p["submitted_by"] for p in problems] == ["dave"]
