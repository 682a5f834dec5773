"""Publish an answer to ``answers`` and wait for its terminal outcome on ``answer-outcomes``."""

from __future__ import annotations

from offload_bridge.answers.questions import QuestionReader
from offload_bridge.schemas.answers import Answer, AnswerOutcome
from offload_bridge.submitting import OutcomeTimeout, Submitter
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS

__all__ = ["AnswerSubmitter", "OutcomeTimeout"]


class AnswerSubmitter(Submitter[AnswerOutcome]):
    """Publishes answers (keyed by caseId) and reads their outcomes.

    >>> with AnswerSubmitter() as submitter:
    ...     answer_id = submitter.publish(case_id, input_request_id, "Yes, a signed PDF is fine.")
    ...     outcome = submitter.wait_for_outcome(answer_id, timeout_s=60)
    """

    input_topic = ANSWERS
    outcome_topic = ANSWER_OUTCOMES
    outcome_model = AnswerOutcome
    client_id = "offload-bridge-answers"

    def subject_of(self, outcome: AnswerOutcome) -> str:
        return outcome.answerId

    def is_terminal(self, outcome: AnswerOutcome) -> bool:
        return outcome.outcome.terminal

    def publish(
        self,
        case_id: str,
        input_request_id: str,
        provided_context: str,
        *,
        answer_id: str | None = None,
        submitted_by: str | None = None,
        timeout_s: float = 30.0,
    ) -> str:
        """Publish one answer once the broker acknowledged it; returns its answerId.

        Raises pydantic.ValidationError for a blank field, kafka.errors.KafkaError when not acknowledged.
        """
        answer = Answer(
            caseId=case_id,
            inputRequestId=input_request_id,
            providedContext=provided_context,
            answerId=answer_id,
            submittedBy=submitted_by,
        )
        return self.publish_answer(answer, timeout_s=timeout_s)

    def answer_case(
        self,
        case_id: str,
        provided_context: str,
        *,
        answer_id: str | None = None,
        submitted_by: str | None = None,
        timeout_s: float = 30.0,
        reader: QuestionReader | None = None,
    ) -> Answer:
        """Answer the case's pending question, its inputRequestId read from the case's state on a worker
        (``reader``, default ``QuestionReader(self.settings)``); returns the answer published.

        Raises answers.questions.CaseNotFound or NoPendingQuestion (nothing published),
        worker_client.WorkerUnavailable when no worker answered, and what ``publish`` raises.
        """
        question = (reader or QuestionReader(self.settings)).question_of(case_id)
        answer = Answer(
            caseId=case_id,
            inputRequestId=question.inputRequestId,
            providedContext=provided_context,
            answerId=answer_id,
            submittedBy=submitted_by,
        )
        self.publish_answer(answer, timeout_s=timeout_s)
        return answer

    def publish_answer(self, answer: Answer, *, timeout_s: float = 30.0) -> str:
        value = answer.model_dump_json(exclude_none=True).encode()
        self._send(answer.answer_id, answer.caseId, value, timeout_s)
        return answer.answer_id
