"""Benchmark of the case-state worker against a raw consumer measured in the same run.

1. Pre-fill ``case-events`` (a fresh topic prefix) with EVENTS webhook events over CASES cases, as the
   ingress writes them (body bytes, key caseId, headers).
2. Anchors: a raw aiokafka consumer drains the same topic from the beginning (before and after the
   worker), and a bare Faust agent iterates it doing nothing (``bench.bare_faust``), the framework's own
   ceiling, the figure the fold is judged against: built with Faust's defaults and built like the
   worker, ANCHOR_RUNS times each, alternately, reported as min / median / max (one run of either moves
   with whatever else the machine is doing). Each rate is also given per CPU-second of the process
   measured (every thread), which moves much less when other work shares the machine's cores.
3. Fold rate: ``offload-bridge worker`` (a real process on ``--store``, by default the settings' default)
   folds the backlog; the rate is taken from its /stats counters between the first and the last event
   folded, and per CPU-second of the worker process over the same span.
4. Latency at RATE events/s: produce (acks=all, idempotent) and poll ``GET /cases/{id}`` until the
   event is visible, for every SAMPLE_EVERY-th event. The ingress is not part of this measurement: the
   clock starts just before the produce an ingress would do on a POST.

Only targets 127.0.0.1; every phase has a deadline. Run: ``.venv/bin/python -m bench.state``;
``--anchors-only`` stops after the anchors, ``--without NAME`` leaves one of the worker's Faust choices at
Faust's default in the anchor built like the worker (``python -m bench.bare_faust --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from bench import kafka_reading, worker_headers
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.settings import Settings
from offload_bridge.testing import (
    ServiceProcess,
    delete_topics_with_prefix,
    free_port,
    settings_env,
    unique_prefix,
)
from offload_bridge.topics import CASE_EVENTS, topic_name

LOCAL_BROKER = "127.0.0.1:9092"
TYPES = ("case.input_needed", "case.completed", "case.failed")


@dataclass
class Event:
    case_id: str
    event_id: str
    body: bytes
    headers: list[tuple[str, bytes]]


def make_event(case_id: str, timestamp: int, kind: int) -> Event:
    event_type = TYPES[kind % len(TYPES)]
    data: dict[str, Any] = {
        "caseId": case_id, "clientReferenceId": f"ref-{case_id}", "channel": "EMAIL",
        "attemptCount": 1 + kind % 3, "attachments": [],
    }  # fmt: skip
    if event_type == "case.input_needed":
        data |= {"status": "INPUT_NEEDED", "inputRequest": "Is a signed PDF acceptable?",
                 "inputRequestId": f"ir-{case_id}-{timestamp}", "inputRequestStatus": "PENDING",
                 "inputRequestedAt": timestamp}  # fmt: skip
    elif event_type == "case.completed":
        data |= {"status": "COMPLETED", "resultStatus": "goal_achieved", "result": {"signedW9Received": True}}
    else:
        data |= {"status": "FAILED", "resultStatus": "max_retries", "failureReason": None}
    event_id = f"evt_{case_id}_{event_type.replace('.', '_')}_{timestamp}"
    body = json.dumps({"event_id": event_id, "event_type": event_type, "timestamp": timestamp, "data": data})
    headers = [
        ("event_type", event_type.encode()), ("event_id", event_id.encode()),
        ("received_at", str(int(time.time() * 1000)).encode()), ("source", b"webhook"),
    ]  # fmt: skip
    return Event(case_id, event_id, body.encode(), headers)


def producer(settings: Settings) -> AIOKafkaProducer:
    return kafka_reading.producer(settings, linger_ms=5)


async def prefill(settings: Settings, events: int, cases: int) -> float:
    topic = topic_name(CASE_EVENTS, settings)
    started = time.perf_counter()
    async with producer(settings) as kafka:
        pending = []
        for n in range(events):
            case_id = f"case-{n % cases:05d}"
            event = make_event(case_id, 1_000_000 + n, n // cases)
            pending.append(await kafka.send(topic, event.body, key=case_id.encode(), headers=event.headers))
            if len(pending) >= 5_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    return time.perf_counter() - started


async def raw_drain(settings: Settings, expected: int, deadline_s: float) -> float:
    """Events/s of a bare aiokafka consumer reading the whole topic (no group, no processing)."""
    topic = topic_name(CASE_EVENTS, settings)
    consumer = await kafka_reading.from_beginning(settings, topic)
    try:
        seen = 0
        started = time.perf_counter()
        while seen < expected and time.perf_counter() - started < deadline_s:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(records) for records in batches.values())
        elapsed = time.perf_counter() - started
        if seen < expected:
            raise RuntimeError(f"raw consumer read only {seen}/{expected} events in {deadline_s}s")
        return seen / elapsed
    finally:
        await consumer.stop()


async def stats(client: httpx.AsyncClient, url: str) -> dict[str, int]:
    response = await client.get(f"{url}/stats")
    counters: dict[str, int] = response.json()["data"]["caseEvents"]
    return counters


@dataclass(frozen=True)
class Rate:
    """Events per second of wall-clock time, and per CPU-second of the process that handled them."""

    wall: float
    cpu: float


def process_cpu_s(pid: int) -> float:
    """User and system CPU time of a process so far, every thread (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime and stime are the 14th and 15th fields of the line, the 12th and 13th after the name.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def fold_rates(url: str, expected: int, deadline_s: float, pid: int) -> tuple[Rate, float]:
    """(the rates between the first and last fold seen, seconds) from the worker's counters; ``pid``: the
    worker's process."""
    async with httpx.AsyncClient(headers=worker_headers(), timeout=10) as client:
        deadline = time.perf_counter() + deadline_s
        first: tuple[float, int, float] | None = None
        while time.perf_counter() < deadline:
            counters = await stats(client, url)
            done = counters["folded"] + counters["invalid"] + counters["failed"]
            now, cpu = time.perf_counter(), process_cpu_s(pid)
            if first is None and done > 0:
                first = (now, done, cpu)
            if done >= expected and first is not None:
                elapsed, folded = now - first[0], done - first[1]
                return Rate(folded / elapsed, folded / max(cpu - first[2], 1e-9)), elapsed
            await asyncio.sleep(0.2)
        raise RuntimeError(f"worker folded only {done}/{expected} events in {deadline_s}s")


async def fold_rate(url: str, expected: int, deadline_s: float) -> tuple[float, float]:
    """(events/s between the first and last fold seen, seconds) from the worker's counters."""
    async with httpx.AsyncClient(headers=worker_headers(), timeout=10) as client:
        deadline = time.perf_counter() + deadline_s
        first: tuple[float, int] | None = None
        while time.perf_counter() < deadline:
            counters = await stats(client, url)
            done = counters["folded"] + counters["invalid"] + counters["failed"]
            now = time.perf_counter()
            if first is None and done > 0:
                first = (now, done)
            if done >= expected and first is not None:
                elapsed = now - first[0]
                return (done - first[1]) / elapsed, elapsed
            await asyncio.sleep(0.2)
        raise RuntimeError(f"worker folded only {done}/{expected} events in {deadline_s}s")


async def latency(
    settings: Settings, url: str, rate: int, seconds: float, cases: int, every: int
) -> list[float]:
    """Milliseconds from just before the produce to the event's visibility in GET /cases/{id}."""
    topic = topic_name(CASE_EVENTS, settings)
    samples: list[float] = []
    tasks: list[asyncio.Task[None]] = []

    async def watch(client: httpx.AsyncClient, event: Event, started: float, sent: Any) -> None:
        await sent  # the broker's ack, as the ingress awaits it before answering the POST
        give_up = started + 10
        while time.perf_counter() < give_up:
            response = await client.get(f"{url}/cases/{event.case_id}")
            if response.status_code == 200 and response.json()["data"]["lastEventId"] == event.event_id:
                samples.append((time.perf_counter() - started) * 1000)
                return
            await asyncio.sleep(0.002)
        samples.append(float("inf"))  # not visible within 10 s: counted, shown as inf

    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        producer(settings) as kafka,
        httpx.AsyncClient(headers=worker_headers(), timeout=10, limits=limits) as client,
    ):
        total = int(rate * seconds)
        begin = time.perf_counter()
        for n in range(total):
            due = begin + n / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            # Newer than every pre-filled event, and a fresh case per sample so samples do not race.
            case_id = f"case-{(n * 7919) % cases:05d}"
            event = make_event(case_id, 2_000_000 + n, n)
            started = time.perf_counter()
            sent = await kafka.send(topic, event.body, key=case_id.encode(), headers=event.headers)
            if n % every == 0:
                tasks.append(asyncio.create_task(watch(client, event, started, sent)))
        await asyncio.gather(*tasks)
    return samples


