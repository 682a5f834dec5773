"""Webhooks/s and latency of the ingress against the real broker, next to an anchor measured the same way.

The anchor is a FastAPI no-op endpoint validating the same pydantic model (``bench/anchor.py``), served by
uvicorn with the same options. Both are loaded alternately, round by round, at the same concurrency by
wrk when installed, else by a bounded asyncio/httpx load generator. Only 127.0.0.1 is targeted and every
run is bounded in time.

    python -m bench.ingress [--duration 10] [--connections 32] [--rounds 2] [--loader auto|wrk|python]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from offload_bridge.kafka.connection import admin_for
from offload_bridge.settings import Settings
from offload_bridge.testing import ServiceProcess, free_port, settings_env, unique_prefix

TOKEN = "bench-token-5c0e2f7a"
GOAL_RATIO = 0.75
GOAL_P99_MS = 20.0
_REPO = Path(__file__).resolve().parent.parent

_LUA = """
counter = 0
request = function()
  counter = counter + 1
  local body = string.format(wrk_template, counter, counter %% 500)
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, body)
end
""".replace("%%", "%")


def event_template() -> str:
    """A case.input_needed webhook (the seed page's shape) with %d slots for event id and case."""
    run = uuid.uuid4().hex[:8]
    return json.dumps(
        {
            "event_id": f"evt_bench-{run}-%d_case_input_needed_1774131900300",
            "event_type": "case.input_needed",
            "timestamp": 1774131900300,
            "data": {
                "caseId": f"bench-{run}-%d",
                "clientReferenceId": "vendor_2048",
                "status": "INPUT_NEEDED",
                "channel": "EMAIL",
                "attemptCount": 1,
                "attachments": [],
                "inputRequest": "The vendor asked whether a signed PDF is acceptable. How should I respond?",
                "inputRequestId": "c8c6a7ca-a913-4d13-8cd8-5887efb0531c",
                "inputRequestStatus": "PENDING",
                "inputRequestedAt": 1774131900300,
            },
        },
        indent=2,
    )


@dataclass
class Run:
    target: str
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    failures: int


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_wrk(target: str, url: str, template: str, duration_s: int, connections: int) -> Run:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        lua_template = template.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        script.write(f'wrk_template = "{lua_template}"\n{_LUA}')
    command = [
        "wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "10s",
        "-s", script.name, url,
    ]  # fmt: skip
    output = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=True
    ).stdout
    Path(script.name).unlink()
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.MULTILINE))
    if set(latency) != {"50", "99"}:
        raise RuntimeError(f"no latency distribution in wrk's output: {output[-400:]}")
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    failures = (int(non_2xx.group(1)) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    return Run(target, rate, _ms(latency["50"]), _ms(latency["99"]), requests, failures)


def load_python(target: str, url: str, template: str, duration_s: int, connections: int) -> Run:
    """A minimal keep-alive HTTP/1.1 client on asyncio streams, one request at a time per connection
    (as wrk does); httpx's pool would measure itself rather than the server."""
    parsed = httpx.URL(url)
    head = (
        f"POST {parsed.raw_path.decode()} HTTP/1.1\r\nHost: {parsed.host}:{parsed.port}\r\n"
        "Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )

    async def main() -> Run:
        latencies: list[float] = []
        failures = 0
        counter = 0
        deadline = time.monotonic() + duration_s

        async def connection() -> None:
            nonlocal failures, counter
            reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
            try:
                while time.monotonic() < deadline:
                    counter += 1
                    body = (template % (counter, counter % 500)).encode()
                    started = time.perf_counter()
                    writer.write(head.format(length=len(body)).encode() + body)
                    response_head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    length = int(re.search(rb"(?i)content-length:\s*(\d+)", response_head).group(1))  # type: ignore[union-attr]
                    await reader.readexactly(length)
                    latencies.append(time.perf_counter() - started)
                    failures += 0 if response_head[9:10] == b"2" else 1
            finally:
                writer.close()

        started = time.monotonic()
        await asyncio.gather(*(connection() for _ in range(connections)))
        elapsed = time.monotonic() - started
        ordered = sorted(latencies)
        return Run(
            target, len(ordered) / elapsed, ordered[len(ordered) // 2] * 1000,
            ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, len(ordered), failures,
        )  # fmt: skip

    return asyncio.run(main())


def serve_anchor(port: int) -> None:
    """Run the anchor app with exactly the options ``offload-bridge ingress`` gives uvicorn."""
    import uvicorn

    from offload_bridge.ingress.logs import log_config

    uvicorn.run(
        "bench.anchor:create_app", host="127.0.0.1", port=port, workers=1, factory=True,
        log_config=log_config(Settings()), access_log=False,
    )  # fmt: skip


def _delete_topics(settings: Settings) -> None:
    """Remove the run's own topics (its prefix is unique) from the broker."""
    admin = admin_for(settings)
    try:
        mine = [name for name in admin.list_topics() if name.startswith(settings.offload_topic_prefix)]
        if mine:
            admin.delete_topics(mine)
    finally:
        admin.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run (max 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2, help="alternating anchor/ingress rounds (max 5)")
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--serve-anchor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_anchor:
        serve_anchor(args.serve_anchor)
        return 0
    duration, rounds = min(max(args.duration, 1), 60), min(max(args.rounds, 1), 5)
    loader_name = (
        "wrk" if args.loader == "wrk" or (args.loader == "auto" and shutil.which("wrk")) else "python"
    )
    load = load_wrk if loader_name == "wrk" else load_python

    settings = Settings(offload_topic_prefix=unique_prefix("bench"))
    logs = Path(tempfile.mkdtemp(prefix="bench-ingress-"))
    ingress_port, anchor_port = free_port(), free_port()
    env = {**settings_env(settings), "OFFLOAD_WEBHOOK_TOKENS": TOKEN}
    ingress = ServiceProcess(["ingress", "--port", str(ingress_port)], env=env, log_path=logs / "ingress.log")
    anchor = ServiceProcess([], env=env, log_path=logs / "anchor.log", cwd=_REPO)
    anchor.args = [sys.executable, "-m", "bench.ingress", "--serve-anchor", str(anchor_port)]
    template = event_template()
    targets = {
        "anchor (no-op FastAPI)": (anchor, f"http://127.0.0.1:{anchor_port}/webhooks/offload/{TOKEN}"),
        "ingress (Kafka acks=all)": (ingress, f"http://127.0.0.1:{ingress_port}/webhooks/offload/{TOKEN}"),
    }
    results: dict[str, list[Run]] = {name: [] for name in targets}
    try:
        ingress.start()
        anchor.start()
        ingress.wait_http(f"http://127.0.0.1:{ingress_port}/readyz", timeout_s=90)
        anchor.wait_http(f"http://127.0.0.1:{anchor_port}/healthz", timeout_s=60)
        print(f"loader: {loader_name}, {args.connections} connections, {duration}s x {rounds} rounds each")
        for name, (_, url) in targets.items():
            load(name, url, template, 2, args.connections)  # warm-up
        for round_number in range(rounds):
            for name, (_, url) in targets.items():
                run = load(name, url, template, duration, args.connections)
                results[name].append(run)
                print(
                    f"  round {round_number + 1} {name:26} {run.rate:8.0f} req/s  p50 {run.p50_ms:6.2f} ms  "
                    f"p99 {run.p99_ms:6.2f} ms  ({run.requests} requests, {run.failures} failures)"
                )
    finally:
        ingress.stop()
        anchor.stop()
        _delete_topics(settings)

    def median(name: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in results[name]))

    anchor_name, ingress_name = list(targets)
    ratio = median(ingress_name, "rate") / median(anchor_name, "rate")
    print("\nmedians over rounds:")
    for name in targets:
        print(
            f"  {name:26} {median(name, 'rate'):8.0f} req/s  p50 {median(name, 'p50_ms'):6.2f} ms  "
            f"p99 {median(name, 'p99_ms'):6.2f} ms"
        )
    p99 = median(ingress_name, "p99_ms")
    failures = sum(run.failures for run in results[ingress_name])
    print(f"\ningress/anchor rate ratio: {ratio:.2f} (goal >= {GOAL_RATIO})")
    print(f"ingress p99: {p99:.2f} ms (goal <= {GOAL_P99_MS:g} ms); ingress failures: {failures}")
    met = ratio >= GOAL_RATIO and p99 <= GOAL_P99_MS and failures == 0
    print("goal met" if met else "goal NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
