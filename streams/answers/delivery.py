"""Deliver one answer to ``POST /cases/{id}/input`` and act on what Offload said.

Shared by the agent on ``answers`` (first attempts) and the one on ``answers.retry`` (later attempts).
Every answer ends in exactly one terminal outcome; ``attempt`` in an outcome is the number of calls made
to Offload for the answer so far. The case-state table is read and written only between awaits, so the
case-state agent folding the same case in between never has a write overwritten.
"""

from __future__ import annotations

import logging
from typing import Any

from offload_bridge.schemas.answers import Answer, AnswerOutcome, Outcome, RetryAnswer, now_ms
from offload_bridge.schemas.case_state import AnswerRecord, CaseRecord, CaseState
from offload_bridge.schemas.headers import ORIGIN_HEADER
from offload_bridge.settings import Settings
from offload_bridge.streams.answers.case_view import (
    PENDING,
    CaseView,
    accepted_in_table,
    merged_context,
    offload_view,
    table_context,
    table_view,
)
from offload_bridge.streams.answers.outputs import AnswerSink, Position
from offload_bridge.streams.answers.policy import (
    AnswerDecision,
    backoff_s,
    decide_answer,
    needs_delivery_check,
)
from offload_bridge.streams.answers.records import InvalidAnswer, decode_answer
from offload_bridge.streams.counters import Counters
from offload_bridge.streams.journal import header, origin_of
from offload_bridge.streams.messages import position
from offload_bridge.streams.offload_api import OffloadApi, OffloadReply, OffloadUnreachable
from offload_bridge.streams.reconcile.schedule import SchedulePolicy
from offload_bridge.streams.retry import wait_until_due
from offload_bridge.streams.state.store import CaseStore

log = logging.getLogger("offload_bridge.streams.answers")

INVALID_ANSWER = "INVALID_ANSWER"

Result = OffloadReply | OffloadUnreachable


