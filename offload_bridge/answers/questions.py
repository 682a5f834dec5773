"""The questions waiting for an answer, read from the workers' case state.

A question is pending while the case is INPUT_NEEDED, its input request is PENDING and no answer of ours
was taken for it (``answers[inputRequestId]`` accepted or duplicate). ``QuestionReader.question_of`` reads
one case (any worker answers for any case); ``QuestionReader.listing`` walks ``GET
/cases?status=INPUT_NEEDED`` on every worker, since each lists only its own partitions, until the
partitions they listed cover the topic's, and says which are missing when they do not.

>>> reader = QuestionReader()
>>> for question in reader.pending_questions(older_than_s=3600):
...     print(question.caseId, question.question)
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from offload_bridge.schemas.case_state import CaseState, InputRequest
from offload_bridge.schemas.questions import CasePage, PendingQuestion
from offload_bridge.settings import Settings, get_settings
from offload_bridge.worker_client import DEFAULT_TIMEOUT_S, WorkerClient, WorkerRefused, WorkerUnavailable

__all__ = [
    "CaseNotFound",
    "IncompleteListing",
    "NoPendingQuestion",
    "PendingQuestion",
    "QuestionListing",
    "QuestionReader",
    "WorkerUnavailable",
    "pending_question",
    "pending_questions",
]

INPUT_NEEDED = "INPUT_NEEDED"
PENDING = "PENDING"
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED"})
# Outcomes after which Offload has our answer: the question is no longer ours to answer.
SETTLED_OUTCOMES = frozenset({"accepted", "duplicate"})
PAGE_LIMIT = 500
# A walk whose partitions move under it (a rebalance) starts again; a worker still recovering answers
# 503 NOT_READY. Either is retried this many times, a second apart, before the worker counts as unlisted.
WALK_ATTEMPTS = 3
RETRY_PAUSE_S = 1.0


class CaseNotFound(LookupError):
    """No worker has seen an event of this case."""

    def __init__(self, case_id: str) -> None:
        self.case_id = case_id
        super().__init__(f"case {case_id} is unknown to the workers (no event of it was seen)")


class NoPendingQuestion(RuntimeError):
    """The case has no question waiting for an answer; ``status`` is the case's."""

    def __init__(self, state: CaseState) -> None:
        self.case_id = state.caseId
        self.status = state.status
        self.reason = no_question_reason(state)
        message = f"case {state.caseId} has no pending question: {self.reason} (status {state.status})"
        super().__init__(message)


def pending_question(state: CaseState) -> InputRequest | None:
    """The case's question if it waits for an answer from us, else None."""
    question = state.inputRequest
    if state.status != INPUT_NEEDED or question is None or question.status != PENDING:
        return None
    recorded = state.answers.get(question.id)
    if recorded is not None and recorded.outcome in SETTLED_OUTCOMES:
        return None
    return question


def no_question_reason(state: CaseState) -> str:
    """Why ``pending_question`` is None, in a few words."""
    question = state.inputRequest
    if state.status in TERMINAL_STATUSES:
        return "the case is over"
    if question is None:
        return "it asked no question"
    recorded = state.answers.get(question.id)
    if recorded is not None and recorded.outcome in SETTLED_OUTCOMES:
        return f"question {question.id} was answered ({recorded.outcome}, answerId {recorded.answerId})"
    if question.status != PENDING:
        return f"question {question.id} is {question.status}"
    return "it is not waiting for input"


