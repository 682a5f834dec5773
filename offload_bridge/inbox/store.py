"""What the inbox knows, fed by the topics: the waiting questions and each case's question history.

Everything here runs on the event loop (``feed`` hands records over in batches), so nothing needs a lock.

- ``case-state`` (compacted, the latest state per case) gives the waiting questions, kept sorted by the time
  Offload asked, oldest first, so a page of the list is a slice;
- ``case-events`` gives every question a case was asked (``case.input_needed``), ``answers`` who answered
  what, and ``answer-outcomes`` what became of each answer: the case state keeps none of that.

Memory is bounded by time: a case over for longer than the history window, and history older than it, are
dropped (``prune``), so the inbox holds the open cases plus the window's recent ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from offload_bridge.answers.questions import as_pending
from offload_bridge.schemas.answers import AnswerOutcome, Outcome
from offload_bridge.schemas.case_state import CaseState
from offload_bridge.schemas.events import TERMINAL_STATUSES
from offload_bridge.schemas.questions import PendingQuestion

# Outcomes after which an answer no longer stands for its question: someone must answer again.
FAILED_OUTCOMES = frozenset({Outcome.CONFLICT.value, Outcome.REJECTED.value, Outcome.DEAD_LETTERED.value})


@dataclass(frozen=True)
class AskedQuestion:
    """One question Offload asked (a ``case.input_needed`` event)."""

    case_id: str
    input_request_id: str
    question: str
    requested_at: int  # unix ms


@dataclass(frozen=True)
class SubmittedAnswer:
    """One answer published on ``answers`` (by the inbox or anyone else)."""

    case_id: str
    answer_id: str
    input_request_id: str
    text: str
    submitted_by: str | None
    published_at: int  # unix ms: the record's timestamp


@dataclass
class AnswerView:
    """An answer with what became of it so far."""

    answer: SubmittedAnswer
    outcomes: list[AnswerOutcome] = field(default_factory=list)

    @property
    def latest(self) -> AnswerOutcome | None:
        return self.outcomes[-1] if self.outcomes else None

    @property
    def status(self) -> str:
        """``sent`` until the worker reports; then its latest outcome."""
        latest = self.latest
        return str(latest.outcome) if latest is not None else "sent"

    @property
    def stands(self) -> bool:
        """True while the answer may still be, or was, taken for its question."""
        return self.status not in FAILED_OUTCOMES


@dataclass
class CaseHistory:
    questions: dict[str, AskedQuestion] = field(default_factory=dict)  # by inputRequestId
    answers: dict[str, AnswerView] = field(default_factory=dict)  # by answerId
    last_seen: int = 0  # unix ms of the newest record of this case


@dataclass(frozen=True)
class StateItem:
    case_id: str
    state: CaseState | None  # None: a tombstone


@dataclass(frozen=True)
class OutcomeItem:
    outcome: AnswerOutcome


FeedItem = StateItem | AskedQuestion | SubmittedAnswer | OutcomeItem


@dataclass(frozen=True)
class QuestionFilter:
    older_than_s: int | None = None
    field: str | None = None  # a top-level key of the case's metadata
    value: str | None = None

    def matches(self, question: PendingQuestion, now_ms: int) -> bool:
        if self.older_than_s is not None and now_ms - question.requestedAt < self.older_than_s * 1000:
            return False
        if self.field:
            metadata = question.metadata if isinstance(question.metadata, dict) else {}
            if self.field not in metadata:
                return False
            if self.value and str(metadata[self.field]) != self.value:
                return False
        return True


@dataclass(frozen=True)
class QuestionPage:
    questions: list[PendingQuestion]
    total: int  # questions matching the filter
    page: int
    pages: int
    # An answer already on its way for a listed question (by caseId): someone is on it.
    answering: dict[str, AnswerView] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseView:
    """Everything the case page shows, as the inbox knows it now."""

    case_id: str
    state: CaseState | None
    pending: PendingQuestion | None
    questions: list[AskedQuestion]  # oldest first
    answers: list[AnswerView]  # oldest first

    def question(self, input_request_id: str) -> AskedQuestion | None:
        return next((q for q in self.questions if q.input_request_id == input_request_id), None)

    def answers_to(self, input_request_id: str) -> list[AnswerView]:
        return [view for view in self.answers if view.answer.input_request_id == input_request_id]

    def standing_answer(self, input_request_id: str) -> AnswerView | None:
        return standing_answer(self.answers, input_request_id)


def standing_answer(answers: Iterable[AnswerView], input_request_id: str) -> AnswerView | None:
    """The answer that stands for this question: the first sent to it that was not refused, if any."""
    standing = (view for view in answers if view.answer.input_request_id == input_request_id and view.stands)
    return min(standing, key=lambda view: (view.answer.published_at, view.answer.answer_id), default=None)


class InboxStore:
    def __init__(self, history_ms: int, clock: Callable[[], int]) -> None:
        self.history_ms = history_ms
        self._clock = clock
        self._states: dict[str, CaseState] = {}
        self._waiting: dict[str, PendingQuestion] = {}
        self._order: list[tuple[int, str]] = []  # (requestedAt, caseId) of the waiting questions, sorted
        self._history: dict[str, CaseHistory] = {}
        self._answer_case: dict[str, str] = {}  # answerId -> caseId

    # --- feeding ---------------------------------------------------------------------------------
    def apply(self, items: Iterable[FeedItem]) -> set[str]:
        """Apply a batch of records; returns the ids of the cases that changed."""
        changed: set[str] = set()
        now = self._clock()
        for item in items:
            if isinstance(item, StateItem):
                if self._apply_state(item, now):
                    changed.add(item.case_id)
            elif isinstance(item, AskedQuestion):
                history = self._case(item.case_id, item.requested_at)
                history.questions.setdefault(item.input_request_id, item)
                changed.add(item.case_id)
            elif isinstance(item, SubmittedAnswer):
                if self.add_answer(item):
                    changed.add(item.case_id)
            else:
                if self._apply_outcome(item.outcome):
                    changed.add(item.outcome.caseId)
        return changed

    def add_answer(self, answer: SubmittedAnswer) -> bool:
        """Record an answer (from the topic, or just published by this inbox); False when known."""
        history = self._case(answer.case_id, answer.published_at)
        if answer.answer_id in history.answers:
            return False
        history.answers[answer.answer_id] = AnswerView(answer)
        self._answer_case[answer.answer_id] = answer.case_id
        return True

    def _apply_outcome(self, outcome: AnswerOutcome) -> bool:
        history = self._case(outcome.caseId, outcome.at)
        view = history.answers.get(outcome.answerId)
        if view is None:
            # An outcome of an answer published before the history window: shown without its text.
            answer = SubmittedAnswer(
                outcome.caseId,
                outcome.answerId,
                outcome.inputRequestId or "",
                "",
                outcome.submittedBy,
                outcome.at,
            )
            view = history.answers[outcome.answerId] = AnswerView(answer)
            self._answer_case[outcome.answerId] = outcome.caseId
        if any(
            known.outcome == outcome.outcome and known.attempt == outcome.attempt for known in view.outcomes
        ):
            return False  # a re-sent outcome
        view.outcomes.append(outcome)
        return True

    def _apply_state(self, item: StateItem, now: int) -> bool:
        state, case_id = item.state, item.case_id
        known = self._states.get(case_id)
        if state is None:
            self._drop_case(case_id)
            return known is not None
        if known is not None and known.updatedAt > state.updatedAt:
            return False  # an older record read after a newer one
        if state.status in TERMINAL_STATUSES and state.updatedAt < now - self.history_ms:
            self._drop_case(case_id)  # over, and before the window: no one looks for it here
            return False
        self._states[case_id] = state
        self._set_waiting(case_id, as_pending(state, now))
        self._case(case_id, state.updatedAt)
        return True

    def _set_waiting(self, case_id: str, question: PendingQuestion | None) -> None:
        old = self._waiting.pop(case_id, None)
        if old is not None:
            index = bisect.bisect_left(self._order, (old.requestedAt, case_id))
            if index < len(self._order) and self._order[index] == (old.requestedAt, case_id):
                del self._order[index]
        if question is not None:
            self._waiting[case_id] = question
            bisect.insort(self._order, (question.requestedAt, case_id))

    def _case(self, case_id: str, seen_at: int) -> CaseHistory:
        history = self._history.get(case_id)
        if history is None:
            history = self._history[case_id] = CaseHistory()
        history.last_seen = max(history.last_seen, seen_at)
        return history

    def _drop_case(self, case_id: str) -> None:
        self._states.pop(case_id, None)
        self._set_waiting(case_id, None)

    def prune(self) -> int:
        """Forget the history of cases not waiting whose last record is older than the window."""
        cutoff = self._clock() - self.history_ms
        stale = [
            case_id
            for case_id, history in self._history.items()
            if history.last_seen < cutoff and case_id not in self._waiting
        ]
        for case_id in stale:
            for answer_id in self._history.pop(case_id).answers:
                self._answer_case.pop(answer_id, None)
            state = self._states.get(case_id)
            if state is not None and state.status in TERMINAL_STATUSES:
                del self._states[case_id]
        return len(stale)

    # --- reading ---------------------------------------------------------------------------------
    @property
    def waiting_count(self) -> int:
        return len(self._order)

    @property
    def case_count(self) -> int:
        return len(self._states)

    def page(self, filters: QuestionFilter, page: int, size: int) -> QuestionPage:
        """One page of the waiting questions matching ``filters``, oldest first (``page`` from 1)."""
        now = self._clock()
        page = max(1, page)
        start = (page - 1) * size
        if filters == QuestionFilter():
            keys = self._order[start : start + size]
            total = len(self._order)
        else:
            matching = [key for key in self._order if filters.matches(self._waiting[key[1]], now)]
            keys, total = matching[start : start + size], len(matching)
        questions = [self._aged(self._waiting[case_id], now) for _, case_id in keys]
        answering = {}
        for question in questions:
            history = self._history.get(question.caseId)
            on_it = standing_answer(history.answers.values(), question.inputRequestId) if history else None
            if on_it is not None:
                answering[question.caseId] = on_it
        return QuestionPage(questions, total, page, max(1, -(-total // size)), answering)

    def metadata_fields(self, limit: int = 50) -> list[str]:
        """Top-level metadata keys of the waiting questions (the filter's choices)."""
        fields: set[str] = set()
        for question in self._waiting.values():
            if isinstance(question.metadata, dict):
                fields.update(str(key) for key in question.metadata)
                if len(fields) >= limit:
                    break
        return sorted(fields)[:limit]

    def case(self, case_id: str) -> CaseView | None:
        state = self._states.get(case_id)
        history = self._history.get(case_id)
        if state is None and history is None:
            return None
        history = history or CaseHistory()
        waiting = self._waiting.get(case_id)
        questions = dict(history.questions)
        if state is not None and (current := state.inputRequest) is not None and current.id not in questions:
            # Asked before the history window: the state still holds it.
            asked_at = current.requestedAt if current.requestedAt is not None else state.updatedAt
            questions[current.id] = AskedQuestion(case_id, current.id, current.question, asked_at)
        return CaseView(
            case_id=case_id,
            state=state,
            pending=self._aged(waiting, self._clock()) if waiting is not None else None,
            questions=sorted(questions.values(), key=lambda q: (q.requested_at, q.input_request_id)),
            answers=sorted(
                history.answers.values(), key=lambda v: (v.answer.published_at, v.answer.answer_id)
            ),
        )

    def answer(self, answer_id: str) -> AnswerView | None:
        case_id = self._answer_case.get(answer_id)
        if case_id is None:
            return None
        return self._history[case_id].answers.get(answer_id)

    @staticmethod
    def _aged(question: PendingQuestion, now_ms: int) -> PendingQuestion:
        return question.model_copy(update={"ageSeconds": max(0, (now_ms - question.requestedAt) // 1000)})
