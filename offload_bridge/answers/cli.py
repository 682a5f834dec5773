"""CLI: ``offload-bridge answer`` (``dlq list|redrive`` for answers.dlq is in ``offload_bridge.dlq_cli``)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from offload_bridge.cli_support import outcome_line
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands
    from offload_bridge.schemas.answers import AnswerOutcome

# Exit codes of `answer --wait`, so scripts can branch on the outcome.
EXIT_SETTLED = 0  # accepted or duplicate: Offload has the answer
EXIT_REFUSED = 1  # conflict, rejected or dead_lettered
EXIT_NO_OUTCOME = 3  # no terminal outcome before --timeout


def _outcome_line(outcome: AnswerOutcome) -> str:
    return outcome_line(
        [outcome.outcome.value, f"answerId={outcome.answerId}", f"attempt={outcome.attempt}"],
        [
            ("http", outcome.httpStatus),
            ("code", outcome.errorCode),
            ("caseStatus", outcome.caseStatus),
            ("currentInputRequestId", outcome.currentInputRequestId),
        ],
        outcome.message,
    )


def cmd_answer(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from offload_bridge.answers.client import AnswerSubmitter
    from offload_bridge.schemas.answers import Outcome
    from offload_bridge.submitting import wait_printing

    with AnswerSubmitter(settings) as submitter:
        try:
            answer_id = submitter.publish(
                args.case_id,
                args.input_request_id,
                args.text,
                answer_id=args.answer_id,
                submitted_by=args.submitted_by,
            )
        except ValidationError as error:
            fields = ", ".join(str(issue["loc"][0]) for issue in error.errors())
            print(f"offload-bridge: invalid answer: {fields} must not be blank", file=sys.stderr)
            return 2
        print(f"published answerId={answer_id}")
        if not args.wait:
            return 0
        outcome = wait_printing(submitter, answer_id, args.timeout, _outcome_line)
    if outcome is None:
        return EXIT_NO_OUTCOME
    return EXIT_SETTLED if outcome.outcome in (Outcome.ACCEPTED, Outcome.DUPLICATE) else EXIT_REFUSED


def register(commands: Subcommands) -> None:
    answer = commands.add_parser("answer", help="publish an answer to one of Offload's questions")
    answer.add_argument("case_id", metavar="CASE_ID")
    answer.add_argument("input_request_id", metavar="INPUT_REQUEST_ID")
    answer.add_argument("text", metavar="TEXT", help="the providedContext sent to Offload")
    answer.add_argument("--wait", action="store_true", help="wait for the terminal outcome and print it")
    answer.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    answer.add_argument("--answer-id", help="your own idempotency id (default: derived from the answer)")
    answer.add_argument("--submitted-by", help="who answered, recorded with the answer")
    answer.set_defaults(handler=cmd_answer)
