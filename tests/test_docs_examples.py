"""Every example of the docs runs as printed, read from the pages (``offload_bridge.docs_examples``).

One stack for all pages, started as a reader starts it (``offload-bridge run``: the broker, the topics, the
simulator, the ingress and a worker, here with this module's own topic prefix and free ports), and one
working directory, as the reader's checkout: ``.run/`` (the run directory, with its ``env``), and links to
the repository's ``examples/`` and ``.venv/``. The pages run in the order of the site's navigation, each
block in the order of its page:

- a ``sh`` block runs in ``bash -e -o pipefail`` from that directory, in an environment that holds only
  ``PATH`` (``.venv/bin`` first, as ``. .venv/bin/activate`` sets it), ``HOME`` and ``.run/env``, loaded
  first as the reader's terminal of the getting-started page has it; plus ``OFFLOAD_EXPORT_METRICS_PORT``
  on a free port, so that ``export --follow`` never meets another test's port;
- a ``python`` block runs as a script of its own (``python -c``) with the same environment;
- every block must exit 0 (an ``until`` block: print its text, then end cleanly on Ctrl-C);
- words in capitals are the values a reader copies from what came before: ``CASE_ID`` (the case of the
  page's last scene, else the last ``caseId=`` printed), ``INPUT_REQUEST_ID`` (that case's pending
  question), ``REQUEST_ID`` and ``ANSWER_ID`` (the last printed).
"""

from __future__ import annotations

import os
import re
import select
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from offload_bridge.answers import QuestionReader
from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.docs_examples import Example, page_examples, site_pages
from offload_bridge.processes import ServiceProcess
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body
from offload_bridge.testing import delete_topics_with_prefix, free_port, unique_prefix
from tests.streams_support import WORKER_TOKEN

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
VENV = Path(sys.executable).parent.parent
BLOCK_TIMEOUT_S = 180.0
SCENE_TIMEOUT_S = 120.0
PLACEHOLDERS = ("CASE_ID", "INPUT_REQUEST_ID", "REQUEST_ID", "ANSWER_ID")
# What a block printed that a later one may name: "caseId=…" is CASE_ID, and so on.
PRINTED = {
    "CASE_ID": "caseId",
    "INPUT_REQUEST_ID": "inputRequestId",
    "REQUEST_ID": "requestId",
    "ANSWER_ID": "answerId",
}


@dataclass
class DocsStack:
    """The running stack, the reader's directory and environment, and what the blocks printed so far."""

    work: Path
    env: dict[str, str]  # what a block sees
    settings: Settings  # the same, for the runner's own clients
    run: ServiceProcess
    values: dict[str, str] = field(default_factory=dict)
    scened: set[str] = field(default_factory=set)  # cases a scene already used

    def failure(self, example: Example, what: str, output: str) -> str:
        return (
            f"{example.where}: {what}\n--- the block ---\n{example.code}--- its output ---\n{output[-4000:]}"
            f"\n--- the stack's log ---\n{self.run.log_tail(15)}"
        )


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        words = shlex.split(line, comments=True)
        if words and words[0] == "export":
            for assignment in words[1:]:
                name, _, value = assignment.partition("=")
                values[name] = value
    return values


def _wait_for_banner(log: Path, run: ServiceProcess, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.exists() and "Ctrl-C stops everything." in log.read_text(errors="replace"):
            return
        assert run.process is not None and run.process.poll() is None, run.log_tail(30)
        time.sleep(0.5)
    raise AssertionError(f"the stack did not start:\n{run.log_tail(30)}")


@pytest.fixture(scope="module")
def stack(kafka_broker: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsStack]:
    work = tmp_path_factory.mktemp("reader")
    (work / "examples").symlink_to(ROOT / "examples")
    (work / ".venv").symlink_to(VENV)
    prefix = unique_prefix("docs")
    run_env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_broker,
        "OFFLOAD_TOPIC_PREFIX": prefix,
        "OFFLOAD_INGRESS_PORT": str(free_port()),
        "OFFLOAD_INBOX_PORT": str(free_port()),
        "OFFLOAD_WORKER_WEB_PORT": str(free_port()),
        "OFFLOAD_WEBHOOK_TOKENS": f"tok-{uuid.uuid4().hex}",
        "OFFLOAD_WORKER_API_TOKENS": WORKER_TOKEN,
    }
    log = work / "run.log"
    run = ServiceProcess(
        ["run", "--simulator-port", str(free_port()), "--step-ms", "200", "--run-dir", str(work / ".run")],
        env=run_env, log_path=log, cwd=work,
    )  # fmt: skip
    run.start()
    try:
        _wait_for_banner(log, run)
        loaded = _read_env_file(work / ".run" / "env")
        env = {
            "PATH": f"{VENV / 'bin'}:{os.defpath}",
            "HOME": str(Path.home()),
            "OFFLOAD_EXPORT_METRICS_PORT": str(free_port()),
            **loaded,
        }
        settings = Settings.model_validate({name.lower(): value for name, value in loaded.items()})
        yield DocsStack(work=work, env=env, settings=settings, run=run)
    finally:
        assert run.stop(grace_s=60) == 0, run.log_tail(30)
        delete_topics_with_prefix(Settings(kafka_bootstrap_servers=kafka_broker, offload_topic_prefix=prefix))