class AnswerDelivery:
    def __init__(
        self,
        settings: Settings,
        table: CaseStore,
        api: OffloadApi,
        outputs: AnswerSink,
        outcome_counts: Counters,
        call_counts: Counters,
    ) -> None:
        self.settings = settings
        self.partitions = settings.offload_topic_partitions
        self.table = table  # CaseStore: the case-state table, read and saved through the fold's writer
        self.api = api
        self.out = outputs
        self.outcome_counts = outcome_counts  # outcomes published, by kind
        self.call_counts = call_counts  # outputs.ANSWER_CALLS
        self.schedule = SchedulePolicy.from_settings(settings)

    # --- entry points, one per record ----------------------------------------------------------------

    async def on_answer(self, message: Any) -> None:
        try:
            answer = decode_answer(Answer, message.key, message.value, position(message), self.partitions)
        except InvalidAnswer as invalid:
            await self._reject_invalid(message, origin_of(message), invalid)
            return
        await self.attempt(message, origin_of(message), answer, attempt=1, not_waiting_retries=0)

    async def on_retry(self, message: Any) -> None:
        # A retry continues the answer record it came from: that record gets the one terminal outcome.
        origin = header(message, ORIGIN_HEADER) or origin_of(message)
        try:
            retry = decode_answer(RetryAnswer, message.key, message.value, position(message), self.partitions)
        except InvalidAnswer as invalid:
            await self._reject_invalid(message, origin, invalid)
            return
        if not await wait_until_due(retry.notBefore, message.timestamp):
            await self.out.defer(message)
            return
        await self.attempt(message, origin, retry, retry.attempt, retry.notWaitingRetries)

    async def on_unexpected(self, message: Any, error: Exception) -> None:
        """Best effort after a bug: the record to the DLQ, and a terminal outcome when an answer was read."""
        self.call_counts.inc("failed")
        log.error("%s: unexpected error, dead-lettered: %r", Position.of(message), error, exc_info=error)
        try:
            try:
                answer: Answer | None = Answer.model_validate_json(message.value or b"")
            except ValueError:
                answer = None
            where = Position.of(message)
            record = AnswerOutcome(
                answerId=answer.answer_id
                if answer
                else f"invalid_{where.topic}_{where.partition}_{where.offset}",
                caseId=answer.caseId if answer else "",
                inputRequestId=answer.inputRequestId if answer else None,
                submittedBy=answer.submittedBy if answer else None,
                outcome=Outcome.DEAD_LETTERED,
                message=f"unexpected error: {type(error).__name__}: {error}",
            )
            if answer is None:
                await self.out.dead_letter(message, None, record)
            else:
                origin = header(message, ORIGIN_HEADER) or origin_of(message)
                await self.out.terminal(message, origin, record, dead_letter=True)
        except Exception:
            log.exception("%s: could not even dead-letter the record; skipped", Position.of(message))

    # --- one attempt ---------------------------------------------------------------------------------

    async def attempt(
        self, message: Any, origin: str, answer: Answer, attempt: int, not_waiting_retries: int
    ) -> None:
        """Call Offload for the ``attempt``-th time (unless our state shows it accepted) and act on it.

        ``origin``: where the answer record sits on ``answers``; it gets exactly one terminal outcome.
        """
        case_id = answer.caseId
        if await self.out.has_outcome(case_id, origin, int(message.partition)):
            # Handled before a crash, its offset not committed yet: the outcome is out, nothing to do.
            self.call_counts.inc("redelivered")
            log.info("answer %s (%s): already has its outcome; not sent again", answer.answer_id, origin)
            return
        if accepted_in_table(self.table.get(case_id), answer):
            view = table_view(self.table.get(case_id), answer)
            message_text = "already accepted by Offload (recorded in the case state); not sent again"
            record = self._outcome(answer, Outcome.DUPLICATE, attempt - 1, None, view, message_text)
            await self.out.terminal(message, origin, record, dead_letter=False)
            return
        self.call_counts.inc("calls")
        result: Result
        try:
            result = await self.api.submit_input(case_id, answer.inputRequestId, answer.providedContext)
        except OffloadUnreachable as unreachable:
            result = unreachable
        # Read after the call: the case-state agent may have folded an event meanwhile.
        case_record = self.table.get(case_id)
        context = table_context(case_record, answer)
        view = table_view(case_record, answer)
        if needs_delivery_check(result, context):
            looked = await self._look_at_case(answer)
            if looked is not None:
                context, view = merged_context(context, looked), looked
        decision = decide_answer(result, answer.inputRequestId, context)
        await self._act(message, origin, answer, attempt, not_waiting_retries, result, decision, view)

    async def _look_at_case(self, answer: Answer) -> CaseView | None:
        self.call_counts.inc("case_lookups")
        try:
            reply = await self.api.get_case(answer.caseId)
        except OffloadUnreachable as unreachable:
            log.warning("answer %s: GET /cases/%s failed: %s", answer.answer_id, answer.caseId, unreachable)
            return None
        looked = offload_view(reply, answer)
        if looked is None:
            log.warning("answer %s: GET /cases/%s answered %s", answer.answer_id, answer.caseId, reply.status)
        return looked

    async def _act(
        self,
        message: Any,
        origin: str,
        answer: Answer,
        attempt: int,
        not_waiting_retries: int,
        result: Result,
        decision: AnswerDecision,
        view: CaseView,
    ) -> None:
        settings = self.settings
        described = _describe(result)
        if decision is AnswerDecision.ACCEPTED:
            view = await self._record_accepted(answer, view)
            record = self._outcome(answer, Outcome.ACCEPTED, attempt, result, view, described)
            await self.out.terminal(message, origin, record, dead_letter=False)
        elif decision is AnswerDecision.DUPLICATE:
            text = f"Offload already has this answer ({described})"
            record = self._outcome(answer, Outcome.DUPLICATE, attempt, result, view, text)
            await self.out.terminal(message, origin, record, dead_letter=False)
        elif decision is AnswerDecision.CONFLICT:
            record = self._outcome(answer, Outcome.CONFLICT, attempt, result, view, described)
            await self.out.terminal(message, origin, record, dead_letter=False)
        elif decision is AnswerDecision.REJECTED:
            record = self._outcome(answer, Outcome.REJECTED, attempt, result, view, described)
            await self.out.terminal(message, origin, record, dead_letter=True)
        elif decision is AnswerDecision.DEAD_LETTER:
            log.error(
                "answer %s of case %s: Offload refused our API key (%s); dead-lettered, redrive once fixed",
                answer.answer_id, answer.caseId, described,
            )  # fmt: skip
            record = self._outcome(answer, Outcome.DEAD_LETTERED, attempt, result, view, described)
            await self.out.terminal(message, origin, record, dead_letter=True)
        elif decision is AnswerDecision.RETRY:
            if attempt >= settings.offload_answer_max_attempts:
                text = f"gave up after {attempt} attempt(s); last: {described}"
                record = self._outcome(answer, Outcome.DEAD_LETTERED, attempt, result, view, text)
                await self.out.terminal(message, origin, record, dead_letter=True)
                return
            retry_after = result.retry_after_s if isinstance(result, OffloadReply) else None
            delay = backoff_s(
                attempt, settings.offload_retry_base_s, settings.offload_retry_max_s, retry_after
            )
            await self._retry(origin, answer, attempt, not_waiting_retries, delay, result, view, described)
        else:  # RETRY_NOT_WAITING: our state shows the question pending; the webhook may be in flight
            if not_waiting_retries >= settings.offload_answer_not_waiting_retries:
                text = f"{described}; still not waiting after {not_waiting_retries} retries"
                record = self._outcome(answer, Outcome.CONFLICT, attempt, result, view, text)
                await self.out.terminal(message, origin, record, dead_letter=False)
                return
            delay = backoff_s(
                not_waiting_retries + 1, settings.offload_retry_base_s, settings.offload_retry_max_s
            )
            await self._retry(
                origin, answer, attempt, not_waiting_retries + 1, delay, result, view, described
            )

    async def _retry(
        self,
        origin: str,
        answer: Answer,
        attempt: int,
        not_waiting_retries: int,
        delay_s: float,
        result: Result,
        view: CaseView,
        described: str,
    ) -> None:
        fields = answer.model_dump(
            include={"caseId", "inputRequestId", "providedContext", "answerId", "submittedBy"}
        )
        retry = RetryAnswer(
            **fields,
            attempt=attempt + 1,
            notBefore=now_ms() + int(delay_s * 1000),
            notWaitingRetries=not_waiting_retries,
        )
        await self.out.schedule(retry, origin)
        text = f"{described}; attempt {attempt + 1} in {delay_s:.1f}s"
        outcome = self._outcome(answer, Outcome.RETRYING, attempt, result, view, text)
        await self.out.outcome(outcome.model_copy(update={"nextAttemptAt": retry.notBefore}))

    async def _record_accepted(self, answer: Answer, view: CaseView) -> CaseView:
        """Note the answer in the case's state (a new value, so the changelog sees it) and publish it.

        Offload resolves the question at once, so ours reads RESOLVED too. The case is about to move
        (Offload's worker reads the answer and replies, completes or asks again), so its next
        reconcile check comes soon.
        """
        case_id = answer.caseId
        at = now_ms()
        record: CaseRecord | None = self.table.get(case_id)
        if record is None:  # no event of the case folded yet
            record = CaseRecord(state=CaseState(caseId=case_id, firstSeenAt=at, updatedAt=at))
        state = record.state
        answers = {
            **state.answers,
            answer.inputRequestId: AnswerRecord(answerId=answer.answer_id, outcome=Outcome.ACCEPTED, at=at),
        }
        changes: dict[str, Any] = {"answers": answers}
        question = state.inputRequest
        if question is not None and question.id == answer.inputRequestId and question.status == PENDING:
            changes["inputRequest"] = question.model_copy(update={"status": "RESOLVED"})
        state = state.model_copy(update=changes)
        # Saved (the table, its changelog and case-state) before the outcome is published: a re-sent
        # answer must find it and end duplicate.
        check = self.schedule.after_answer(case_id, record.check, at)
        await self.table.save(case_id, record.model_copy(update={"state": state, "check": check}))
        current = state.inputRequest.id if state.inputRequest is not None else None
        return CaseView(state.status, current, delivered=True)

    async def _reject_invalid(self, message: Any, origin: str, invalid: InvalidAnswer) -> None:
        record = AnswerOutcome(
            answerId=invalid.answer_id,
            caseId=invalid.case_id or "",
            outcome=Outcome.REJECTED,
            errorCode=INVALID_ANSWER,
            message=str(invalid),
        )
        if invalid.case_id is not None:
            await self.out.terminal(message, origin, record, dead_letter=True)
        else:
            await self.out.dead_letter(message, None, record)
            self.outcome_counts.inc(Outcome.REJECTED.value)
            log.warning(
                "%s: not an answer and no caseId to report to, dead-lettered: %s",
                Position.of(message),
                invalid,
            )

    def _outcome(
        self,
        answer: Answer,
        outcome: Outcome,
        attempt: int,
        result: Result | None,
        view: CaseView,
        text: str,
    ) -> AnswerOutcome:
        reply = result if isinstance(result, OffloadReply) else None
        return AnswerOutcome(
            answerId=answer.answer_id,
            caseId=answer.caseId,
            inputRequestId=answer.inputRequestId,
            outcome=outcome,
            attempt=max(attempt, 0),
            httpStatus=reply.status if reply else None,
            errorCode=reply.error_code if reply else None,
            message=text,
            caseStatus=view.status,
            currentInputRequestId=view.input_request_id,
            submittedBy=answer.submittedBy,
        )


def _describe(result: Result) -> str:
    if isinstance(result, OffloadUnreachable):
        return f"Offload unreachable: {result}"
    code = f" {result.error_code}" if result.error_code else ""
    text = f": {result.error_message}" if result.error_message else ""
    return f"HTTP {result.status}{code}{text}"