async def bare_faust_rate(
    settings: Settings,
    expected: int,
    deadline_s: float,
    workdir: Path,
    *,
    faust_defaults: bool = False,
    without: tuple[str, ...] = (),
    run: str = "1",
) -> float:
    """Events/s of a bare Faust agent built like the worker over the topic's first ``expected`` events."""
    measured = await bare_faust_rates(
        settings, expected, deadline_s, workdir, faust_defaults=faust_defaults, without=without, run=run
    )
    return measured.wall


async def bare_faust_rates(
    settings: Settings,
    expected: int,
    deadline_s: float,
    workdir: Path,
    *,
    faust_defaults: bool = False,
    without: tuple[str, ...] = (),
    run: str = "1",
) -> Rate:
    """The rates of a bare Faust agent (``bench.bare_faust``, a child process) over the topic's first
    ``expected`` events: built like the worker (less ``without``), or with ``faust_defaults``."""
    command = [
        sys.executable, "-m", "bench.bare_faust", str(settings.offload_topic_prefix), str(expected),
        "--bootstrap", str(settings.kafka_bootstrap_servers), "--data-dir", str(workdir / "bare-faust"),
        "--run", run, *(["--faust-defaults"] if faust_defaults else []),
        *(argument for name in without for argument in ("--without", name)),
    ]  # fmt: skip
    log_path = workdir / f"bare-faust-{'defaults' if faust_defaults else 'worker'}-{run}.log"
    with open(log_path, "wb") as log_file:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log_file)
        try:
            line = await asyncio.wait_for(asyncio.to_thread(_result_line, child), deadline_s)
        finally:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    if line is None:
        raise RuntimeError(f"the bare Faust agent printed no result (log {log_path})")
    result = json.loads(line)
    return Rate(result["rate"], (result["events"] - 1) / max(result["cpu_seconds"], 1e-9))


