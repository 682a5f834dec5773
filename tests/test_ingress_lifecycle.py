"""Ingress process: a clear failure when its topics cannot be made; in-flight webhooks finish on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from offload_bridge.settings import Settings
from offload_bridge.testing import free_port, settings_env
from offload_bridge.topics import CASE_EVENTS
from tests.ingress_support import JSON, event_body, record_at, running_ingress


def test_start_fails_with_a_clear_message_when_topics_cannot_be_made(settings: Settings) -> None:
    nowhere = Settings(kafka_bootstrap_servers=f"127.0.0.1:{free_port()}", offload_topic_prefix="x.")
    env = {**os.environ, **settings_env(nowhere)}
    result = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "ingress", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ingress: cannot make sure its topics exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_creates_both_topics(settings: Settings, tmp_path: Path) -> None:
    with running_ingress(settings, tmp_path) as ingress:
        body = json.dumps(event_body()).encode()
        response = httpx.post(f"{ingress.url}/webhooks/offload", content=body, headers=JSON)
        assert response.status_code == 200, response.text


def test_sigterm_lets_an_in_flight_webhook_finish(settings: Settings, tmp_path: Path) -> None:
    body = json.dumps(event_body()).encode()
    half = len(body) // 2
    with running_ingress(settings, tmp_path) as ingress:
        signalled = threading.Event()

        def slow_body() -> Iterator[bytes]:
            yield body[:half]
            # The request is now in flight: the server has its head and half its body.
            time.sleep(0.5)
            ingress.process.signal(signal.SIGTERM)
            signalled.set()
            time.sleep(1.5)
            yield body[half:]

        response = httpx.post(
            f"{ingress.url}/webhooks/offload",
            content=slow_body(),
            headers={**JSON, "content-length": str(len(body))},
            timeout=30,
        )
        assert signalled.is_set()
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert ingress.process.process is not None
        # Uvicorn re-raises the signal once it has shut down gracefully.
        assert ingress.process.process.wait(timeout=30) in (0, -signal.SIGTERM), ingress.log()
        assert "Application shutdown complete" in ingress.log()
    assert record_at(settings, CASE_EVENTS, data["partition"], data["offset"]).value == body
