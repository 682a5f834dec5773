"""What the repository tracks: source, not what a build, a tool or a download left behind.

A file a tool writes (a wheel, a test runner's cache) is ignored by ``.gitignore`` and never committed; a
large binary has no place in the history, where every clone would carry it for ever.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_TRACKED_BYTES = 1024 * 1024

pytestmark = pytest.mark.skipif(
    shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs a git checkout"
)


def _git(*args: str) -> list[str]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), *args, "-z"], capture_output=True, text=True, check=True, timeout=60
    )
    return [name for name in listed.stdout.split("\0") if name]


def test_no_tracked_file_is_larger_than_1_mb() -> None:
    sizes = {}
    for name in _git("ls-files"):
        path = ROOT / name
        if path.is_symlink() or not path.exists():  # a link's size is its target's name; deleted: not ours
            continue
        sizes[name] = os.stat(path).st_size
    assert sizes, "git ls-files listed nothing"
    assert {name: size for name, size in sizes.items() if size > MAX_TRACKED_BYTES} == {}


def test_no_tracked_file_matches_the_ignore_list() -> None:
    # What git would not add today, yet tracks: committed before the ignore rule, or added with --force.
    assert _git("ls-files", "--cached", "--ignored", "--exclude-standard") == []


@pytest.mark.parametrize(
    "written_by_tools",
    [
        "py_spy-0.4.3-py2.py3-none-manylinux1_x86_64.whl",  # a downloaded or built wheel
        "dist/offload_bridge-0.1.0.tar.gz",  # make dist
        ".schemathesis/default/cache/crashes/GET_cases.json",  # schemathesis's crash cache
        ".hypothesis/examples/0a1b/2c3d",  # hypothesis's example database
        ".run/env",  # make run: its logs, worker tables and settings (secrets among them)
        "worker-data/offload.streams/worker-1/x.db",  # a worker run from the checkout
    ],
)
def test_what_tools_write_is_ignored(written_by_tools: str) -> None:
    checked = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "--quiet", written_by_tools], timeout=60
    )
    assert checked.returncode == 0, f"{written_by_tools} is not ignored by .gitignore"
