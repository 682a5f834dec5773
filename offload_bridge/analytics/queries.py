"""The SQL of the analytics tables and reports, as ``.sql`` files shipped inside the package.

Layout (``offload_bridge/analytics/sql/``)::

    questions.sql              derives the ``questions`` snapshot from the facts
    cases.sql                  derives the ``cases`` snapshot from the facts
    reports/<name>.sql         one report each; its first line, ``-- <summary>``, is what the listing shows

Every query reads views named after the tables (``events``, ``answers``, ``case_requests``, ``questions``,
``cases``) plus, for reports that need the current time, ``clock`` (one row, one column ``now``), so a team
can run the same files in its own engine over the same Parquet files. The dialect is DuckDB's.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from offload_bridge.analytics.tables import SNAPSHOT_TABLES, TableSpec

SQL_PACKAGE = "offload_bridge.analytics"
SQL_DIR = "sql"
REPORTS_DIR = "reports"
SUMMARY_MARK = "-- "


@dataclass(frozen=True)
class Report:
    name: str
    summary: str  # one line
    sql: str


def _read(*parts: str) -> str:
    text = resources.files(SQL_PACKAGE).joinpath(SQL_DIR, *parts).read_text(encoding="utf-8")
    # A trailing semicolon would break `CREATE VIEW ... AS <query>`; the files may end with one or not.
    return text.strip().removesuffix(";").rstrip()


def derivation(spec: TableSpec) -> str:
    """The query that derives a snapshot table (``questions``, ``cases``) from the fact tables."""
    if spec not in SNAPSHOT_TABLES:
        raise ValueError(f"{spec.name} is a fact table: it is exported, not derived")
    return _read(f"{spec.name}.sql")


def _summary(name: str, sql: str) -> str:
    first = sql.splitlines()[0] if sql else ""
    if not first.startswith(SUMMARY_MARK):
        raise ValueError(f"report {name}: its first line must be '-- <one-line summary>'")
    return first.removeprefix(SUMMARY_MARK).strip()


def reports() -> dict[str, Report]:
    """Every report, by name (the file name without ``.sql``), in name order."""
    folder = resources.files(SQL_PACKAGE).joinpath(SQL_DIR, REPORTS_DIR)
    found: dict[str, Report] = {}
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if not entry.name.endswith(".sql"):
            continue
        name = entry.name.removesuffix(".sql")
        sql = _read(REPORTS_DIR, entry.name)
        found[name] = Report(name, _summary(name, sql), sql)
    return found