def _result_line(child: subprocess.Popen[bytes]) -> str | None:
    from bench.bare_faust import RESULT_PREFIX

    assert child.stdout is not None
    for raw in child.stdout:
        line = raw.decode(errors="replace")
        if line.startswith(RESULT_PREFIX):
            return line[len(RESULT_PREFIX) :]
    return None


@dataclass
class Anchors:
    """The bare agent's rates, run after run: with Faust's defaults and built like the worker."""

    defaults: list[Rate]
    worker: list[Rate]


async def bare_anchors(settings: Settings, args: argparse.Namespace, workdir: Path, expected: int) -> Anchors:
    """ANCHOR_RUNS of each build, alternately, so that both see the same moments of the machine."""
    anchors = Anchors([], [])
    for run in range(1, args.anchor_runs + 1):
        for faust_defaults, rates in ((True, anchors.defaults), (False, anchors.worker)):
            rate = await bare_faust_rates(
                settings, expected, args.phase_timeout, workdir,
                faust_defaults=faust_defaults, without=tuple(args.without), run=str(run),
            )  # fmt: skip
            rates.append(rate)
            built = "Faust's defaults" if faust_defaults else "built like the worker"
            print(
                f"anchor (bare Faust agent, {built}) run {run}: {rate.wall:,.0f} events/s, "
                f"{rate.cpu:,.0f} per CPU-second",
                flush=True,
            )
    return anchors


def spread(rates: list[float]) -> str:
    """min / median / max."""
    return " / ".join(f"{value:,.0f}" for value in (min(rates), statistics.median(rates), max(rates)))


def anchor_lines(built: str, rates: list[Rate]) -> list[str]:
    walls, cpus = [rate.wall for rate in rates], [rate.cpu for rate in rates]
    return [
        f"bare Faust agent, {built} ({len(rates)} runs, min / median / max):",
        f"  {spread(walls)} events/s;  {spread(cpus)} events per CPU-second",
    ]


def ratio_line(fold: Rate, rates: list[Rate]) -> str:
    """The fold's ratio to the anchor's median, and over its runs, by wall clock and per CPU-second."""

    def ratios(value: float, anchors: list[float]) -> str:
        median, low, high = value / statistics.median(anchors), value / max(anchors), value / min(anchors)
        return f"{median:.2f}x ({low:.2f}-{high:.2f})"

    by_wall = ratios(fold.wall, [rate.wall for rate in rates])
    by_cpu = ratios(fold.cpu, [rate.cpu for rate in rates])
    return f"  fold's ratio: {by_wall} by wall clock, {by_cpu} per CPU-second   (goal >= 0.6x)"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> int:
    settings = Settings(kafka_bootstrap_servers=LOCAL_BROKER, offload_topic_prefix=unique_prefix("bench"))
    ensure_topics(settings)
    try:
        return await measure(settings, args)
    finally:
        # The bench's topics and the changelogs of its apps: thousands of partitions left behind would
        # slow every later client's metadata requests.
        delete_topics_with_prefix(settings)


