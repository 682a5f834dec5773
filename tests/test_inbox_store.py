"""The inbox's store: the waiting questions from case-state, each case's history from the other topics."""

from __future__ import annotations

from offload_bridge.inbox.store import (
    AskedQuestion,
    InboxStore,
    OutcomeItem,
    QuestionFilter,
    StateItem,
    SubmittedAnswer,
)
from offload_bridge.schemas.answers import AnswerOutcome, Outcome
from offload_bridge.schemas.case_state import AnswerRecord, CaseState, InputRequest

NOW = 1_800_000_000_000
HOUR = 3_600_000
DAY = 24 * HOUR


def store(history_ms: int = 30 * DAY) -> InboxStore:
    return InboxStore(history_ms, lambda: NOW)


def waiting(
    case_id: str, asked_at: int, question: str = "Q?", updated: int | None = None, **fields: object
) -> StateItem:
    state = CaseState(
        caseId=case_id,
        status="INPUT_NEEDED",
        inputRequest=InputRequest(id=f"ir-{case_id}", question=question, requestedAt=asked_at),
        firstSeenAt=asked_at,
        updatedAt=updated if updated is not None else asked_at,
        **fields,  # type: ignore[arg-type]
    )
    return StateItem(case_id, state)


def test_the_list_is_oldest_first_and_pages_are_slices() -> None:
    inbox = store()
    inbox.apply([waiting(f"c{i}", NOW - i * HOUR) for i in range(7)])
    first = inbox.page(QuestionFilter(), page=1, size=3)
    assert [q.caseId for q in first.questions] == ["c6", "c5", "c4"]
    assert (first.total, first.pages) == (7, 3)
    assert [q.caseId for q in inbox.page(QuestionFilter(), 3, 3).questions] == ["c0"]
    assert first.questions[0].ageSeconds == 6 * 3600


def test_filters_by_age_and_by_a_metadata_field() -> None:
    inbox = store()
    inbox.apply(
        [
            waiting("old-ap", NOW - 2 * DAY, metadata={"team": "ap"}),
            waiting("new-ap", NOW - HOUR // 2, metadata={"team": "ap"}),
            waiting("old-legal", NOW - 3 * DAY, metadata={"team": "legal", "priority": 1}),
            waiting("no-meta", NOW - 4 * DAY),
        ]
    )

    def ids(filters: QuestionFilter) -> list[str]:
        return [q.caseId for q in inbox.page(filters, 1, 50).questions]

    assert ids(QuestionFilter(older_than_s=86_400)) == ["no-meta", "old-legal", "old-ap"]
    assert ids(QuestionFilter(field="team", value="ap")) == ["old-ap", "new-ap"]
    assert ids(QuestionFilter(field="priority")) == ["old-legal"]
    assert ids(QuestionFilter(field="priority", value="1")) == ["old-legal"]
    assert ids(QuestionFilter(older_than_s=86_400, field="team", value="ap")) == ["old-ap"]
    assert inbox.metadata_fields() == ["priority", "team"]


def test_a_question_leaves_the_list_when_answered_and_an_older_state_never_returns_it() -> None:
    inbox = store()
    inbox.apply([waiting("c1", NOW - HOUR, updated=NOW - HOUR)])
    answered = waiting("c1", NOW - HOUR, updated=NOW - 10).state
    assert answered is not None
    answered = answered.model_copy(
        update={"answers": {"ir-c1": AnswerRecord(answerId="a1", outcome=Outcome.ACCEPTED, at=NOW - 10)}}
    )
    assert inbox.apply([StateItem("c1", answered)]) == {"c1"}
    assert inbox.waiting_count == 0
    # A record read late (an older state of the case) changes nothing.
    assert inbox.apply([waiting("c1", NOW - HOUR, updated=NOW - HOUR)]) == set()
    assert inbox.waiting_count == 0
    assert inbox.apply([StateItem("c1", None)]) == {"c1"}  # a tombstone forgets the case
    assert inbox.case_count == 0


def test_the_history_holds_every_question_answer_and_outcome_and_says_which_answer_stands() -> None:
    inbox = store()
    inbox.apply(
        [
            AskedQuestion("c1", "ir-1", "First?", NOW - 3 * HOUR),
            SubmittedAnswer("c1", "a-late", "ir-1", "Too late.", "dave@example.com", NOW - 2 * HOUR),
            AskedQuestion("c1", "ir-2", "Second?", NOW - HOUR),
            SubmittedAnswer("c1", "a-2", "ir-2", "Monday.", "carol@example.com", NOW - 30 * 60_000),
        ]
    )
    conflict = AnswerOutcome(
        answerId="a-late", caseId="c1", inputRequestId="ir-1", outcome=Outcome.CONFLICT, at=NOW
    )
    retrying = AnswerOutcome(
        answerId="a-2", caseId="c1", inputRequestId="ir-2", outcome=Outcome.RETRYING, attempt=1
    )
    assert inbox.apply([OutcomeItem(conflict), OutcomeItem(retrying), OutcomeItem(retrying)]) == {"c1"}
    view = inbox.case("c1")
    assert view is not None
    assert [q.input_request_id for q in view.questions] == ["ir-1", "ir-2"]
    late, second = view.answers
    assert (late.status, late.stands) == ("conflict", False)
    assert (second.status, len(second.outcomes)) == ("retrying", 1)  # the re-sent outcome counted once
    assert view.standing_answer("ir-1") is None
    standing = view.standing_answer("ir-2")
    assert standing is not None and standing.answer.submitted_by == "carol@example.com"
    answer = inbox.answer("a-2")
    assert answer is not None and answer.answer.text == "Monday."
    # The list says someone is on a question while their answer is on its way.
    inbox.apply([waiting("c1", NOW - HOUR)])
    inbox.apply([AskedQuestion("c1", "ir-c1", "Q?", NOW - HOUR)])
    inbox.add_answer(SubmittedAnswer("c1", "a-3", "ir-c1", "On it.", "erin@example.com", NOW))
    listed = inbox.page(QuestionFilter(), 1, 10)
    assert listed.answering["c1"].answer.submitted_by == "erin@example.com"


def test_an_outcome_of_an_answer_older_than_the_window_is_shown_without_its_text() -> None:
    inbox = store()
    accepted = AnswerOutcome(
        answerId="a-old", caseId="c9", inputRequestId="ir-9", outcome=Outcome.ACCEPTED, submittedBy="erin"
    )
    inbox.apply([OutcomeItem(accepted)])
    view = inbox.answer("a-old")
    assert view is not None and (view.answer.submitted_by, view.answer.text, view.status) == (
        "erin",
        "",
        "accepted",
    )


def test_old_closed_cases_are_forgotten_and_waiting_ones_never() -> None:
    inbox = store(history_ms=DAY)
    completed = CaseState(
        caseId="done", status="COMPLETED", firstSeenAt=NOW - 3 * DAY, updatedAt=NOW - 2 * DAY
    )
    inbox.apply(
        [
            StateItem("done", completed),  # over before the window: not even kept
            waiting("waits", NOW - 5 * DAY),
            AskedQuestion("waits", "ir-waits", "Q?", NOW - 5 * DAY),
            AskedQuestion("gone", "ir-gone", "Q?", NOW - 3 * DAY),
        ]
    )
    assert inbox.case("done") is None
    assert inbox.prune() == 1
    assert inbox.case("gone") is None
    kept = inbox.case("waits")
    assert kept is not None and kept.pending is not None and [q.question for q in kept.questions] == ["Q?"]
