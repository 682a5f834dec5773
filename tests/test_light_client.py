"""The client commands run without the server stack; the server commands say in one line what is missing.

A client install has pydantic, pydantic-settings and kafka-python only. Each command here runs in a fresh
interpreter whose imports of the server stack fail, as they would in that install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.testing import consume, settings_env
from offload_bridge.topics import ANSWERS, CASE_REQUESTS, CASE_WATCH

# What the server install adds (and what it pulls in); none of it may be imported by a client command.
SERVER_STACK = (
    "faust", "mode", "aiokafka", "confluent_kafka", "fastapi", "starlette", "uvicorn", "uvloop", "httptools",
    "httpx", "httpcore", "prometheus_client", "yaml", "rocksdict",
)  # fmt: skip

# Runs the CLI with every import of the server stack failing, and fails itself if one was imported anyway.
_BLOCKED_CLI = f"""
import importlib.abc, sys
BLOCKED = {SERVER_STACK!r}

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocker())
{{imports}}
from offload_bridge.cli import main
code = main(sys.argv[1:])
loaded = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
assert not loaded, loaded
sys.exit(code)
"""

SERVER_COMMANDS = (
    ("worker",),
    ("ingress",),
    ("simulator",),
    ("run",),
    ("reconcile", "--all-open"),
    ("case", "case-1"),
)


def _light(env: dict[str, str], *args: str, imports: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _BLOCKED_CLI.replace("{imports}", imports), *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_help_and_the_client_modules_import_without_the_server_stack() -> None:
    client_modules = "import " + ", ".join(
        f"offload_bridge.{name}"
        for name in (
            "answers", "case_requests", "case_watch", "dlq", "tail", "kafka.admin", "kafka.reading",
            "kafka.partitioning", "kafka.connection", "schemas.dlq",
            "submitting", "answers.questions", "worker_client", "schemas.questions",
        )
    )  # fmt: skip
    result = _light({}, "--help", imports=client_modules)
    assert result.returncode == 0, result.stderr
    for name in (
        "answer", "questions", "create-case", "track", "dlq", "tail", "topics", "kafka", "worker", "ingress"
    ):  # fmt: skip
        assert name in result.stdout
    for command in (
        ["answer"], ["questions"], ["create-case"], ["track"], ["dlq", "redrive"], ["tail"],
        ["topics", "create"],
    ):  # fmt: skip
        helped = _light({}, *command, "--help")
        assert helped.returncode == 0, helped.stderr


def test_client_commands_run_against_the_broker_without_the_server_stack(
    settings: Settings, tmp_path: Path
) -> None:
    env = settings_env(settings)
    created = _light(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    assert _light(env, "kafka", "status").returncode == 0

    answered = _light(env, "answer", "case-1", "req-1", "Yes")
    assert answered.returncode == 0, answered.stderr
    request = tmp_path / "case.json"
    request.write_text(json.dumps({**case_body(), "requestId": "req-light"}))
    published = _light(env, "create-case", str(request))
    assert published.returncode == 0, published.stderr
    tracked = _light(env, "track", "case-2", "--requested-by", "light")
    assert tracked.returncode == 0, tracked.stderr
    for queue in ("answers.dlq", "case-requests.dlq"):
        listed = _light(env, "dlq", "list", "--topic", queue)
        assert listed.returncode == 0, listed.stderr
    redriven = _light(env, "dlq", "redrive", "--all")
    assert redriven.returncode == 0, redriven.stderr

    assert [record.key for record in consume(settings, ANSWERS, 1)] == [b"case-1"]
    assert [record.key for record in consume(settings, CASE_REQUESTS, 1)] == [b"req-light"]
    assert [record.key for record in consume(settings, CASE_WATCH, 1)] == [b"case-2"]


@pytest.mark.parametrize("command", SERVER_COMMANDS, ids=lambda command: command[0])
def test_server_commands_fail_in_one_line_without_the_server_stack(command: tuple[str, ...]) -> None:
    result = _light({}, *command)
    assert result.returncode == 2
    assert result.stderr == (
        f"offload-bridge {command[0]} needs the server install: pip install 'offload-bridge[server]'\n"
    )
