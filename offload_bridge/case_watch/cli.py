"""CLI: ``offload-bridge track CASE_ID ... [--from-file PATH] [--requested-by NAME] [--note TEXT]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError, outcome_line
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.case_watch.client import Tracked
    from offload_bridge.cli_support import Subcommands
    from offload_bridge.schemas.case_watch import CaseWatch

STDIN = "-"


def _tracked_line(tracked: Tracked) -> str:
    return outcome_line(
        ["tracked", f"caseId={tracked.case_id}"],
        [("partition", tracked.partition), ("offset", tracked.offset)],
        None,
    )


def _file_lines(path: str) -> list[str]:
    if path == STDIN:
        return sys.stdin.read().splitlines()
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CommandError(f"cannot read {path}: {error}") from None


def _case_ids(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    """Each caseId asked for, with where it came from (for the error that names a bad one)."""
    for number, case_id in enumerate(args.case_ids, start=1):
        yield case_id, f"argument {number}"
    if args.from_file is not None:
        source = "stdin" if args.from_file == STDIN else args.from_file
        for number, line in enumerate(_file_lines(args.from_file), start=1):
            # `#` starts a comment (caseIds are UUIDs), so `id  # why` is the id alone.
            case_id = line.split("#", 1)[0].strip()
            if case_id:
                yield case_id, f"line {number} of {source}"


def _watches(args: argparse.Namespace) -> list[CaseWatch]:
    """Every request, validated before anything is published: one bad caseId publishes nothing."""
    from pydantic import ValidationError

    from offload_bridge.schemas.case_watch import CaseWatch

    watches = []
    for case_id, where in _case_ids(args):
        try:
            watches.append(CaseWatch(caseId=case_id, requestedBy=args.requested_by, note=args.note))
        except ValidationError as error:
            fields = sorted({str(issue["loc"][0]) for issue in error.errors()})
            place = "--requested-by" if fields == ["requestedBy"] else where
            raise CommandError(
                f"invalid case watch: {', '.join(fields)} must not be blank ({place}); nothing published"
            ) from None
    if not watches:
        raise CommandError("no caseId to track: give CASE_ID arguments or --from-file; nothing published")
    return watches


def cmd_track(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge.case_watch.client import CaseWatcher

    watches = _watches(args)
    with CaseWatcher(settings) as watcher:
        for tracked in watcher.publish_watches(watches, timeout_s=args.timeout):
            print(_tracked_line(tracked))
    return 0


def register(commands: Subcommands) -> None:
    track = commands.add_parser(
        "track",
        help="tell the worker about cases created outside offload-bridge (publishes to case-watch)",
        description="Publish one case-watch request per caseId: the worker fetches each case from Offload "
        "at once, then keeps it reconciled. Prints one line per case once the broker acknowledged them all.",
    )
    track.add_argument("case_ids", nargs="*", metavar="CASE_ID", help="caseIds Offload returned")
    track.add_argument(
        "--from-file",
        metavar="PATH",
        help="also read caseIds from PATH, one per line (- = stdin; blank lines and # comments skipped)",
    )
    track.add_argument("--requested-by", metavar="NAME", help="who asks, recorded with each request")
    track.add_argument("--note", metavar="TEXT", help="why, recorded with each request")
    track.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the acknowledgements (default 30)"
    )
    track.set_defaults(handler=cmd_track)
