"""The analytics SQL ships in the wheel, and without the analytics extra the command says so in one line."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SQL_DIR = ROOT / "offload_bridge" / "analytics" / "sql"

# Runs the CLI in a fresh interpreter in which DuckDB cannot be imported, as in an install without the extra.
_WITHOUT_DUCKDB = """
import importlib.abc, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "duckdb":
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
from offload_bridge.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_every_sql_file_is_in_the_wheel(tmp_path: Path) -> None:
    uv = Path(sys.executable).with_name("uv")
    built = subprocess.run(
        [str(uv), "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("*.whl")
    shipped = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".sql")}
    expected = {path.relative_to(ROOT).as_posix() for path in SQL_DIR.rglob("*.sql")}
    assert len(expected) >= 7  # questions, cases and the five reports
    assert shipped == expected


@pytest.mark.parametrize("args", [("DIR",), ("DIR", "waiting")], ids=["list", "report"])
def test_without_duckdb_the_command_fails_in_one_line(tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "events").mkdir()
    argv = [str(tmp_path) if arg == "DIR" else arg for arg in args]
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_DUCKDB, "analytics", *argv],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == (
        "offload-bridge: analytics needs DuckDB and pyarrow: pip install 'offload-bridge[analytics]'\n"
    )
