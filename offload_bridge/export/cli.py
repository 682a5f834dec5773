"""CLI: ``offload-bridge export --to DIR [--follow]``: the fact topics as Parquet tables under DIR."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.analytics.files import Target
    from offload_bridge.cli_support import Subcommands
    from offload_bridge.export.exporter import Summary

INTERRUPTED = 130


def _target(location: str | None) -> Target:
    """The target, created if it is a directory that does not exist yet; CommandError when unusable."""
    import pyarrow as pa

    from offload_bridge.analytics.files import Target

    if not location:
        raise CommandError("export needs --to DIR or URL (or OFFLOAD_EXPORT_TO)")
    try:
        target = Target.parse(location)
        target.filesystem.create_dir(target.root, recursive=True)
        target.filesystem.get_file_info(target.root)
    except (ValueError, OSError, pa.ArrowException) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        if reason.startswith("cannot use"):
            raise CommandError(reason) from None
        raise CommandError(f"cannot use {location} as an export target: {reason}") from None
    return target


def summary_lines(summary: Summary, location: str) -> list[str]:
    from offload_bridge.analytics.tables import FACT_TABLES

    lines = []
    for table in FACT_TABLES:
        rows, files = summary.rows.get(table.name, 0), summary.files.get(table.name, 0)
        lines.append(f"{table.name:<14} {rows:>9} rows in {files} files")
    skipped = sum(summary.skipped.values())
    detail = ", ".join(
        f"{table} {reason} {count}" for (table, reason), count in sorted(summary.skipped.items())
    )
    lines.append(f"skipped        {skipped:>9} records" + (f" ({detail})" if detail else ""))
    lines.append(f"duplicates     {sum(summary.duplicates.values()):>9} events already written")
    for name, rows in sorted(summary.snapshots.items()):
        lines.append(f"{name:<14} {rows:>9} rows (snapshot)")
    lines.append(
        f"exported to {location}" if summary.completed else f"interrupted; exported so far to {location}"
    )
    return lines


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge.export.exporter import (
        Exporter,
        TargetFailed,
        install_stop_signals,
        use_system_allocator,
    )
    from offload_bridge.logs import configure_logging

    location = args.to or settings.offload_export_to
    target = _target(location)
    configure_logging(settings)
    use_system_allocator()
    exporter = Exporter(settings, target, follow=args.follow)
    if args.follow and settings.offload_export_metrics_port:
        host, port = settings.offload_export_metrics_host, settings.offload_export_metrics_port
        try:
            exporter.metrics.serve(host, port)
        except OSError as error:
            raise CommandError(f"cannot serve metrics on {host}:{port}: {error}") from None
        print(f"metrics on http://{host}:{port}/metrics", file=sys.stderr, flush=True)
    install_stop_signals(exporter)
    try:
        summary = exporter.run()
    except TargetFailed as error:
        print(f"offload-bridge: {error}; a restart resumes from the last commit", file=sys.stderr)
        return 1
    for line in summary_lines(summary, str(location)):
        print(line, flush=True)
    return 0 if summary.completed else INTERRUPTED


def register(commands: Subcommands) -> None:
    export = commands.add_parser(
        "export",
        help="write the event log and outcomes as Parquet tables (events, answers, case_requests, snapshots)",
        description="Read case-events, answer-outcomes and case-request-outcomes in the consumer group "
        "OFFLOAD_EXPORT_GROUP and write them as Parquet under DIR/<table>/date=YYYY-MM-DD/, exactly once: "
        "files are named after topic, partition and first offset and offsets are committed after the files "
        "are durable. Then the questions and cases snapshots are replaced. Without --follow it stops at the "
        "end offsets found at start.",
    )
    export.add_argument(
        "--to",
        metavar="DIR_OR_URL",
        help="a directory, file:///abs/path, s3://bucket/prefix or gs://bucket/prefix "
        "(default OFFLOAD_EXPORT_TO)",
    )
    export.add_argument(
        "--follow",
        action="store_true",
        help="keep exporting as records arrive (a service: SIGTERM writes what is buffered, then exits)",
    )
    export.set_defaults(handler=cmd_export)
