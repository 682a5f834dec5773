"""What the benchmarks of the worker's calls to Offload share (``bench.answers``, ``bench.case_requests``):
the simulator with its latency knob, the raw httpx loop they are judged against, the worker run as a real
process, its CPU time, the figures as min / median / max over the runs, and the driver of the runs with its
command line (``arguments``, ``run_phases``).

The anchor is a bare ``httpx.AsyncClient`` making the same calls to the same simulator with the same
number of requests in flight and the same latency, in the same run; runs of the anchor and of the worker
alternate, so both meet the same load of a shared machine. A bare ``aiohttp.ClientSession`` loop is the
second anchor: the worker calls Offload through aiohttp, and httpx's pool spends CPU per request in
proportion to its connections (with 64 in flight it, not the simulator, bounds the httpx loop). The load
average is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx

from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import DEFAULT_API_KEY
from offload_bridge.testing import ServiceProcess, free_port, settings_env

LOCAL_BROKER = "127.0.0.1:9092"
HEADERS = {"x-api-key": DEFAULT_API_KEY}


def start_simulator(workdir: Path, timeout_s: float) -> tuple[ServiceProcess, str]:
    """The simulator as a real process on a free port: (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    simulator = ServiceProcess(["simulator", "--port", str(port)], log_path=workdir / "simulator.log")
    simulator.start()
    simulator.wait_http(f"{url}/_sim/health", timeout_s=timeout_s)
    return simulator, url


async def set_latency(client: httpx.AsyncClient, latency_ms: int) -> None:
    """The simulator's latency added to every API response."""
    response = await client.put("/_sim/faults", json={"latency_ms": latency_ms})
    response.raise_for_status()


async def run_concurrently(
    calls: Sequence[Callable[[], Awaitable[None]]], in_flight: int, deadline_s: float
) -> None:
    """Run ``calls`` with ``in_flight`` of them under way at once."""
    pending = iter(calls)

    async def worker() -> None:
        for call in pending:
            await call()

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(in_flight))), deadline_s)


def raw_client(base_url: str, in_flight: int) -> httpx.AsyncClient:
    """The anchor's client: httpx with one connection per request in flight, as the worker's pool."""
    limits = httpx.Limits(max_connections=in_flight)
    return httpx.AsyncClient(base_url=base_url, headers=HEADERS, limits=limits, timeout=30)


def raw_aiohttp_session(base_url: str, in_flight: int) -> aiohttp.ClientSession:
    """The second anchor's client: aiohttp with as many connections as requests in flight."""
    connector = aiohttp.TCPConnector(limit=in_flight)
    return aiohttp.ClientSession(base_url, headers=HEADERS, connector=connector)


@dataclass
class Measured:
    """One phase: items/s, CPU ms per item (of the process measured), seconds, and the share of that CPU
    spent in the kernel (system time; the worker's: socket writes to the broker and to Offload)."""

    rate: float
    cpu_ms: float
    seconds: float
    system_share: float | None = None


async def measure_raw(count: int, run: Callable[[], Awaitable[None]]) -> Measured:
    """Time ``run`` (``count`` calls) and the CPU this process spent on it."""
    started, cpu_before = time.perf_counter(), time.process_time()
    await run()
    elapsed = time.perf_counter() - started
    used = time.process_time() - cpu_before
    return Measured(count / elapsed, used * 1000 / count, elapsed)


def worker_process(settings: Settings, workdir: Path, env: dict[str, str]) -> tuple[ServiceProcess, int]:
    """``offload-bridge worker`` (not started) with its own port and data directory."""
    port = free_port()
    full_env = {
        **settings_env(settings),
        "OFFLOAD_WORKER_WEB_PORT": str(port),
        "OFFLOAD_WORKER_DATA_DIR": str(workdir / "data"),
        "OFFLOAD_WORKER_LOG_LEVEL": "warning",
        **env,
    }
    return ServiceProcess(["worker"], env=full_env, log_path=workdir / "worker.log", cwd=workdir), port


async def measure_worker(
    settings: Settings,
    workdir: Path,
    env: dict[str, str],
    expected: int,
    moments: Callable[[], Awaitable[list[int]]],
    deadline_s: float,
) -> Measured:
    """Start the worker, wait until ``moments`` (the ``at`` of every terminal outcome, once all
    ``expected`` are there) returns; the rate between the first and the last outcome, and the worker's
    CPU time from ready to the last outcome per item."""
    worker, port = worker_process(settings, workdir, env)
    worker.start()
    try:
        await asyncio.to_thread(worker.wait_http, f"http://127.0.0.1:{port}/ready", deadline_s)
        user_before, system_before = cpu_seconds(worker.pid)
        at = sorted(await asyncio.wait_for(moments(), deadline_s))
        user_after, system_after = cpu_seconds(worker.pid)
    finally:
        worker.stop()
    elapsed = (at[-1] - at[0]) / 1000
    user, system = user_after - user_before, system_after - system_before
    used = user + system
    share = system / used if used else None
    return Measured((len(at) - 1) / elapsed, used * 1000 / expected, elapsed, share)


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU time of a process, every thread (Linux /proc); zeros elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0, 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


