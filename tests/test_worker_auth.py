"""The worker's HTTP API behind a bearer token: every route it registers, two workers routing to each
other with auth on, Faust's built-in views gone, no token in any log, and the gate itself in-process."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import HttpUrl, SecretStr

from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.logs import secrets_of
from offload_bridge.run import Stack
from offload_bridge.settings import LOCAL_HOST, Settings, SettingsError, load_settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY, RunningSimulator, simulator_process
from offload_bridge.streams.web_access import access_middleware, open_api_warning
from offload_bridge.testing import delete_topics_with_prefix, settings_env, unique_prefix
from offload_bridge.worker_client import WorkerClient, WorkerRefused
from tests.streams_support import (
    WORKER_TOKEN,
    Worker,
    cases_on_every_partition,
    event_body,
    publish_webhooks,
    running_workers,
    wait_for_spread,
)

PARTITIONS = 6
# Two accepted tokens, as during a rotation: clients send the first, the second works as well.
ROTATED = "rotated-" + secrets.token_hex(16)
TOKENS = (WORKER_TOKEN, ROTATED)
WRONG = "wrong-" + secrets.token_hex(16)
OPEN_PATHS = {"/healthz", "/ready"}
# What Faust mounts by default (index, router, tables, statistics, graph, performance), with the
# request that answered 500 before.
FAUST_DEFAULT_PATHS = [
    "/",
    "/router/",
    "/router/case_state/get/?key=x",
    "/table/",
    "/table/case_state/",
    "/table/case_state/x/",
    "/table/case_requests/x/",
    "/stats/",
    "/assignment/",
    "/graph/",
    "/performance/",
]


def registered_routes(settings: Settings) -> list[tuple[str, str]]:
    """(method, path pattern) of every route of the worker's web application, read from its router.

    The app is built as ``offload-bridge worker`` builds it (``create_app``), and ``init_server`` is what
    Faust runs when the web server starts: it mounts the blueprints and any view left to mount. So this
    is the router the running workers serve, not a list kept here.
    """
    from offload_bridge.streams.app import create_app

    app = create_app(settings).app
    app.web.init_server()
    router = cast(Any, app.web).web_app.router  # the aiohttp driver's Application
    routes = {(route.method, route.resource.canonical) for route in router.routes()}
    assert routes, "the worker registers no route"
    return sorted(routes)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSimulator]:
    """Offload, for the route that asks it (GET /cases/{caseId}/context)."""
    with simulator_process(log_path=tmp_path_factory.mktemp("auth-sim") / "simulator.log") as running:
        yield running


@pytest.fixture(scope="module")
def s(kafka_broker: str, sim: RunningSimulator) -> Iterator[Settings]:
    settings = Settings(
        kafka_bootstrap_servers=kafka_broker,
        offload_base_url=HttpUrl(sim.base_url),
        offload_api_key=SecretStr(DEFAULT_API_KEY),
        offload_topic_prefix=unique_prefix("auth"),
        offload_topic_partitions=PARTITIONS,
        offload_worker_api_tokens=SecretStr(",".join(TOKENS)),
        # One copy of each case: a case is served by one worker only, so GET /cases/{id} must be routed.
        offload_worker_standby_replicas=0,
    )
    ensure_topics(settings)
    yield settings
    delete_topics_with_prefix(settings)


@pytest.fixture(scope="module")
def cases(s: Settings) -> list[str]:
    ids = cases_on_every_partition(f"auth-{secrets.token_hex(4)}", PARTITIONS, per_partition=1)
    publish_webhooks(s, [event_body(case_id, "case.running", 1_000, "RUNNING") for case_id in ids])
    return ids


@pytest.fixture(scope="module")
def workers(
    s: Settings, cases: list[str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Worker, Worker]]:
    workdir = tmp_path_factory.mktemp("auth-workers")
    pair = (Worker(s, workdir, "one"), Worker(s, workdir, "two"))
    with running_workers(*pair):
        wait_for_spread(pair, PARTITIONS)
        for case_id in cases:
            pair[0].wait_case(case_id, lambda state: state["status"] == "RUNNING")
        yield pair


def _get(worker: Worker, method: str, path: str, token: str | None, scheme: str = "Bearer") -> httpx.Response:
    headers = {"Authorization": f"{scheme} {token}".strip()} if token is not None else {}
    return httpx.request(method, f"{worker.url}{path}", headers=headers, timeout=30)


def _assert_unauthorized(answer: httpx.Response, what: str) -> None:
    assert answer.status_code == 401, (what, answer.status_code, answer.text)
    assert answer.headers["WWW-Authenticate"].startswith("Bearer"), what
    if answer.request.method != "HEAD":
        body = answer.json()
        assert body["ok"] is False and body["error"]["code"] == "UNAUTHORIZED", what
        for token in (*TOKENS, WRONG):
            assert token not in answer.text, what


def _paths(pattern: str, cases: list[str], offload_case: str) -> list[str]:
    """Concrete paths of a route: a known case and an unknown one for a case id (for a route that asks
    Offload, a case the simulator has)."""
    if "{case_id}" in pattern:
        known = offload_case if pattern.endswith("/context") else cases[0]
        return [pattern.replace("{case_id}", known), pattern.replace("{case_id}", "no-such-case")]
    assert "{" not in pattern, f"a route with a parameter this walk does not know: {pattern}"
    return [pattern]


def test_every_registered_route_answers_401_without_the_token_and_works_with_it(
    s: Settings, cases: list[str], workers: tuple[Worker, Worker], sim: RunningSimulator
) -> None:
    offload_case = sim.create_case()
    routes = registered_routes(s)
    patterns = {pattern for _, pattern in routes}
    # The walk covers what the docs list (Consume events downstream), and nothing Faust would have added.
    assert {"/cases/{case_id}", "/cases/{case_id}/context", "/cases", "/workers", "/stats", "/metrics",
            "/healthz", "/ready"} <= patterns  # fmt: skip
    assert not {p for p in patterns if p == "/" or p.startswith(("/router", "/table", "/graph"))}
    walked = 0
    for worker in workers:
        for method, pattern in routes:
            for path in _paths(pattern, cases, offload_case):
                what = f"{method} {worker.url}{path}"
                refused = [
                    (None, "Bearer"),
                    (WRONG, "Bearer"),
                    ("", "Bearer"),
                    (f"{WORKER_TOKEN}x", "Bearer"),
                ]
                for token, scheme in [*refused, (WORKER_TOKEN, "Basic")]:
                    answer = _get(worker, method, path, token, scheme)
                    assert answer.status_code < 500, (what, answer.status_code, answer.text)
                    if pattern in OPEN_PATHS:
                        assert answer.status_code == 200, (what, answer.text)
                    else:
                        _assert_unauthorized(answer, what)
                for token in TOKENS:
                    answer = _get(worker, method, path, token)
                    assert answer.status_code in (200, 404), (what, answer.status_code, answer.text)
                    if "no-such-case" not in path:
                        assert answer.status_code == 200, (what, answer.text)
                walked += 1
    assert walked >= 2 * len(routes)


def test_get_case_is_routed_between_workers_with_the_callers_token(
    s: Settings, cases: list[str], workers: tuple[Worker, Worker]
) -> None:
    owners = {worker.url: set(worker.owned_partitions() or []) for worker in workers}
    assert all(owners.values()), owners
    for case_id in cases:
        owner = next(url for url, ps in owners.items() if partition_for(case_id, PARTITIONS) in ps)
        for worker in workers:
            for token in TOKENS:
                answer = _get(worker, "GET", f"/cases/{case_id}", token)
                assert answer.status_code == 200, (worker.url, owner, answer.text)
                assert answer.json()["data"]["caseId"] == case_id
            # Asked without a token, the worker refuses before routing: nothing reaches the owner.
            _assert_unauthorized(_get(worker, "GET", f"/cases/{case_id}", None), case_id)
    # The Python client sends the configured token; without it the worker refuses.
    one, two = workers
    far = next(c for c in cases if partition_for(c, PARTITIONS) in owners[two.url])
    state = WorkerClient(one.url, token=s.worker_client_token).case(far)
    assert state is not None and state.caseId == far
    with pytest.raises(WorkerRefused) as refused:
        WorkerClient(one.url).case(far)
    assert (refused.value.http_status, refused.value.code) == (401, "UNAUTHORIZED")


def test_the_cli_sends_the_token_from_the_environment(
    s: Settings, cases: list[str], workers: tuple[Worker, Worker]
) -> None:
    one, two = workers
    far = next(c for c in cases if partition_for(c, PARTITIONS) in (two.owned_partitions() or []))
    env = {**settings_env(s), "OFFLOAD_WORKER_URL": one.url, "PATH": os.environ["PATH"]}
    command = [sys.executable, "-m", "offload_bridge.cli", "case", far]
    shown = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["caseId"] == far
    env.pop("OFFLOAD_WORKER_API_TOKENS")
    refused = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "UNAUTHORIZED" in refused.stderr
    questions = subprocess.run(
        [sys.executable, "-m", "offload_bridge.cli", "questions", "--json"],
        env={**env, "OFFLOAD_WORKER_API_TOKENS": ROTATED},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert questions.returncode == 0, questions.stderr


def test_faust_default_views_are_not_served(workers: tuple[Worker, Worker]) -> None:
    """streams/web_access.py empties Faust's ``Web.blueprints``: checked with faust-streaming 0.15, the
    minor release pyproject.toml bounds it to."""
    for worker in workers:
        for path in FAUST_DEFAULT_PATHS:
            _assert_unauthorized(_get(worker, "GET", path, None), path)
            answer = _get(worker, "GET", path, WORKER_TOKEN)
            assert answer.status_code == 404, (path, answer.status_code, answer.text)
            assert answer.json()["error"]["code"] == "NOT_FOUND"
        wrong_method = _get(worker, "DELETE", "/cases", WORKER_TOKEN)
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
        assert "GET" in wrong_method.headers["Allow"]


def test_no_token_appears_in_any_log_of_the_run(s: Settings, workers: tuple[Worker, Worker]) -> None:
    # A request whose path carries a token: a worker that logged paths or headers would show it.
    for worker in workers:
        _get(worker, "GET", f"/cases/{WRONG}", ROTATED)
        _get(worker, "GET", f"/{WORKER_TOKEN}", None)
        # A wrong token is no configured secret, so no log filter would hide it: it must never be written.
        _get(worker, "GET", "/stats", WRONG)
    logs = {w.service.log_path: Path(str(w.service.log_path)).read_text() for w in workers}
    for path, text in logs.items():
        assert "faust" in text.lower(), f"{path} is not a worker's log"
        for token in (*TOKENS, WRONG):
            assert token not in text, f"a token is in {path}"
        # Auth is on: no warning that the API is open.
        assert "OFFLOAD_WORKER_API_TOKENS is unset" not in text


# --- the gate in-process ------------------------------------------------------------------------


async def _ok(request: web.Request) -> web.Response:
    return web.json_response({"ok": True, "data": {}})


def _gate_answers(settings: Settings, requests: list[tuple[str, dict[str, str]]]) -> list[tuple[int, Any]]:
    async def run() -> list[tuple[int, Any]]:
        app = web.Application(middlewares=[access_middleware(settings)])
        for path in ("/cases/{case_id}", "/metrics", "/ready", "/healthz"):
            app.router.add_get(path, _ok)
        async with TestClient(TestServer(app)) as client:
            answers = []
            for path, headers in requests:
                response = await client.get(path, headers=headers)
                answers.append((response.status, dict(response.headers), await response.text()))
            return [(status, (headers, text)) for status, headers, text in answers]

    return asyncio.run(run())


def test_the_gate_reads_only_a_bearer_token_and_never_echoes_it() -> None:
    settings = Settings(offload_worker_api_tokens=SecretStr(f" {WORKER_TOKEN} , {ROTATED} "))
    assert settings.worker_api_tokens == TOKENS
    asked = [
        ("/cases/x", {"Authorization": f"Bearer {WORKER_TOKEN}"}),
        ("/cases/x", {"Authorization": f"bearer {ROTATED}"}),
        ("/cases/x", {"Authorization": f"Basic {WORKER_TOKEN}"}),
        ("/cases/x", {"Authorization": "Bearer"}),
        ("/cases/x", {"Authorization": f"Bearer {WORKER_TOKEN[:-1]}"}),
        ("/cases/x", {"Authorization": "Bearer \u00e9t\u00e9-" + "x" * 20}),
        ("/metrics", {}),
        ("/ready", {}),
        ("/healthz", {}),
    ]
    statuses = [status for status, _ in _gate_answers(settings, asked)]
    assert statuses == [200, 200, 401, 401, 401, 401, 401, 200, 200]
    for status, (headers, text) in _gate_answers(settings, asked):
        if status == 401:
            assert headers["WWW-Authenticate"].startswith('Bearer realm="offload-bridge worker"')
            assert json.loads(text)["error"]["code"] == "UNAUTHORIZED"
            assert WORKER_TOKEN[:-1] not in text


def test_metrics_can_be_left_open_while_the_rest_needs_the_token() -> None:
    settings = Settings(offload_worker_api_tokens=SecretStr(WORKER_TOKEN), offload_worker_metrics_auth=False)
    statuses = [status for status, _ in _gate_answers(settings, [("/metrics", {}), ("/cases/x", {})])]
    assert statuses == [200, 401]


def test_without_tokens_the_api_is_open_and_the_worker_warns() -> None:
    settings = Settings()
    assert [status for status, _ in _gate_answers(settings, [("/cases/x", {}), ("/metrics", {})])] == [
        200,
        200,
    ]
    warning = open_api_warning(settings)
    assert warning is not None and "open" in warning and "127.0.0.1:6066" in warning
    assert open_api_warning(Settings(offload_worker_api_tokens=SecretStr(WORKER_TOKEN))) is None


def test_tokens_are_secrets_short_ones_are_refused_without_being_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert WORKER_TOKEN in secrets_of(Settings(offload_worker_api_tokens=SecretStr(WORKER_TOKEN)))
    assert Settings(offload_worker_api_tokens=SecretStr(" , ")).worker_api_tokens == ()
    monkeypatch.setenv("OFFLOAD_WORKER_API_TOKENS", f"{WORKER_TOKEN},short-one")
    with pytest.raises(SettingsError) as refused:
        load_settings()
    assert "OFFLOAD_WORKER_API_TOKENS" in str(refused.value)
    assert "short-one" not in str(refused.value) and WORKER_TOKEN not in str(refused.value)


def test_make_run_binds_the_worker_to_localhost(tmp_path: Path) -> None:
    stack = Stack(Settings(), tmp_path)
    assert stack._env()["OFFLOAD_WORKER_WEB_HOST"] == LOCAL_HOST
