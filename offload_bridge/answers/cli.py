"""CLI: ``offload-bridge answer`` and ``offload-bridge questions``.

(``dlq list|redrive`` for answers.dlq is in ``offload_bridge.dlq_cli``.)
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError, outcome_line
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands
    from offload_bridge.schemas.answers import AnswerOutcome
    from offload_bridge.schemas.questions import PendingQuestion

# Exit codes of `answer --wait`, so scripts can branch on the outcome.
EXIT_SETTLED = 0  # accepted or duplicate: Offload has the answer
EXIT_REFUSED = 1  # conflict, rejected or dead_lettered
EXIT_NO_OUTCOME = 3  # no terminal outcome before --timeout
# Exit code of `questions` when some partitions could not be listed (the list printed is partial).
EXIT_INCOMPLETE = 1

QUESTION_WIDTH = 60
_DURATION = re.compile(r"(?P<amount>[0-9]+(?:\.[0-9]+)?)(?P<unit>[smhd]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


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


def _split_answer_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[str | None, str]:
    """``CASE_ID TEXT`` or ``CASE_ID INPUT_REQUEST_ID TEXT``: the input request id (None: read it from the
    case's state) and the text."""
    rest: list[str] = args.rest
    if len(rest) > 2:
        parser.error("expected CASE_ID [INPUT_REQUEST_ID] TEXT (quote the text)")
    return (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])


def _pending_question_id(settings: Settings, case_id: str, timeout_s: float) -> str:
    """The case's pending question, read from a worker; a one-line CommandError when it has none."""
    from offload_bridge.answers.questions import CaseNotFound, NoPendingQuestion, QuestionReader
    from offload_bridge.worker_client import WorkerUnavailable

    reader = QuestionReader(settings, timeout_s=min(timeout_s, 30.0))
    try:
        return reader.question_of(case_id).inputRequestId
    except NoPendingQuestion as error:
        raise CommandError(f"not answered: {error}") from None
    except CaseNotFound as error:
        raise CommandError(f"not answered: {error} (status unknown)") from None
    except WorkerUnavailable as error:
        raise CommandError(f"not answered: cannot read the case's question: {error}") from None


def cmd_answer(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from offload_bridge.answers.client import AnswerSubmitter
    from offload_bridge.schemas.answers import Outcome
    from offload_bridge.submitting import wait_printing

    input_request_id, text = _split_answer_args(args, args.parser)
    if not text.strip():
        # Refused before the case is even read, as a blank field of the three-argument form is.
        print("offload-bridge: invalid answer: providedContext must not be blank", file=sys.stderr)
        return 2
    if input_request_id is None:
        input_request_id = _pending_question_id(settings, args.case_id, args.timeout)
        print(f"question inputRequestId={input_request_id}")
    with AnswerSubmitter(settings) as submitter:
        try:
            answer_id = submitter.publish(
                args.case_id,
                input_request_id,
                text,
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


def parse_duration(text: str) -> float:
    """``30m``, ``1h``, ``2d``, ``45s`` or plain seconds (``90``), as seconds."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30m, 1h, 2d or seconds, got {text!r}")
    return float(match["amount"]) * _UNIT_SECONDS[match["unit"] or "s"]


def worker_url(text: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text.strip()):
        raise argparse.ArgumentTypeError(f"expected http(s)://host:port, got {text!r}")
    return text.strip().rstrip("/")


def format_age(seconds: int) -> str:
    """An age in its two largest units: ``45s``, ``12m05s``, ``3h20m``, ``2d04h``."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "\u2026"


def questions_table(questions: list[PendingQuestion]) -> list[str]:
    rows = [
        (q.caseId, format_age(q.ageSeconds), _shorten(q.question, QUESTION_WIDTH), q.clientReferenceId or "-")
        for q in questions
    ]
    header = ("CASE ID", "AGE", "QUESTION", "CLIENT REFERENCE")
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(3)]
    return [
        "  ".join([*(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=False)), row[3]])
        for row in [header, *rows]
    ]


def cmd_questions(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import TypeAdapter

    from offload_bridge.answers.questions import QuestionReader
    from offload_bridge.schemas.questions import PendingQuestion

    reader = QuestionReader(settings, args.worker, timeout_s=args.timeout)
    listing = reader.listing(older_than_s=args.older_than)
    if args.json:
        print(TypeAdapter(list[PendingQuestion]).dump_json(listing.questions, indent=2).decode())
    elif listing.questions:
        print("\n".join(questions_table(listing.questions)))
    elif listing.complete:
        print("no question is waiting for an answer")
    else:
        print("no question found in the partitions listed")
    if not listing.complete:
        print(f"offload-bridge: {listing.describe_gap()}", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0


def register(commands: Subcommands) -> None:
    answer = commands.add_parser(
        "answer",
        help="publish an answer to one of Offload's questions",
        usage="offload-bridge answer [options] CASE_ID [INPUT_REQUEST_ID] TEXT",
        description="Without INPUT_REQUEST_ID the case's pending question is read from a worker "
        "(OFFLOAD_WORKER_URL); a case with none is refused and nothing is published.",
    )
    answer.add_argument("case_id", metavar="CASE_ID", help="the case whose question this answers")
    answer.add_argument(
        "rest",
        nargs="+",
        metavar="[INPUT_REQUEST_ID] TEXT",
        help="the question's id (default: the case's pending one) and the providedContext sent to Offload",
    )
    answer.add_argument("--wait", action="store_true", help="wait for the terminal outcome and print it")
    answer.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    answer.add_argument("--answer-id", help="your own idempotency id (default: derived from the answer)")
    answer.add_argument("--submitted-by", help="who answered, recorded with the answer")
    answer.set_defaults(handler=cmd_answer, parser=answer)

    questions = commands.add_parser(
        "questions",
        help="list the questions waiting for an answer, across all workers",
        description="Walks GET /cases?status=INPUT_NEEDED on every worker (found through GET /workers from "
        "OFFLOAD_WORKER_URLS or OFFLOAD_WORKER_URL, or given with --worker). Exits 1, naming the "
        "partitions, when some partitions could not be listed.",
    )
    questions.add_argument("--json", action="store_true", help="a JSON array of the full questions")
    questions.add_argument(
        "--older-than",
        type=parse_duration,
        metavar="DURATION",
        help="only questions asked at least this long ago: 30m, 1h, 2d or seconds",
    )
    questions.add_argument(
        "--worker",
        action="append",
        type=worker_url,
        metavar="URL",
        help="a worker to ask first (repeatable; default OFFLOAD_WORKER_URLS, else OFFLOAD_WORKER_URL)",
    )
    questions.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default 10)")
    questions.set_defaults(handler=cmd_questions)
