"""For the teams that answer Offload's questions: publish answers, wait for outcomes, manage the DLQ."""

from offload_bridge.answers.client import AnswerSubmitter, OutcomeTimeout

__all__ = ["AnswerSubmitter", "OutcomeTimeout"]
