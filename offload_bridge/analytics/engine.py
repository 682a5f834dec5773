"""DuckDB (embedded) over the analytics tables: one view per table, wherever the files live.

The fact files are listed through the target's pyarrow filesystem (a local directory or any URL pyarrow
takes) and read as one ``pyarrow.dataset`` per table, which DuckDB scans lazily (only the columns and rows
a query needs). DuckDB's own readers are not used because its remote filesystems are extensions it would
have to download; one code path serves every target. Files being written (``files.TEMPORARY_MARK``) are
skipped; a table with no file yet is an empty table of its schema.

Each fact file is read with the table's schema from its row model, not the schema stored in the file, so
a file written before a nullable column was added reads that column as null. The Hive partition column
(``date=YYYY-MM-DD`` in the path) is not a view column: it is the UTC day of the table's time column,
which the view already has.

``questions`` and ``cases`` are views of ``sql/questions.sql`` and ``sql/cases.sql`` over the facts, so
they are always consistent with the facts read, whether or not a snapshot file was written since; the
snapshot files are what other engines read (``derive.write_snapshots``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
from pyarrow import fs

from offload_bridge.analytics.arrow import table_schema
from offload_bridge.analytics.files import TEMPORARY_MARK, Target
from offload_bridge.analytics.queries import derivation
from offload_bridge.analytics.tables import ALL_TABLES, FACT_TABLES, SNAPSHOT_TABLES, TableSpec

PARQUET_SUFFIX = ".parquet"
CLOCK_VIEW = "clock"


def fact_files(target: Target, spec: TableSpec) -> list[str]:
    """The complete Parquet files of a fact table, in path order (date, then topic, partition, offset)."""
    selector = fs.FileSelector(target.path(spec.name), recursive=True, allow_not_found=True)
    files = []
    for info in target.filesystem.get_file_info(selector):
        if info.type != fs.FileType.File:
            continue
        if info.base_name.endswith(PARQUET_SUFFIX) and TEMPORARY_MARK not in info.base_name:
            files.append(info.path)
    return sorted(files)


def fact_table(target: Target, spec: TableSpec) -> ds.Dataset | pa.Table:
    """A fact table as DuckDB can scan it: a dataset of its files, or an empty table of its schema."""
    schema = table_schema(spec)
    files = fact_files(target, spec)
    if not files:
        return schema.empty_table()
    return ds.dataset(files, schema=schema, format="parquet", filesystem=target.filesystem)


def tables_present(target: Target) -> list[str]:
    """The tables that have a directory under the target (an export has run there)."""
    infos = target.filesystem.get_file_info([target.path(spec.name) for spec in ALL_TABLES])
    found = zip(ALL_TABLES, infos, strict=True)
    return [spec.name for spec, info in found if info.type == fs.FileType.Directory]


def _timestamp_literal(moment: datetime) -> str:
    return f"TIMESTAMPTZ '{moment.astimezone(UTC).isoformat(timespec='milliseconds')}'"


def open_tables(target: Target, now: datetime | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with a view per table and ``clock`` (``now``: the given time, else the clock).

    The fact views are the files found now: files that appear later are not seen by this connection,
    so every query on it, and both snapshots derived from it, read the same facts.
    """
    connection = duckdb.connect(":memory:")
    # Timestamps print in UTC and weeks start on Monday 00:00 UTC, whatever the machine's zone.
    connection.execute("SET TimeZone = 'UTC'")
    for spec in FACT_TABLES:
        connection.register(spec.name, fact_table(target, spec))
    for spec in SNAPSHOT_TABLES:
        connection.execute(f"CREATE VIEW {spec.name} AS {derivation(spec)}")
    clock = _timestamp_literal(now) if now is not None else "current_timestamp"
    connection.execute(f"CREATE VIEW {CLOCK_VIEW} AS SELECT {clock} AS now")
    return connection


def derive(connection: duckdb.DuckDBPyConnection, spec: TableSpec) -> pa.Table:
    """A snapshot table's rows with exactly its arrow schema (DuckDB gives microsecond timestamps)."""
    schema = table_schema(spec)
    result = connection.sql(f"SELECT * FROM {spec.name}").to_arrow_table()
    if result.column_names != schema.names:
        given = result.column_names
        raise RuntimeError(f"{spec.name}.sql gives columns {given}, the table has {schema.names}")
    table: pa.Table = result.cast(schema)
    for field in schema:
        if not field.nullable and table.column(field.name).null_count:
            raise RuntimeError(f"{spec.name}.sql gives nulls in {field.name}, which may not be null")
    return table
