"""Run schemathesis (an independent OpenAPI checker) against a running server, the same way for every
server we document: all checks, a fixed seed and a bounded number of examples, so a run is repeatable and
takes well under a minute."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES_PER_OPERATION = 25
SEED = 20240611
DEADLINE_S = 150


def run_schemathesis(
    schema_url: str, phases: str, request_timeout_s: int, report_dir: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    """``schemathesis run`` on ``schema_url`` with the given phases; ``extra`` arguments (headers) added."""
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "run", schema_url, *extra,
        "--checks", "all", "--mode", "all", "--phases", phases,
        "--max-examples", str(EXAMPLES_PER_OPERATION), "--seed", str(SEED), "--workers", "1", "--no-shrink",
        "--request-timeout", str(request_timeout_s), "--report-dir", str(report_dir),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=DEADLINE_S, cwd=report_dir)
