"""The first hour of a newcomer: ``make run``, then the commands its banner prints, run as printed.

The stack runs as a real child process from the repository's directory; each command of the banner runs
in a shell that knows nothing but what the line ``. <run dir>/env`` of the banner loads, as in another
terminal.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from pydantic import HttpUrl, SecretStr

from offload_bridge.processes import ServiceProcess
from offload_bridge.run import EXAMPLE_CASE, Stack, write_env_file
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.testing import free_port
from offload_bridge.topics import CASE_EVENTS
from tests.ingress_support import read_topic

ROOT = Path(__file__).resolve().parent.parent
ANSWER_TEXT = "Yes, a signed PDF is fine."


def test_the_example_case_is_the_quickstarts_with_a_question() -> None:
    # The quickstart's body, asking the simulator for a question so that `answer` has one to answer; no
    # clientWebhookUrl: the bridge gives it the ingress (OFFLOAD_PUBLIC_WEBHOOK_URL).
    example = json.loads((ROOT / EXAMPLE_CASE).read_text())
    assert example == case_body(scenario="input_then_complete")
    assert "clientWebhookUrl" not in example


def test_the_run_directory_holds_the_worker_tables_unless_told_otherwise(tmp_path: Path) -> None:
    assert Stack(Settings(), tmp_path)._env()["OFFLOAD_WORKER_DATA_DIR"] == str(tmp_path / "worker-data")
    chosen = Stack(Settings(offload_worker_data_dir=Path("/srv/tables")), tmp_path)
    assert chosen._env()["OFFLOAD_WORKER_DATA_DIR"] == "/srv/tables"


def test_the_env_file_is_the_owners_alone_and_reads_back_in_a_shell(tmp_path: Path) -> None:
    env_file = tmp_path / "run dir" / "env"
    awkward = {"OFFLOAD_A": 'it\'s $HOME `x` "q" ; echo no', "OFFLOAD_B": "", "OFFLOAD_C": "plain"}
    env_file.parent.mkdir()
    env_file.write_text("stale")
    env_file.chmod(0o644)
    write_env_file(env_file, awkward)
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    shown = subprocess.run(
        ["bash", "-c", f'. {shlex.quote(str(env_file))} && printf "%s\\0" "$OFFLOAD_A" "$OFFLOAD_B" "$OFFLOAD_C"'],  # noqa: E501
        env={"PATH": os.defpath}, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    assert shown.stdout.split("\0")[:3] == list(awkward.values())


def test_the_commands_get_the_runs_settings_and_the_worker_gets_the_ingress_as_webhook_url(
    tmp_path: Path,
) -> None:
    settings = Settings(
        offload_topic_prefix="fh.",
        # make run declares a development machine, where short tokens pass; the commands get the flag too.
        offload_allow_insecure_defaults=True,
        offload_webhook_tokens=SecretStr("path-token-1,path-token-2"),
        offload_worker_api_tokens=SecretStr("w" * 32),
    )
    stack = Stack(settings, tmp_path, simulator_port=8977)
    webhook_url = "http://127.0.0.1:8080/webhooks/offload/path-token-1"
    assert stack._env()["OFFLOAD_PUBLIC_WEBHOOK_URL"] == webhook_url
    assert stack.commands_env() == {
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OFFLOAD_TOPIC_PREFIX": "fh.",
        "OFFLOAD_BASE_URL": "http://127.0.0.1:8977",
        "OFFLOAD_API_KEY": "dev-key",
        "OFFLOAD_WORKER_URL": "http://127.0.0.1:6066",
        "OFFLOAD_WORKER_API_TOKENS": "w" * 32,
        "OFFLOAD_WEBHOOK_TOKENS": "path-token-1,path-token-2",
        "OFFLOAD_PUBLIC_WEBHOOK_URL": webhook_url,
        "OFFLOAD_ALLOW_INSECURE_DEFAULTS": "True",
    }
    # Those settings loaded again (a second run from the same shell) name this run's simulator.
    reloaded = Settings.model_validate({name.lower(): value for name, value in stack.commands_env().items()})
    assert Stack(reloaded, tmp_path, simulator_port=8977).uses_simulator
    # A real Offload gets no webhook URL it could not reach.
    real = Settings(offload_api_key=SecretStr("k"), offload_base_url=HttpUrl("https://offload.example"))
    assert "OFFLOAD_PUBLIC_WEBHOOK_URL" not in Stack(real, tmp_path)._env()


def _banner(log: Path, run: ServiceProcess, timeout_s: float = 240) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        if "Ctrl-C stops everything." in text:
            return text
        assert run.process is not None and run.process.poll() is None, run.log_tail(30)
        time.sleep(0.5)
    raise AssertionError(f"no banner:\n{run.log_tail(30)}")


def _in_a_new_terminal(load: str, command: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` as typed in a shell that has only what ``load`` (the banner's `. <run dir>/env`) sets."""
    return subprocess.run(
        ["bash", "-c", f"{load} && {command}"], cwd=ROOT, env={"PATH": os.defpath, "HOME": str(Path.home())},
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip


def _explicit_env(settings: Settings) -> dict[str, str]:
    """The variables a newcomer's shell would set for these settings: only those set on purpose."""
    explicit = {name.upper() for name in settings.model_fields_set}
    return {name: value for name, value in settings.as_env().items() if name in explicit}


@pytest.mark.timeout(600)
def test_the_first_hour_runs_as_the_banner_prints_it(topics: Settings, tmp_path: Path) -> None:
    ingress_port, worker_port, simulator_port = free_port(), free_port(), free_port()
    env = {
        **_explicit_env(topics),
        "OFFLOAD_INGRESS_PORT": str(ingress_port),
        "OFFLOAD_INBOX_PORT": str(free_port()),
        "OFFLOAD_WORKER_WEB_PORT": str(worker_port),
        "OFFLOAD_WEBHOOK_TOKENS": f"tok-{uuid.uuid4().hex}",
    }
    run_dir = tmp_path / "run"
    log = tmp_path / "run.log"
    run = ServiceProcess(
        ["run", "--simulator-port", str(simulator_port), "--step-ms", "200", "--run-dir", str(run_dir)],
        env=env, log_path=log, cwd=ROOT,
    )  # fmt: skip
    run.start()
    try:
        banner = _banner(log, run)
        # The suite's broker was running: reused and left alone, never said to be starting.
        assert "kafka      reusing the broker already running on" in banner
        assert "starting" not in banner
        assert "was already running: reused, and left running at exit" in banner
        assert stat.S_IMODE((run_dir / "env").stat().st_mode) == 0o600

        lines = banner[banner.index("offload-bridge is running") :].splitlines()
        typed = [line.strip() for line in lines if line.startswith("  ") and not line.startswith("   ")]
        load = next(line for line in typed if line.startswith(". "))
        commands = [line for line in typed if "offload-bridge" in line.split(" ", 1)[0]]
        subcommands = [shlex.split(command)[1] for command in commands]
        # It leads with the questions and how to answer one.
        assert subcommands[:2] == ["questions", "answer"], commands
        by_name = dict(zip(subcommands, commands, strict=True))
        assert set(by_name) >= {"questions", "answer", "create-case", "tail", "case", "reconcile"}

        created = _in_a_new_terminal(load, by_name["create-case"])
        assert created.returncode == 0, created.stdout + created.stderr
        case_id = re.search(r"caseId=(\S+)", created.stdout)
        assert case_id is not None, created.stdout
        case = case_id.group(1)

        # The question shows up: the simulator sent its webhook to the ingress (OFFLOAD_PUBLIC_WEBHOOK_URL).
        deadline = time.monotonic() + 120
        listed = _in_a_new_terminal(load, by_name["questions"])
        while case not in listed.stdout and time.monotonic() < deadline:
            assert listed.returncode == 0, listed.stdout + listed.stderr
            time.sleep(0.5)
            listed = _in_a_new_terminal(load, by_name["questions"])
        assert case in listed.stdout, listed.stdout + listed.stderr
        sources = {
            record.headers.get("source")
            for record in read_topic(topics, CASE_EVENTS)
            if record.key == case.encode()
        }
        assert b"webhook" in sources, sources

        answered = _in_a_new_terminal(load, by_name["answer"].replace("CASE_ID", shlex.quote(case)))
        assert answered.returncode == 0, answered.stdout + answered.stderr
        assert "accepted" in answered.stdout

        shown = _in_a_new_terminal(load, by_name["case"].replace("CASE_ID", shlex.quote(case)))
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert json.loads(shown.stdout)["caseId"] == case

        reconciled = _in_a_new_terminal(load, by_name["reconcile"])
        assert reconciled.returncode == 0, reconciled.stdout + reconciled.stderr
        assert "0 problem(s)" in reconciled.stdout

        with subprocess.Popen(
            ["bash", "-c", f"{load} && exec {by_name['tail']}"], cwd=ROOT, env={"PATH": os.defpath},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ) as tail:  # fmt: skip
            try:
                assert tail.stderr is not None
                assert tail.stderr.readline().startswith("following"), "tail did not start"
            finally:
                tail.terminate()
    finally:
        assert run.stop(grace_s=60) == 0, run.log_tail(30)
    # The worker's tables were in the run directory, not in ./worker-data of the repository.
    tables = run_dir / "worker-data" / topics.worker_app_id
    assert tables.is_dir()
    assert not (ROOT / "worker-data" / topics.worker_app_id).exists()
