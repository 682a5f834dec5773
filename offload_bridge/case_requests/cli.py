"""CLI: ``offload-bridge create-case FILE.json [--request-id ID] [--wait]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError, outcome_line
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands
    from offload_bridge.schemas.case_requests import CaseRequestOutcome

EXIT_CREATED = 0  # created, or duplicate of a request that created its case
EXIT_REFUSED = 1  # rejected, dead_lettered, unknown, or a duplicate without a case
EXIT_NO_OUTCOME = 3  # no terminal outcome before --timeout


def _outcome_line(outcome: CaseRequestOutcome) -> str:
    return outcome_line(
        [outcome.outcome.value, f"requestId={outcome.requestId}"],
        [("caseId", outcome.caseId), ("http", outcome.httpStatus), ("code", outcome.errorCode)],
        outcome.message,
    )


def cmd_create_case(args: argparse.Namespace, settings: Settings) -> int:
    from pydantic import ValidationError

    from offload_bridge.case_requests.client import CaseRequestSubmitter
    from offload_bridge.schemas.case_requests import CaseRequestOutcomeKind
    from offload_bridge.schemas.validation import describe_validation_error
    from offload_bridge.submitting import wait_printing

    try:
        body = json.loads(Path(args.file).read_text())
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot read {args.file}: {error}") from None
    if not isinstance(body, dict):
        raise CommandError(f"{args.file}: a case request must be a JSON object")
    with CaseRequestSubmitter(settings) as submitter:
        try:
            request_id = submitter.publish(body, request_id=args.request_id)
        except ValidationError as error:
            problems = describe_validation_error(error)
            print(f"offload-bridge: invalid case request: {problems}", file=sys.stderr)
            return 2
        print(f"published requestId={request_id}")
        if not args.wait:
            return 0
        outcome = wait_printing(submitter, request_id, args.timeout, _outcome_line)
    if outcome is None:
        return EXIT_NO_OUTCOME
    created = outcome.outcome is CaseRequestOutcomeKind.CREATED
    duplicate_with_case = outcome.outcome is CaseRequestOutcomeKind.DUPLICATE and outcome.caseId is not None
    return EXIT_CREATED if created or duplicate_with_case else EXIT_REFUSED


def register(commands: Subcommands) -> None:
    create = commands.add_parser(
        "create-case", help="publish a case request (the POST /cases body as JSON) to case-requests"
    )
    create.add_argument("file", metavar="FILE.json", help="the POST /cases body, optionally with requestId")
    create.add_argument(
        "--request-id", help="idempotency id (default: the file's requestId, else derived from the body)"
    )
    create.add_argument("--wait", action="store_true", help="wait for the terminal outcome and print it")
    create.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (default 120)")
    create.set_defaults(handler=cmd_create_case)
