"""The snapshot tables ``questions`` and ``cases``, derived from the fact files and written whole.

``offload-bridge export`` calls ``write_snapshots`` at the end of every run and, with ``--follow``, at least
every ``OFFLOAD_EXPORT_ROLL_S``. Both snapshots come from one reading of the facts (the same files), so
they agree with each other; each replaces its file atomically (``Target.write_parquet``), so a reader sees
the previous snapshot or the new one, never a mix.
"""

from __future__ import annotations

from offload_bridge.analytics.engine import derive, open_tables
from offload_bridge.analytics.files import Target
from offload_bridge.analytics.tables import SNAPSHOT_TABLES


def write_snapshots(target: Target) -> dict[str, int]:
    """Derive ``questions`` and ``cases`` from the facts under ``target`` and replace their files.

    Returns the rows written per table name. Tables with no fact file yet derive empty snapshots.
    """
    counts: dict[str, int] = {}
    connection = open_tables(target)
    try:
        for spec in SNAPSHOT_TABLES:
            table = derive(connection, spec)
            target.write_parquet(table, target.path(spec.name, spec.snapshot_file_name))
            counts[spec.name] = table.num_rows
    finally:
        connection.close()
    return counts
