"""CLI: ``offload-bridge analytics DIR [REPORT | --sql QUERY] [--format text|csv|json] [--now TIME]``.

Opens the tables ``offload-bridge export`` wrote under DIR (a directory or a URL pyarrow takes) in an
embedded DuckDB and prints a report, the result of a query, or (with neither) the list of reports.
``questions`` and ``cases`` are derived from the facts by the same SQL the snapshot files come from.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    import duckdb

    from offload_bridge.analytics.files import Target
    from offload_bridge.analytics.queries import Report
    from offload_bridge.cli_support import Subcommands

ANALYTICS_MODULES = ("duckdb", "pyarrow")
NEEDS_INSTALL = "analytics needs DuckDB and pyarrow: pip install 'offload-bridge[analytics]'"


def one_line(error: Exception) -> str:
    """DuckDB's message on one line: its first paragraph (the rest points a caret at the query text)."""
    paragraph = str(error).strip().split("\n\n", 1)[0]
    return " ".join(part.strip() for part in paragraph.splitlines() if part.strip())


def parse_now(text: str) -> datetime:
    """An ISO 8601 time; one without a zone is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _target(location: str) -> Target:
    from offload_bridge.analytics.engine import tables_present
    from offload_bridge.analytics.files import Target

    try:
        target = Target.parse(location)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if target.is_local and not os.path.isdir(target.root):
        raise CommandError(f"{location}: no such directory")
    try:
        present = tables_present(target)
    except OSError as error:
        raise CommandError(f"cannot read {location}: {error}") from None
    if not present:
        raise CommandError(
            f"{location} holds no analytics table: write them with `offload-bridge export --to {location}`"
        )
    return target


def _pick_report(args: argparse.Namespace, known: dict[str, Report]) -> Report | None:
    if args.report is None:
        return None
    if args.sql is not None:
        raise CommandError("give a REPORT or --sql QUERY, not both")
    report = known.get(args.report)
    if report is None:
        raise CommandError(f"no report {args.report!r}; the reports: {', '.join(known)}")
    return report


def _run(connection: duckdb.DuckDBPyConnection, query: str) -> tuple[list[str], list[tuple[object, ...]]]:
    import duckdb

    try:
        relation = connection.sql(query)
        if relation is None:  # a statement with no result (SET, CREATE ...)
            return [], []
        return list(relation.columns), relation.fetchall()
    except duckdb.Error as error:
        raise CommandError(one_line(error)) from None
    except OSError as error:  # a fact file unreadable or gone from the target
        raise CommandError(f"cannot read the tables: {error}") from None


def _list_reports(known: dict[str, Report]) -> None:
    width = max(len(name) for name in known)
    for report in known.values():
        print(f"{report.name.ljust(width)}  {report.summary}")
    print("\nrun one: offload-bridge analytics DIR REPORT   (or any query: --sql 'SELECT ...')")


def cmd_analytics(args: argparse.Namespace, settings: Settings) -> int:
    try:
        from offload_bridge.analytics.engine import open_tables
        from offload_bridge.analytics.queries import reports
        from offload_bridge.analytics.render import render
    except ModuleNotFoundError as error:
        if error.name is not None and error.name.split(".")[0] in ANALYTICS_MODULES:
            raise CommandError(NEEDS_INSTALL) from None
        raise

    target = _target(args.dir)
    known = reports()
    report = _pick_report(args, known)
    query = report.sql if report is not None else args.sql
    if query is None:
        _list_reports(known)
        return 0
    connection = open_tables(target, now=args.now)
    try:
        columns, rows = _run(connection, query)
    finally:
        connection.close()
    if columns:
        print(render(columns, rows, args.format))
    sys.stdout.flush()
    return 0


def register(commands: Subcommands) -> None:
    analytics = commands.add_parser(
        "analytics",
        help="reports and SQL over the exported analytics tables (embedded DuckDB)",
        description="Open the tables `offload-bridge export` wrote under DIR as DuckDB views (events, "
        "answers, case_requests, questions, cases) and print a report or the result of a query. "
        "Without REPORT or --sql, list the reports.",
    )
    analytics.add_argument("dir", metavar="DIR", help="the export target: a directory or a URL (s3://...)")
    analytics.add_argument("report", nargs="?", metavar="REPORT", help="a report's name (see the list)")
    analytics.add_argument("--sql", metavar="QUERY", help="run QUERY over the views instead of a report")
    analytics.add_argument(
        "--format", choices=("text", "csv", "json"), default="text", help="output format (default text)"
    )
    analytics.add_argument(
        "--now",
        type=parse_now,
        metavar="TIME",
        help="the time ages are measured to (ISO 8601, UTC unless a zone is given; default: now)",
    )
    analytics.set_defaults(handler=cmd_analytics)