@dataclass
class Figures:
    """The runs of the anchor and of the worker."""

    what: str  # "answers", "case requests"
    raw: list[Measured] = field(default_factory=list)
    raw_aiohttp: list[Measured] = field(default_factory=list)
    worker: list[Measured] = field(default_factory=list)

    def report(self, in_flight: int, latency_ms: int, goal: float, loads: list[str]) -> None:
        def spread(values: list[float], unit: str, digits: int = 0) -> str:
            low, mid, high = min(values), statistics.median(values), max(values)
            return f"{mid:,.{digits}f} {unit} (min {low:,.{digits}f}, max {high:,.{digits}f})"

        def ratio(anchor: list[Measured]) -> str:
            of_medians = statistics.median(w.rate for w in self.worker) / statistics.median(
                r.rate for r in anchor
            )
            runs = ", ".join(f"{w.rate / r.rate:.2f}" for w, r in zip(self.worker, anchor, strict=True))
            return f"{of_medians:.2f}x (per run: {runs})"

        print()
        print(f"{len(self.raw)} runs, {in_flight} in flight on every side, simulator latency {latency_ms} ms")
        print(f"worker               {spread([w.rate for w in self.worker], self.what + '/s')}")
        print(f"raw httpx loop       {spread([r.rate for r in self.raw], self.what + '/s')}")
        print(f"raw aiohttp loop     {spread([r.rate for r in self.raw_aiohttp], self.what + '/s')}")
        print(f"worker / httpx       {ratio(self.raw)}   goal >= {goal}x")
        print(f"worker / aiohttp     {ratio(self.raw_aiohttp)}")
        print(f"worker CPU           {spread([w.cpu_ms for w in self.worker], 'ms per item', 2)}")
        shares = [w.system_share for w in self.worker if w.system_share is not None]
        if shares:
            print(f"  of which system    {statistics.median(shares):.0%} (median)")
        print(f"httpx loop CPU       {spread([r.cpu_ms for r in self.raw], 'ms per item', 2)}")
        print(f"aiohttp loop CPU     {spread([r.cpu_ms for r in self.raw_aiohttp], 'ms per item', 2)}")
        for line in loads:
            print(line)


# One run of a bench: its anchors, then the worker, against the simulator at this URL, in this directory.
OneRun = Callable[[argparse.Namespace, str, Path, "Figures"], Awaitable[None]]


def arguments(description: str, count: str, count_help: str, anchor: str) -> argparse.ArgumentParser:
    """The command line both benches take: ``--COUNT`` per phase, the simulator's latency, the requests
    in flight, the runs and each phase's deadline. ``anchor``: "anchor" or "anchors", for the help."""
    possessive = anchor + ("'" if anchor.endswith("s") else "'s")
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(f"--{count}", type=int, default=1_500, help=count_help)
    parser.add_argument("--latency-ms", type=int, default=0, help="the simulator's latency per call, ms")
    parser.add_argument(
        "--in-flight", type=int, default=64, help=f"requests in flight: the {possessive} and the worker's"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help=f"runs of the {anchor} and the worker, alternately"
    )
    parser.add_argument("--phase-timeout", type=float, default=180.0, help="deadline of each phase, s")
    return parser


def run_main(args: argparse.Namespace, run: Callable[[argparse.Namespace], Awaitable[int]]) -> int:
    """``run`` under a deadline: every phase of every run, anchors and worker."""
    return asyncio.run(asyncio.wait_for(run(args), timeout=args.phase_timeout * 4 * args.runs))


async def run_phases(
    args: argparse.Namespace,
    name: str,
    figures: Figures,
    title: str,
    one_run: OneRun,
    latency_first: bool = False,
) -> int:
    """Start the simulator, make ``args.runs`` runs of ``one_run`` and report the figures. ``title``: what
    a phase makes, e.g. "answers 1500"; ``latency_first``: set the simulator's latency once, before the
    runs (else each run sets it)."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    loads = [f"before: {load()}"]
    simulator, sim_url = start_simulator(workdir, args.phase_timeout)
    print(f"{title} per phase, {args.in_flight} in flight, latency {args.latency_ms} ms, "
          f"{args.runs} runs; {loads[0]}", flush=True)  # fmt: skip
    try:
        if latency_first:
            async with httpx.AsyncClient(base_url=sim_url, headers=HEADERS, timeout=30) as client:
                await set_latency(client, args.latency_ms)
        for number in range(1, args.runs + 1):
            print(f"run {number}", flush=True)
            await one_run(args, sim_url, workdir / f"run-{number}", figures)
    finally:
        simulator.stop()
    loads.append(f"after:  {load()}")
    figures.report(args.in_flight, args.latency_ms, 0.8 if args.latency_ms >= 100 else 0.6, loads)
    return 0
