"""The streams subcommands: ``offload-bridge worker`` and ``offload-bridge case CASE_ID``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING
from urllib.parse import quote

from offload_bridge.cli_support import CommandError
from offload_bridge.settings import Settings
from offload_bridge.worker_client import bearer_headers

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge.streams.worker import WorkerSetupError, run_worker

    try:
        return run_worker(settings)
    except WorkerSetupError as error:
        raise CommandError(str(error)) from None


def cmd_case(args: argparse.Namespace, settings: Settings) -> int:
    import httpx

    url = f"{settings.worker_url}/cases/{quote(args.case_id, safe='')}"
    try:
        headers = bearer_headers(settings.worker_client_token)
        response = httpx.get(url, headers=headers, timeout=args.timeout)
    except httpx.HTTPError as error:
        reason = type(error).__name__
        raise CommandError(f"the worker at {settings.worker_url} did not answer ({reason})") from None
    try:
        body = response.json()
    except ValueError:
        raise CommandError(f"the worker answered HTTP {response.status_code} without JSON") from None
    if response.status_code == 200 and isinstance(body, dict) and body.get("ok"):
        print(json.dumps(body["data"], indent=2))
        return 0
    problem = body.get("error", {}) if isinstance(body, dict) else {}
    code = problem.get("code", f"HTTP_{response.status_code}")
    raise CommandError(f"{code}: {problem.get('message', 'unexpected answer')}")


def register(commands: Subcommands) -> None:
    worker = commands.add_parser(
        "worker", help="run the streams worker: case-state table, its query API, case-state topic"
    )
    worker.set_defaults(handler=cmd_worker)
    case = commands.add_parser("case", help="print the state of one case (JSON) from the worker's query API")
    case.add_argument("case_id", metavar="CASE_ID", help="the caseId Offload gave the case")
    case.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")
    case.set_defaults(handler=cmd_case)
