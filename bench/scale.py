"""Benchmark of the case-state worker at scale, with the rocksdb store, against anchors of the same run.

1. Pre-fill ``case-events`` (a fresh topic prefix) with EVENTS events over CASES cases, as the ingress
   writes them: each case two questions and then COMPLETED or FAILED (every CASES/OPEN-th case stays
   open), its events interleaved with those of the WINDOW cases started around it.
2. Anchors: a raw aiokafka consumer drains the whole topic (before and after), and a bare Faust agent
   built like the worker's iterates its first ANCHOR_EVENTS events doing nothing (``bench.bare_faust``).
3. The worker (a real process, ``rocksdb://``) folds the backlog: its rate from /stats, its peak RSS
   while folding (VmHWM) and its RSS once settled.
4. ``GET /cases/{id}`` round trips while events arrive at RATE/s (produced like the ingress), p50/p99.
5. Restarts: SIGTERM then start, and SIGKILL then start; the time from the start to the first
   ``GET /cases/{id}`` answered 200, and the RSS after each.
6. One reconcile sweep's CPU with 10k open cases among 1M (``bench.due_index``, in-process).

Only targets 127.0.0.1; every phase has a deadline. Run: ``.venv/bin/python -m bench.scale`` (the full
size takes about an hour here; ``--events``/``--cases`` scale it down).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import worker_headers
from bench.state import bare_faust_rate, fold_rate, make_event, percentile, producer, raw_drain
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.processes import ServiceProcess
from offload_bridge.settings import Settings
from offload_bridge.testing import free_port, settings_env, unique_prefix
from offload_bridge.topics import CASE_EVENTS, topic_name

LOCAL_BROKER = "127.0.0.1:9092"


def case_id_of(number: int) -> str:
    return f"case-{number:07d}"


async def prefill(settings: Settings, events: int, cases: int, open_every: int, window: int) -> float:
    """Cases start in order and live through ``window`` others: in each block of ``window`` cases, round r
    holds event r of every case (a question, then the last round COMPLETED or FAILED). A year of history
    replays like this: the cases of a few days are open at once, not all of them."""
    topic = topic_name(CASE_EVENTS, settings)
    per_case = -(-events // cases)
    started = time.perf_counter()
    sent = 0
    async with producer(settings) as kafka:
        pending = []
        for first in range(0, cases, window):
            for round_number in range(per_case):
                for number in range(first, min(first + window, cases)):
                    if sent == events:
                        break
                    last = round_number == per_case - 1 and number % open_every != 0
                    # make_event's kinds: 0 a question, 1 COMPLETED, 2 FAILED.
                    kind = (1 + number % 2) if last else 0
                    case_id = case_id_of(number)
                    event = make_event(case_id, 1_000_000 + sent, kind)
                    key = case_id.encode()
                    pending.append(await kafka.send(topic, event.body, key=key, headers=event.headers))
                    sent += 1
                    if len(pending) >= 20_000:
                        await asyncio.gather(*pending)
                        pending.clear()
        await asyncio.gather(*pending)
    return time.perf_counter() - started


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MB, from /proc."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def worker_pid(worker: ServiceProcess) -> int:
    assert worker.process is not None
    return worker.process.pid


async def first_served(url: str, case_id: str, deadline_s: float) -> float:
    """Seconds until GET /cases/{id} answers 200 (polled every 20 ms)."""
    started = time.perf_counter()
    async with httpx.AsyncClient(headers=worker_headers(), timeout=5) as client:
        while time.perf_counter() - started < deadline_s:
            try:
                if (await client.get(f"{url}/cases/{case_id}")).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.02)
    raise RuntimeError(f"GET /cases/{case_id} not served within {deadline_s}s")


async def get_latency(settings: Settings, url: str, rate: int, seconds: float, cases: int) -> list[float]:
    """Round trips (ms) of GET /cases/{id}, one after another, while events arrive at ``rate``/s."""
    topic = topic_name(CASE_EVENTS, settings)
    samples: list[float] = []
    stop = asyncio.Event()

    async def produce() -> None:
        async with producer(settings) as kafka:
            begin = time.perf_counter()
            for n in range(int(rate * seconds)):
                wait = begin + n / rate - time.perf_counter()
                if wait > 0:
                    await asyncio.sleep(wait)
                case_id = case_id_of((n * 7919) % cases)
                event = make_event(case_id, 900_000_000 + n, 0)
                await kafka.send(topic, event.body, key=case_id.encode(), headers=event.headers)
        stop.set()

    async def query() -> None:
        async with httpx.AsyncClient(headers=worker_headers(), timeout=10) as client:
            n = 0
            while not stop.is_set():
                case_id = case_id_of((n * 104_729) % cases)
                started = time.perf_counter()
                response = await client.get(f"{url}/cases/{case_id}")
                samples.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"GET /cases/{case_id} answered {response.status_code}")
                n += 1
                await asyncio.sleep(0.01)

    await asyncio.gather(produce(), query())
    return samples


def sweep_cpu(cases: int, open_cases: int) -> str:
    """bench.due_index's report for the same sizes (a child process: its table is not the worker's)."""
    command = [sys.executable, "-m", "bench.due_index", "--records", str(cases), "--open", str(open_cases)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=True)
    return done.stdout


async def run(args: argparse.Namespace) -> int:
    settings = Settings(kafka_bootstrap_servers=LOCAL_BROKER, offload_topic_prefix=unique_prefix("scale"))
    ensure_topics(settings)
    open_every = max(1, args.cases // max(1, args.open))
    print(f"prefix {settings.offload_topic_prefix}  events {args.events:,}  cases {args.cases:,}  "
          f"open at the end ~{args.cases // open_every:,}  window {args.window:,}", flush=True)  # fmt: skip
    fill_s = await prefill(settings, args.events, args.cases, open_every, args.window)
    print(f"pre-fill: {args.events:,} events in {fill_s:.0f}s ({args.events / fill_s:,.0f}/s)", flush=True)
    anchors = [await raw_drain(settings, args.events, args.phase_timeout)]
    print(f"anchor (raw aiokafka drain) before: {anchors[0]:,.0f} events/s", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    anchor_events = min(args.events, args.anchor_events)
    bare = await bare_faust_rate(settings, anchor_events, args.phase_timeout, workdir)
    print(f"anchor (bare Faust agent, first {anchor_events:,} events): {bare:,.0f} events/s", flush=True)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **settings_env(settings),
        "OFFLOAD_WORKER_WEB_PORT": str(port),
        "OFFLOAD_WORKER_DATA_DIR": str(workdir / "data"),
        "OFFLOAD_WORKER_STORE": "rocksdb://",
        "OFFLOAD_WORKER_LOG_LEVEL": "warning",
    }

    def new_worker() -> ServiceProcess:
        return ServiceProcess(["worker"], env=env, log_path=workdir / "worker.log", cwd=workdir)

    probe = case_id_of(args.cases // 2)
    worker = new_worker()
    worker.start()
    try:
        worker.wait_http(f"{url}/ready", timeout_s=args.phase_timeout)
        rate, elapsed = await fold_rate(url, args.events, args.phase_timeout)
        _, peak = rss_mb(worker_pid(worker))  # VmHWM: the highest RSS the process ever had
        print(f"worker fold (rocksdb://): {rate:,.0f} events/s ({elapsed:.0f}s), peak RSS {peak:.0f} MB",
              flush=True)  # fmt: skip
        await asyncio.sleep(args.settle_s)
        settled, _ = rss_mb(worker_pid(worker))
        print(f"settled RSS {settled:.0f} MB", flush=True)
        samples = await get_latency(settings, url, args.rate, args.latency_seconds, args.cases)
        p50, p99 = percentile(samples, 0.50), percentile(samples, 0.99)
        print(f"GET /cases/{{id}} at {args.rate} events/s: p50 {p50:.1f} ms p99 {p99:.1f} ms "
              f"({len(samples):,} requests)", flush=True)  # fmt: skip

        restarts: dict[str, tuple[float, float]] = {}
        for kind in ("SIGTERM", "SIGKILL"):
            if kind == "SIGTERM":
                worker.stop()
            else:
                worker.kill()
            worker = new_worker()
            worker.start()
            served_s = await first_served(url, probe, args.phase_timeout)
            await asyncio.sleep(args.settle_s)
            rss, _ = rss_mb(worker_pid(worker))
            restarts[kind] = (served_s, rss)
            print(f"{kind}, start: first GET served after {served_s:.1f}s; RSS {rss:.0f} MB", flush=True)
    finally:
        worker.stop()
    anchors.append(await raw_drain(settings, args.events, args.phase_timeout))
    anchor = statistics.median(anchors)
    print(f"anchor (raw aiokafka drain) after: {anchors[1]:,.0f} events/s", flush=True)
    sweep = sweep_cpu(args.sweep_records, args.sweep_open)

    print()
    print(f"events / cases      {args.events:,} / {args.cases:,} (rocksdb://, log {workdir}/worker.log)")
    print(f"fold rate           {rate:>10,.0f} events/s")
    print(f"bare Faust agent    {bare:>10,.0f} events/s   ratio {rate / bare:.2f}x (goal >= 0.6x)")
    print(f"raw consumer        {anchor:>10,.0f} events/s   ratio {rate / anchor:.3f}x (median of 2 runs)")
    print(f"RSS peak / settled  {peak:>6.0f} / {settled:.0f} MB (goal <= 400 MB)")
    (term_s, term_rss), (kill_s, kill_rss) = restarts["SIGTERM"], restarts["SIGKILL"]
    print(f"RSS after restarts  {term_rss:>6.0f} (SIGTERM) / {kill_rss:.0f} (SIGKILL) MB")
    print(f"first GET after     {term_s:>6.1f} s (SIGTERM) / {kill_s:.1f} s (SIGKILL) (goal <= 10 s)")
    print(f"GET p50 / p99       {p50:>6.1f} / {p99:.1f} ms at {args.rate} events/s (goal p99 <= 10 ms)")
    print(f"reconcile sweep (bench.due_index, {args.sweep_open:,} open among {args.sweep_records:,}; "
          "goal <= 50 ms CPU):")  # fmt: skip
    print("".join(f"  {line}\n" for line in sweep.splitlines() if line.strip()), end="")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=3_000_000)
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=10_000, help="cases whose events interleave")
    parser.add_argument("--open", type=int, default=10_000, help="cases left open (not terminal)")
    parser.add_argument(
        "--anchor-events", type=int, default=300_000, help="events the bare Faust agent reads"
    )
    parser.add_argument("--sweep-records", type=int, default=1_000_000, help="records of the sweep bench")
    parser.add_argument("--sweep-open", type=int, default=10_000, help="open cases of the sweep bench")
    parser.add_argument("--rate", type=int, default=500, help="events/s while GET latency is measured")
    parser.add_argument("--latency-seconds", type=float, default=20.0)
    parser.add_argument("--settle-s", type=float, default=10.0, help="idle time before a settled RSS")
    parser.add_argument("--phase-timeout", type=float, default=3600.0, help="deadline of each phase, s")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