def as_pending(state: CaseState, now_ms: int) -> PendingQuestion | None:
    question = pending_question(state)
    if question is None:
        return None
    # The fold always sets requestedAt; a state written without it was last changed by the question.
    requested_at = question.requestedAt if question.requestedAt is not None else state.updatedAt
    return PendingQuestion(
        caseId=state.caseId,
        clientReferenceId=state.clientReferenceId,
        caseStatus=state.status,
        inputRequestId=question.id,
        question=question.question,
        requestedAt=requested_at,
        ageSeconds=max(0, (now_ms - requested_at) // 1000),
        metadata=state.metadata,
    )


@dataclass
class QuestionListing:
    """What the workers listed: the pending questions (oldest first) and how much of the topic they cover."""

    questions: list[PendingQuestion]
    partition_count: int
    listed_partitions: list[int]
    problems: list[str] = field(default_factory=list)  # why a worker's partitions were not listed

    @property
    def missing_partitions(self) -> list[int]:
        listed = set(self.listed_partitions)
        return [partition for partition in range(self.partition_count) if partition not in listed]

    @property
    def complete(self) -> bool:
        return not self.missing_partitions

    def describe_gap(self) -> str:
        """One line naming the partitions not listed and why."""
        missing = ", ".join(str(partition) for partition in self.missing_partitions)
        line = f"incomplete: partitions {missing} of {self.partition_count} were not listed"
        if self.problems:
            line += " (" + "; ".join(self.problems) + ")"
        return line


class IncompleteListing(RuntimeError):
    """Some partitions were not listed (a worker unreachable, partitions moving); ``listing`` has the rest."""

    def __init__(self, listing: QuestionListing) -> None:
        self.listing = listing
        super().__init__(listing.describe_gap())


@dataclass(frozen=True)
class _Walk:
    worker: str
    partitions: list[int]
    partition_count: int
    cases: list[CaseState]


class QuestionReader:
    """Reads cases and their questions from the workers' query API.

    ``workers``: the URLs asked first (default ``Settings.worker_urls``: OFFLOAD_WORKER_URLS, else
    OFFLOAD_WORKER_URL). With ``discover`` the others are found through ``GET /workers``.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        workers: Sequence[str] | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        discover: bool = True,
    ) -> None:
        self.settings = settings or get_settings()
        seeds = list(workers) if workers else list(self.settings.worker_urls)
        self.workers = list(dict.fromkeys(url.rstrip("/") for url in seeds))
        self.timeout_s = timeout_s
        self.discover = discover

    def _client(self, url: str) -> WorkerClient:
        # The bearer token of OFFLOAD_WORKER_API_TOKENS (the first), for workers whose API needs one.
        return WorkerClient(url, self.timeout_s, token=self.settings.worker_client_token)

    def case(self, case_id: str) -> CaseState:
        """The case's state from the first worker that answers. Raises CaseNotFound, WorkerUnavailable."""
        failure: WorkerUnavailable | None = None
        for url in self.workers:
            try:
                state = self._client(url).case(case_id)
            except WorkerUnavailable as error:
                failure = error
                continue
            if state is None:
                raise CaseNotFound(case_id)
            return state
        assert failure is not None  # there is always at least one worker URL
        raise failure

    def question_of(self, case_id: str) -> PendingQuestion:
        """The case's pending question. Raises CaseNotFound, NoPendingQuestion, WorkerUnavailable."""
        state = self.case(case_id)
        pending = as_pending(state, _now_ms())
        if pending is None:
            raise NoPendingQuestion(state)
        return pending

    def pending_questions(self, older_than_s: float | None = None) -> list[PendingQuestion]:
        """Every pending question (oldest first), optionally only those asked at least ``older_than_s``
        ago. Raises IncompleteListing when some partitions could not be listed."""
        listing = self.listing(older_than_s)
        if not listing.complete:
            raise IncompleteListing(listing)
        return listing.questions

    def listing(self, older_than_s: float | None = None) -> QuestionListing:
        """The pending questions of every partition the workers listed, and which partitions they were."""
        problems: list[str] = []
        walked: dict[str, _Walk] = {}  # by the worker's own URL: one worker may be asked by two names
        listed: set[int] = set()
        partition_count: int | None = None
        # Each entry: a worker URL, and for one found through the group the partitions it should list.
        queue: list[tuple[str, frozenset[int] | None]] = [(url, None) for url in self.workers]
        asked: set[str] = set()
        while queue:
            url, expected = queue.pop(0)
            if url in asked or (expected is not None and expected <= listed):
                continue
            asked.add(url)
            client = self._client(url)
            try:
                walk = self._walk(client)
            except WorkerUnavailable as error:
                problems.append(str(error))
                continue
            partition_count = walk.partition_count
            walked.setdefault(walk.worker, walk)
            listed.update(walk.partitions)
            if self.discover and len(listed) < walk.partition_count:
                queue.extend(self._peers(client, listed, problems))
        if partition_count is None:
            partition_count = self.settings.offload_topic_partitions
        return QuestionListing(
            questions=self._questions(walked.values(), older_than_s),
            partition_count=partition_count,
            listed_partitions=sorted(listed),
            problems=problems,
        )

    def _peers(
        self, client: WorkerClient, listed: set[int], problems: list[str]
    ) -> list[tuple[str, frozenset[int]]]:
        """The workers owning partitions not listed yet, by the group's assignment as ``client`` knows it."""
        try:
            group = client.group()
        except WorkerUnavailable as error:
            problems.append(f"no other workers found: {error}")
            return []
        found = [(worker.url.rstrip("/"), frozenset(worker.partitions)) for worker in group.workers]
        return [(url, partitions) for url, partitions in found if partitions - listed]

    def _walk(self, client: WorkerClient) -> _Walk:
        """Every INPUT_NEEDED case of the worker's partitions, following the cursor to the end."""
        reason = "did not finish its listing"
        for attempt in range(WALK_ATTEMPTS):
            if attempt:
                time.sleep(RETRY_PAUSE_S)
            try:
                first = client.page(status=INPUT_NEEDED, limit=PAGE_LIMIT)
            except WorkerRefused as refused:
                if refused.http_status != 503:
                    raise
                reason = refused.reason
                continue
            walk = self._follow(client, first)
            if walk is not None:
                return walk
            reason = "kept moving partitions during the listing (a rebalance)"
        raise WorkerUnavailable(client.url, reason)

    def _follow(self, client: WorkerClient, first: CasePage) -> _Walk | None:
        """The walk from its first page; None when a page covers other partitions than the first
        (partitions moved, so cases may have been skipped: start again)."""
        cases = list(first.cases)
        page = first
        while page.nextCursor is not None:
            try:
                page = client.page(status=INPUT_NEEDED, cursor=page.nextCursor, limit=PAGE_LIMIT)
            except WorkerRefused as refused:
                if refused.http_status == 503:
                    return None
                raise
            if page.partitions != first.partitions:
                return None
            cases.extend(page.cases)
        return _Walk(first.worker or client.url, first.partitions, first.partitionCount, cases)

    @staticmethod
    def _questions(walks: Iterable[_Walk], older_than_s: float | None) -> list[PendingQuestion]:
        # A partition that moved between two workers' walks may be listed by both: keep each case's
        # newest state.
        newest: dict[str, CaseState] = {}
        for walk in walks:
            for state in walk.cases:
                known = newest.get(state.caseId)
                if known is None or state.updatedAt > known.updatedAt:
                    newest[state.caseId] = state
        now = _now_ms()
        questions = [q for q in (as_pending(state, now) for state in newest.values()) if q is not None]
        if older_than_s is not None:
            questions = [q for q in questions if q.ageSeconds >= older_than_s]
        return sorted(questions, key=lambda q: (q.requestedAt, q.caseId))


def pending_questions(
    older_than_s: float | None = None,
    *,
    settings: Settings | None = None,
    workers: Sequence[str] | None = None,
) -> list[PendingQuestion]:
    """Every question waiting for an answer across all workers (``QuestionReader.pending_questions``)."""
    return QuestionReader(settings, workers).pending_questions(older_than_s)


def _now_ms() -> int:
    return int(time.time() * 1000)
