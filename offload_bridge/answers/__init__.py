"""For the teams that answer Offload's questions: list the waiting ones, publish answers, wait for outcomes,
manage the DLQ."""

from offload_bridge.answers.client import AnswerSubmitter, OutcomeTimeout
from offload_bridge.answers.questions import (
    CaseNotFound,
    IncompleteListing,
    NoPendingQuestion,
    PendingQuestion,
    QuestionListing,
    QuestionReader,
    WorkerUnavailable,
    pending_questions,
)

__all__ = [
    "AnswerSubmitter",
    "CaseNotFound",
    "IncompleteListing",
    "NoPendingQuestion",
    "OutcomeTimeout",
    "PendingQuestion",
    "QuestionListing",
    "QuestionReader",
    "WorkerUnavailable",
    "pending_questions",
]
