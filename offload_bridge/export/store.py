"""The fact files of one partition in the target: list them, clear leftovers, read their event ids, write a
flush.

Every fact file is ``<table>/date=YYYY-MM-DD/<topic>+<partition>+<first offset>.parquet`` (see
``offload_bridge.analytics.tables``), and only the exporter that owns the partition in the consumer group
writes files of that partition. That makes the group's committed offset the dividing line in the target:

- a file whose first offset is below the committed offset belongs to a flush that was committed: it is
  part of the table for good;
- a file whose first offset is at or above it belongs to a flush that was written but never committed (the
  process died, or its commit failed, between the write and the commit). Those records will be read again
  and written again, perhaps cut into different files: the leftover must go before the partition is read,
  or its rows would be there twice.

A name with ``files.TEMPORARY_MARK`` is a write that never finished (a crash between the temporary file and
its rename): it goes too. Readers skip such names in the meantime.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

from offload_bridge.analytics.files import TEMPORARY_MARK, Target
from offload_bridge.analytics.tables import DATE_PARTITION, EVENTS, TableSpec
from offload_bridge.export.buffer import Flush

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FactFile:
    path: str
    first_offset: int | None  # None: a temporary file, never finished


def partition_files(target: Target, table: TableSpec, topic: str, partition: int) -> list[FactFile]:
    """Every file of the table that holds records of ``topic`` partition ``partition``, in offset order."""
    selector = fs.FileSelector(target.path(table.name), recursive=True, allow_not_found=True)
    prefix = f"{topic}+{partition}+"
    found: list[FactFile] = []
    for info in target.filesystem.get_file_info(selector):
        if info.type != fs.FileType.File or not info.base_name.startswith(prefix):
            continue
        name = info.base_name
        if TEMPORARY_MARK in name:
            found.append(FactFile(info.path, None))
            continue
        digits = name[len(prefix) :].removesuffix(".parquet")
        if digits.isdigit() and name.endswith(".parquet"):
            found.append(FactFile(info.path, int(digits)))
    return sorted(found, key=lambda file: (file.first_offset is None, file.first_offset or 0, file.path))


def remove(target: Target, paths: Iterable[str]) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            target.filesystem.delete_file(path)


def clear_uncommitted(
    target: Target, table: TableSpec, topic: str, partition: int, committed: int
) -> tuple[list[FactFile], list[str]]:
    """Remove the partition's files from flushes that were never committed, and unfinished writes.

    Returns the files kept (committed ones) and the paths removed.
    """
    kept: list[FactFile] = []
    doomed: list[str] = []
    for file in partition_files(target, table, topic, partition):
        if file.first_offset is None or file.first_offset >= committed:
            doomed.append(file.path)
        else:
            kept.append(file)
    remove(target, doomed)
    return kept, doomed


def event_id_hashes(target: Target, files: Iterable[FactFile]) -> set[int]:
    """``hash(event_id)`` of every row of the files (only that column is read)."""
    seen: set[int] = set()
    for file in files:
        column = pq.read_table(file.path, columns=["event_id"], filesystem=target.filesystem)["event_id"]
        seen.update(map(hash, column.to_pylist()))
    return seen


def flush_path(target: Target, flush: Flush, date: str) -> str:
    name = flush.table.fact_file_name(flush.topic, flush.partition, flush.first)
    return target.path(flush.table.name, f"{DATE_PARTITION}={date}", name)


def write_flush(target: Target, flush: Flush) -> list[str]:
    """Write one file per ``date=`` of the flush, each atomically; returns their paths.

    If one fails, those already written are removed before the error goes on: the flush is then not in the
    target at all, as if it had never been tried.
    """
    written: list[str] = []
    try:
        for date, tables in sorted(flush.tables_by_date.items()):
            path = flush_path(target, flush, date)
            table = pa.concat_tables(tables)
            target.write_parquet(table, path, dictionary=dictionary_columns(table.schema))
            written.append(path)
    except BaseException:
        remove(target, written)
        raise
    return written


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns worth a dictionary in a fact file: strings that repeat from row to row (case ids, types,
    statuses, sources...). Not ``body``, each webhook's own text, nor the numbers and times, which zstd
    packs better plain (bench/export.py: 17.6 rather than 20.4 MiB per million events)."""
    return [field.name for field in schema if pa.types.is_string(field.type) and field.name != "body"]


def is_events(table: TableSpec) -> bool:
    return table.name == EVENTS.name
