"""The browser inbox as a real process, and a small client that speaks to it as its proxy would.

``Inbox`` runs ``offload-bridge inbox``; ``InboxClient`` sends ``X-Forwarded-Email`` from 127.0.0.1 (a
trusted proxy by default), reads the answer form's hidden fields and posts it. ``stack`` starts the
simulator, the ingress, a worker and an inbox wired together.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
from pydantic import HttpUrl

from offload_bridge.processes import ServiceProcess
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, simulator_process
from offload_bridge.testing import free_port, settings_env
from tests.ingress_support import running_ingress
from tests.streams_support import Worker, running_workers
from tests.test_case_requests_worker import with_offload

INBOX_READY_TIMEOUT_S = 90.0


class Inbox:
    """``offload-bridge inbox`` as a child process."""

    def __init__(
        self, settings: Settings, workdir: Path, env: dict[str, str] | None = None, name: str = "inbox"
    ):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**settings_env(settings), **(env or {})}
        self.service = ServiceProcess(
            ["inbox", "--port", str(self.port)], env=self.env, log_path=workdir / f"{name}.log", cwd=workdir
        )

    def start(self, wait: bool = True) -> Inbox:
        self.service.start()
        if wait:
            self.service.wait_http(f"{self.url}/ready", timeout_s=INBOX_READY_TIMEOUT_S)
        return self

    def client(self, email: str) -> InboxClient:
        return InboxClient(self.url, email)


@contextlib.contextmanager
def running_inbox(settings: Settings, workdir: Path, env: dict[str, str] | None = None) -> Iterator[Inbox]:
    inbox = Inbox(settings, workdir, env)
    try:
        yield inbox.start()
    finally:
        inbox.service.stop()


class _Forms(HTMLParser):
    """The fields of the first ``form.answer`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.fields: dict[str, str] = {}
        self.action: str | None = None
        self._in_form = False
        self._textarea: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and "answer" in attributes.get("class", "").split() and self.action is None:
            self._in_form = True
            self.action = attributes.get("action")
        elif self._in_form and tag == "input" and "name" in attributes:
            self.fields[attributes["name"]] = attributes.get("value", "")
        elif self._in_form and tag == "textarea":
            self._textarea = attributes.get("name")
            self.fields[self._textarea or ""] = ""

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self.fields[self._textarea] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea":
            self._textarea = None
        elif tag == "form":
            self._in_form = False


@dataclass
class AnswerForm:
    action: str
    fields: dict[str, str]


def answer_form(html: str) -> AnswerForm | None:
    parser = _Forms()
    parser.feed(html)
    return AnswerForm(parser.action, parser.fields) if parser.action else None


class InboxClient:
    """Requests to the inbox as a trusted proxy passes them: with the person's email."""

    def __init__(self, url: str, email: str) -> None:
        self.http = httpx.Client(base_url=url, headers={"X-Forwarded-Email": email}, timeout=15.0)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def case_page(self, case_id: str, **params: str) -> str:
        response = self.http.get(f"/cases/{case_id}", params=params)
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return response.text

    def wait_page(self, path: str, until: Callable[[str], bool], timeout_s: float = 60.0) -> str:
        deadline = time.monotonic() + timeout_s
        text = ""
        while time.monotonic() < deadline:
            response = self.http.get(path)
            text = response.text
            if response.status_code == 200 and until(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"{path} never matched; last page:\n{text[:3000]}")

    def answer(self, case_id: str, text: str, form: AnswerForm | None = None) -> httpx.Response:
        """Fill the case page's answer form (or the given one) with ``text`` and post it."""
        if form is None:
            form = answer_form(self.case_page(case_id))
            assert form is not None, "the case page shows no answer form"
        return self.http.post(form.action, data={**form.fields, "text": text})


@dataclass
class Stack:
    sim: RunningSimulator
    settings: Settings  # with the simulator as Offload and the ingress as the webhook URL
    worker: Worker
    inbox: Inbox


@contextlib.contextmanager
def stack(
    topics: Settings, workdir: Path, step_ms: int = 200, inbox_env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """The simulator, the ingress, one worker and an inbox, on ``topics`` (created)."""
    with (
        simulator_process("--step-ms", str(step_ms)) as sim,
        running_ingress(topics, workdir) as ingress,
    ):
        settings = with_offload(
            topics, sim.base_url, offload_public_webhook_url=HttpUrl(f"{ingress.url}/webhooks/offload")
        )
        worker = Worker(settings, workdir)
        with running_workers(worker):
            env = {"OFFLOAD_WORKER_URLS": worker.url, **(inbox_env or {})}
            with running_inbox(settings, workdir, env) as inbox:
                yield Stack(sim, settings, worker, inbox)
