"""`offload-bridge run` brings the stack up and down; `offload-bridge tail` follows topics live."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from offload_bridge.processes import ServiceProcess
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.tail import TailRecord, human_line
from offload_bridge.testing import free_port, produce
from offload_bridge.topics import ANSWER_OUTCOMES, CASE_EVENTS
from offload_bridge.worker_client import bearer_headers
from tests.streams_support import SEED_INPUT_NEEDED

SEED_CASE = "4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f"


def _processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                environ = (entry / "environ").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if any(needle in cmdline or needle in environ for needle in needles):
                found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def _wait_for_line(log: Path, text: str, process: ServiceProcess, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text(errors="replace"):
            return
        assert process.process is not None and process.process.poll() is None, process.log_tail(30)
        time.sleep(0.5)
    raise AssertionError(f"{text!r} never printed:\n{process.log_tail(30)}")


def test_run_starts_the_stack_and_ctrl_c_stops_every_process(topics: Settings, tmp_path: Path) -> None:
    simulator_port, ingress_port, worker_port = free_port(), free_port(), free_port()
    inbox_port = free_port()
    token = f"tok-{uuid.uuid4().hex}"
    env = {
        **topics.as_env(),
        "OFFLOAD_INGRESS_PORT": str(ingress_port),
        "OFFLOAD_INBOX_PORT": str(inbox_port),
        "OFFLOAD_WORKER_WEB_PORT": str(worker_port),
        "OFFLOAD_WEBHOOK_TOKENS": token,
        "OFFLOAD_LOG_FORMAT": "json",
    }
    env.pop("OFFLOAD_API_KEY", None)
    env.pop("OFFLOAD_WORKER_DATA_DIR")  # as_env() names the default: the run directory holds the tables
    log = tmp_path / "run.log"
    run = ServiceProcess(
        [
            "run",
            "--simulator-port",
            str(simulator_port),
            "--step-ms",
            "100",
            "--run-dir",
            str(tmp_path / "run"),
        ],
        env=env,
        log_path=log,
    )
    run.start()
    try:
        _wait_for_line(log, "offload-bridge is running", run)
        printed = log.read_text()
        assert f"http://127.0.0.1:{ingress_port}/webhooks/offload/<token" in printed
        assert "offload-bridge answer CASE_ID 'Yes, a signed PDF is fine.' --wait" in printed
        # The worker takes the suite's token (the settings carry it): the banner says how, never what.
        assert "Authorization: Bearer <first of OFFLOAD_WORKER_API_TOKENS>" in printed
        assert topics.worker_client_token and topics.worker_client_token not in printed
        auth = bearer_headers(topics.worker_client_token)

        body = case_body(f"http://127.0.0.1:{ingress_port}/webhooks/offload/{token}", "complete")
        created = httpx.post(
            f"http://127.0.0.1:{simulator_port}/cases",
            json=body,
            headers={"x-api-key": "dev-key"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        case_id = created.json()["data"]["caseId"]
        deadline = time.monotonic() + 60
        state: dict[str, object] = {}
        while time.monotonic() < deadline and state.get("status") != "COMPLETED":
            response = httpx.get(f"http://127.0.0.1:{worker_port}/cases/{case_id}", headers=auth, timeout=10)
            state = response.json().get("data") or {} if response.status_code == 200 else {}
            time.sleep(0.3)
        assert state.get("status") == "COMPLETED", "a simulator webhook went through ingress and worker"

        # A seed webhook curled to the printed URL shows up in `tail` and in `case`.
        cli_env = {**os.environ, **env}
        tail_command = [sys.executable, "-m", "offload_bridge.cli", "tail", "--json", "--case", SEED_CASE]
        with subprocess.Popen(
            tail_command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as tail:
            try:
                assert tail.stderr is not None and tail.stdout is not None
                assert tail.stderr.readline().startswith("following")
                posted = httpx.post(
                    f"http://127.0.0.1:{ingress_port}/webhooks/offload/{token}",
                    content=SEED_INPUT_NEEDED,
                    headers={"content-type": "application/json"},
                    timeout=30,
                )
                assert posted.status_code == 200, posted.text
                followed = json.loads(tail.stdout.readline())
            finally:
                tail.terminate()
        assert followed["value"]["event_id"] == json.loads(SEED_INPUT_NEEDED)["event_id"]
        shown: dict[str, object] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and shown.get("status") != "INPUT_NEEDED":
            case = subprocess.run(
                [sys.executable, "-m", "offload_bridge.cli", "case", SEED_CASE],
                env=cli_env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            shown = json.loads(case.stdout) if case.returncode == 0 else {}
        assert shown.get("status") == "INPUT_NEEDED"
        # The inbox runs too (behind a proxy here: no development identity), and lists the seed's question.
        assert f"inbox     http://127.0.0.1:{inbox_port}/ (behind your identity-aware proxy" in printed
        inbox = f"http://127.0.0.1:{inbox_port}/"
        assert httpx.get(inbox, timeout=10).status_code == 401
        listed = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and SEED_CASE not in listed:
            listed = httpx.get(inbox, headers={"X-Forwarded-Email": "ops@example.com"}, timeout=10).text
        assert SEED_CASE in listed
    finally:
        # Ctrl-C pressed twice: the second must not cut the clean-up short.
        run.signal(signal.SIGINT)
        time.sleep(0.5)
        run.signal(signal.SIGINT)
        exit_code = run.stop(grace_s=60)
    assert exit_code == 0, run.log_tail(30)
    assert "stopped" in log.read_text()
    leftovers = _processes_mentioning(
        f"--port {simulator_port}",
        f"OFFLOAD_WORKER_WEB_PORT={worker_port}",
        f"OFFLOAD_INBOX_PORT={inbox_port}",
    )
    assert leftovers == []
    # Secrets never reach a log: the path token anywhere, the Offload API key in our services' logs.
    logs = {path.name: path.read_text(errors="replace") for path in (tmp_path / "run" / "logs").glob("*.log")}
    assert set(logs) == {"simulator.log", "ingress.log", "worker.log", "inbox.log"}
    assert all(token not in text for text in [*logs.values(), log.read_text()])
    assert "dev-key" not in logs["ingress.log"] + logs["worker.log"]
    assert all(line.startswith("{") for line in logs["worker.log"].splitlines() if line.strip())


def test_tail_prints_new_records_as_json_and_filters_by_case(topics: Settings) -> None:
    command = [
        sys.executable,
        "-m",
        "offload_bridge.cli",
        "tail",
        "--json",
        "--case",
        "4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f",
    ]
    env = {**os.environ, **topics.as_env()}
    produce(topics, CASE_EVENTS, b'{"old": true}', key=b"4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f")
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as tail:
        try:
            assert tail.stderr is not None
            # Positioned at the end: the record above is history, what follows is news.
            assert tail.stderr.readline().startswith("following case-events")
            produce(topics, CASE_EVENTS, b'{"other": true}', key=b"another-case")
            produce(
                topics,
                CASE_EVENTS,
                SEED_INPUT_NEEDED,
                key=b"4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f",
                headers={"source": b"webhook"},
            )
            assert tail.stdout is not None
            line = tail.stdout.readline()
        finally:
            tail.terminate()
    record = json.loads(line)
    assert record["topic"] == "case-events"
    assert record["key"] == "4fc5904d-0e44-4ed3-aa57-c4a47ad0ae4f"
    assert record["headers"] == {"source": "webhook"}
    assert record["value"]["event_type"] == "case.input_needed"


def test_tail_lines_are_readable() -> None:
    event = TailRecord(
        "case-events", 0, 7, 1774131900300, "case_123", {"source": "reconciler"},
        json.loads(SEED_INPUT_NEEDED),
    )  # fmt: skip
    line = human_line(event, colour=False)
    assert "case-events" in line and "case_123" in line
    assert "case.input_needed INPUT_NEEDED asks 'The vendor asked" in line
    assert line.endswith("[reconciler]")
    outcome = TailRecord(
        ANSWER_OUTCOMES.name, 1, 2, 1774131900300, "case_123", {},
        {"answerId": "ans_1", "outcome": "accepted", "httpStatus": 202, "caseId": "case_123"},
    )  # fmt: skip
    assert "accepted ans_1 httpStatus=202" in human_line(outcome, colour=False)
    assert "\033[" in human_line(outcome, colour=True)


def test_tail_refuses_an_unknown_topic(topics: Settings) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "tail", "--topic", "nope"],
        env={**os.environ, **topics.as_env()}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "unknown topic 'nope'" in result.stderr


def test_demo_shows_every_scenario_through_to_its_end(topics: Settings, tmp_path: Path) -> None:
    env = {
        **topics.as_env(),
        "OFFLOAD_INGRESS_PORT": str(free_port()),
        "OFFLOAD_INBOX_PORT": str(free_port()),
        "OFFLOAD_WORKER_WEB_PORT": str(free_port()),
    }
    env.pop("OFFLOAD_API_KEY", None)
    env.pop("OFFLOAD_WORKER_DATA_DIR")  # as_env() names the default: the run directory holds the tables
    log = tmp_path / "demo.log"
    demo = ServiceProcess(
        [
            "run",
            "--demo",
            "--simulator-port",
            str(free_port()),
            "--step-ms",
            "100",
            "--run-dir",
            str(tmp_path),
        ],
        env=env,
        log_path=log,
    )
    demo.start()
    try:
        _wait_for_line(log, "demo       all 5 cases finished", demo)
    finally:
        assert demo.stop(grace_s=60) == 0
    printed = log.read_text()
    assert printed.count("demo       created case") == 5
    assert printed.count("demo       answered") == 3, "one question, then two for input_twice_then_complete"
    assert printed.count("answer-outcomes") == 3 and printed.count(" accepted ans_") == 3
    assert "COMPLETED result goal_achieved" in printed
    assert "FAILED result max_retries" in printed and "FAILED result BOUNCED" in printed
