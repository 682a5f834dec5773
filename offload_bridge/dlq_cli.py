"""CLI: ``offload-bridge dlq list|redrive [--topic answers.dlq|case-requests.dlq]``."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError
from offload_bridge.dlq import (
    ANSWERS_QUEUE,
    QUEUES,
    DeadLetter,
    DeadLetterQueue,
    list_dead_letters,
    redrive_all,
    redrive_subject,
)
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands


def _about(queue: DeadLetterQueue, letter: DeadLetter) -> str:
    """Who a dead letter is about: an answer's case and answerId, a request's requestId."""
    if queue.subject == "answer":
        return f"case={letter.case_id} answer={letter.answer_id}"
    return f"request={letter.subject}"


def _where(letter: DeadLetter) -> str:
    """Where a dead letter sits in its queue."""
    return f"partition={letter.partition} offset={letter.offset}"


def cmd_dlq_list(args: argparse.Namespace, settings: Settings) -> int:
    queue = QUEUES[args.topic]
    letters = list_dead_letters(settings, queue)
    for letter in letters:
        if args.json:
            value = letter.value.decode(errors="replace") if letter.value is not None else None
            record = {"partition": letter.partition, "offset": letter.offset, "key": letter.key_text}
            print(json.dumps({**record, "headers": letter.headers, "value": value}))
        else:
            print(f"{_where(letter)} {_about(queue, letter)} outcome={letter.outcome} error={letter.error!r}")
    if not args.json:
        print(f"{len(letters)} record(s) in {settings.offload_topic_prefix}{queue.topic.name}")
    return 0


def cmd_dlq_redrive(args: argparse.Namespace, settings: Settings) -> int:
    queue = QUEUES[args.topic]
    subject = args.answer_id or args.request_id
    if subject is not None:
        option = f"--{queue.subject}-id"
        if (args.answer_id is not None) != (queue.subject == "answer"):
            raise CommandError(f"{args.topic} names its records by {option}")
        report = redrive_subject(settings, subject, queue, force=args.force)
    else:
        report = redrive_all(settings, queue, force=args.force)
    for letter in report.redriven:
        print(f"redriven {_where(letter)} {queue.subject}={letter.subject}")
    for letter in report.skipped:
        where = _where(letter)
        print(f"skipped  {where} {queue.subject}={letter.subject} outcome={letter.outcome}")
    for letter in report.held:
        where = _where(letter)
        print(f"held     {where} {queue.subject}={letter.subject} outcome={letter.outcome} (needs --force)")
    if report.held:
        outcomes = "/".join(sorted(queue.only_on_purpose))
        print(
            f"offload-bridge: {len(report.held)} record(s) held back: an {outcomes} outcome means Offload "
            "may have acted on the record already; check, then redrive with --force",
            file=sys.stderr,
        )
    if subject is not None and not report.redriven:
        if not report.held:
            print(f"offload-bridge: no dead letter for {queue.subject} {subject}", file=sys.stderr)
        return 1
    print(f"{len(report.redriven)} redriven, {len(report.skipped) + len(report.held)} skipped")
    return 0


def register(commands: Subcommands) -> None:
    dlq = commands.add_parser("dlq", help="inspect and redrive a dead-letter queue (answers.dlq by default)")
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="print every dead letter")
    redrive = actions.add_parser("redrive", help="republish dead letters to the topic they came from")
    for action in (listing, redrive):
        action.add_argument(
            "--topic",
            default=ANSWERS_QUEUE.topic.name,
            choices=tuple(QUEUES),
            help=f"the queue, without prefix (default {ANSWERS_QUEUE.topic.name})",
        )
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    listing.set_defaults(handler=cmd_dlq_list)
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("--answer-id", help="redrive the dead letters of this answer (answers.dlq)")
    which.add_argument("--request-id", help="redrive the dead letters of this request (case-requests.dlq)")
    which.add_argument(
        "--all", action="store_true", help="redrive every dead_lettered record not redriven before"
    )
    redrive.add_argument(
        "--force",
        action="store_true",
        help="also redrive case requests that ended unknown (Offload may have created their case)",
    )
    redrive.set_defaults(handler=cmd_dlq_redrive)