async def measure(settings: Settings, args: argparse.Namespace) -> int:
    print(f"prefix {settings.offload_topic_prefix}  events {args.events}  cases {args.cases}", flush=True)
    fill_s = await prefill(settings, args.events, args.cases)
    print(f"pre-fill: {args.events} events in {fill_s:.1f}s ({args.events / fill_s:,.0f}/s)", flush=True)
    anchors = [await raw_drain(settings, args.events, args.phase_timeout)]
    print(f"anchor (raw aiokafka drain) before: {anchors[0]:,.0f} events/s", flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="bench-state-"))
    bare = await bare_anchors(settings, args, workdir, args.events)
    if args.without:
        print(f"(built like the worker without {', '.join(args.without)})")
    for built, rates in (("Faust's defaults", bare.defaults), ("built like the worker", bare.worker)):
        print("\n".join(anchor_lines(built, rates)), flush=True)
    if args.anchors_only:
        return 0
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **settings_env(settings),
        "OFFLOAD_WORKER_WEB_PORT": str(port),
        "OFFLOAD_WORKER_DATA_DIR": str(workdir / "data"),
        "OFFLOAD_WORKER_STORE": args.store,
        "OFFLOAD_WORKER_LOG_LEVEL": "warning",
    }
    worker = ServiceProcess(["worker"], env=env, log_path=workdir / "worker.log", cwd=workdir)
    worker.start()
    try:
        started = time.perf_counter()
        worker.wait_http(f"{url}/ready", timeout_s=args.phase_timeout)
        ready_s = time.perf_counter() - started
        print(f"worker ready in {ready_s:.1f}s (log {workdir / 'worker.log'})", flush=True)
        rate, elapsed = await fold_rates(url, args.events, args.phase_timeout, worker.pid)
        print(
            f"worker fold ({args.store}): {rate.wall:,.0f} events/s, {rate.cpu:,.0f} per CPU-second "
            f"({elapsed:.1f}s)",
            flush=True,
        )
        samples = await latency(settings, url, args.rate, args.latency_seconds, args.cases, args.sample_every)
    finally:
        worker.stop()
    anchors.append(await raw_drain(settings, args.events, args.phase_timeout))
    anchor = statistics.median(anchors)
    p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
    print(f"anchor (raw aiokafka drain) after: {anchors[1]:,.0f} events/s")
    print()
    print(f"fold rate        {rate.wall:>10,.0f} events/s, {rate.cpu:,.0f} per CPU-second of the worker")
    print(f"raw consumer     {anchor:>10,.0f} events/s (median of {len(anchors)} runs)")
    for built, rates in (("Faust's defaults", bare.defaults), ("built like the worker", bare.worker)):
        print("\n".join([*anchor_lines(built, rates), ratio_line(rate, rates)]))
    print(f"ratio to raw     {rate.wall / anchor:>10.2f}x")
    late = sum(1 for sample in samples if sample == float("inf"))
    print(f"latency @{args.rate}/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms  ({len(samples)} samples, {late} not "
          f"visible within 10 s; produce->GET visible; goal p50 <= 10 ms, p99 <= 50 ms)")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=500, help="events/s of the latency phase")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--sample-every", type=int, default=50, help="measure every Nth event's latency")
    parser.add_argument(
        "--store", default=Settings().offload_worker_store, choices=["memory://", "rocksdb://"],
        help="the worker's table store (default: the settings' default)",
    )  # fmt: skip
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="deadline of each phase, s")
    parser.add_argument("--anchor-runs", type=int, default=3, help="runs of each bare Faust agent")
    parser.add_argument("--anchors-only", action="store_true", help="stop after the anchors")
    parser.add_argument(
        "--without", action="append", default=[], metavar="NAME",
        help="leave this Faust choice of the worker's at Faust's default in the anchor built like the worker",
    )  # fmt: skip
    args = parser.parse_args(argv)
    phases = 4 + 2 * args.anchor_runs
    return asyncio.run(asyncio.wait_for(run(args), timeout=args.phase_timeout * phases))


if __name__ == "__main__":
    sys.exit(main())