def _scene_a_question_waits(stack: DocsStack, printed_cases: list[str]) -> None:
    """The case the page created last, else a new one; then wait until its question is pending."""
    fresh = [case for case in printed_cases if case not in stack.scened]
    if fresh:
        case_id = fresh[-1]
    else:
        with CaseRequestSubmitter(stack.settings) as submitter:
            request_id = submitter.publish(
                case_body(scenario="input_then_complete"), request_id=f"docs-{uuid.uuid4().hex}"
            )
            outcome = submitter.wait_for_outcome(request_id, timeout_s=SCENE_TIMEOUT_S)
        assert outcome.caseId is not None, outcome
        case_id = outcome.caseId
    reader = QuestionReader(stack.settings)
    deadline = time.monotonic() + SCENE_TIMEOUT_S
    while True:
        waiting = {question.caseId: question for question in reader.listing().questions}
        if case_id in waiting:
            break
        assert time.monotonic() < deadline, (
            f"no question of case {case_id} came within {SCENE_TIMEOUT_S:.0f}s"
        )
        time.sleep(0.3)
    stack.scened.add(case_id)
    stack.values["CASE_ID"] = case_id
    stack.values["INPUT_REQUEST_ID"] = waiting[case_id].inputRequestId


def _fill_in(stack: DocsStack, example: Example) -> str:
    code = example.code
    if example.language != "sh":
        return code
    for name in PLACEHOLDERS:
        if re.search(rf"\b{name}\b", code):
            assert name in stack.values, f"{example.where} names {name}, which nothing before it printed"
            code = re.sub(rf"\b{name}\b", shlex.quote(stack.values[name]), code)
    return code


def _command(stack: DocsStack, example: Example, code: str) -> list[str]:
    if example.language == "python":
        return [sys.executable, "-c", code]
    return ["bash", "-e", "-o", "pipefail", "-c", f". .run/env\n{code}"]


def _run_until(stack: DocsStack, example: Example, command: list[str]) -> str:
    """Run a block that goes on until stopped: wait for its text, then Ctrl-C (SIGINT to its group)."""
    assert example.until is not None
    with subprocess.Popen(
        command, cwd=stack.work, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True,
    ) as process:  # fmt: skip
        assert process.stdout is not None
        output = b""
        deadline = time.monotonic() + BLOCK_TIMEOUT_S
        try:
            while example.until.encode() not in output:
                left = deadline - time.monotonic()
                assert left > 0, stack.failure(example, f"never printed {example.until!r}", output.decode())
                ready, _, _ = select.select([process.stdout], [], [], min(left, 1.0))
                if ready:
                    chunk = os.read(process.stdout.fileno(), 65536)
                    assert chunk or process.poll() is None, stack.failure(
                        example, f"ended before printing {example.until!r}", output.decode()
                    )
                    output += chunk
            os.killpg(process.pid, signal.SIGINT)
            rest, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
        text = (output + rest).decode(errors="replace")
        assert process.returncode in (0, 130), stack.failure(
            example, f"exited {process.returncode} on Ctrl-C", text
        )
        return text


def run_example(stack: DocsStack, example: Example, printed_cases: list[str]) -> None:
    if example.scene is not None:
        _scene_a_question_waits(stack, printed_cases)
    code = _fill_in(stack, example)
    command = _command(stack, example, code)
    if example.until is not None:
        output = _run_until(stack, example, command)
    else:
        done = subprocess.run(
            command, cwd=stack.work, env=stack.env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        output = done.stdout + done.stderr
        assert done.returncode == 0, stack.failure(example, f"exited {done.returncode}", output)
    for name, word in PRINTED.items():
        found = re.findall(rf"\b{word}=([^\s,;]+)", output)
        if found:
            stack.values[name] = found[-1]
            if name == "CASE_ID":
                printed_cases.extend(found)


PAGES = [page for page in site_pages(DOCS) if any(example.runs for example in page_examples(DOCS, page))]


@pytest.mark.timeout(900)
@pytest.mark.parametrize("page", PAGES)
def test_the_examples_of_the_page_run_as_printed(stack: DocsStack, page: str) -> None:
    printed_cases: list[str] = []
    ran = 0
    for example in page_examples(DOCS, page):
        if example.runs:
            run_example(stack, example, printed_cases)
            ran += 1
    assert ran > 0
