"""Benchmark of the browser inbox's list against the workers' own listing, measured in the same run.

1. Two workers (real processes, ``OFFLOAD_WORKER_STANDBY_REPLICAS=0``): once each owns half the partitions of
   a fresh topic prefix, QUESTIONS ``case.input_needed`` webhooks are published to ``case-events`` as the
   ingress writes them (body, key caseId, headers), one case each, asked at distinct times a SPACING_S apart
   (the oldest some days ago); most carry metadata with a ``team`` field. The workers fold them.
2. The inbox (``offload-bridge inbox``, a real process) starts INBOX_STARTS times: the seconds until its web
   server answers and until ``/ready`` (it read case-state from the beginning and case-events, answers and
   answer-outcomes to their ends), and its RSS with every question in memory. The last one stays up.
3. RUNS runs, alternately so that both sides see the same moments of the machine:
   - the inbox: REQUESTS ``GET /`` of each page kind, one after the other on one keep-alive connection, as
     the identity-aware proxy sends them (``X-Forwarded-Email`` from 127.0.0.1): the first page, the middle
     page, the first page of ``?field=team&value=ap`` and the middle page of ``?age=1d``;
   - the anchor: LISTINGS ``QuestionReader(...).listing()``, what ``offload-bridge questions`` does: walk
     ``GET /cases?status=INPUT_NEEDED`` on both workers to the end and sort by age. A list that gathers from
     the workers on every request pays this each time (and still lags the topics by the fold).
   Median and p95 of every request of all runs; the goal is a page in <= 300 ms.
4. Staleness: PROBES times, a new question (asked before every other, so it heads the list's first page)
   is published; the milliseconds from just before the produce until the inbox's ``GET /?fragment=list``
   shows it; and, to say where the time goes, until a worker's ``GET /cases/{id}`` shows it (the fold) and
   until a raw consumer at the end of ``case-state`` reads its record (the fold's batch published). All
   polled every POLL_MS, one after the other.

Only targets 127.0.0.1; every phase has a deadline; the topics are deleted at the end. The reconciler is
kept quiet (no Offload here). Run: ``.venv/bin/python -m bench.inbox`` (``--help`` for the knobs).
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition
from pydantic import SecretStr

from bench.offload_calls import load
from bench.scale import rss_mb
from bench.state import percentile
from offload_bridge.answers.questions import QuestionReader
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.connection import librdkafka_options
from offload_bridge.processes import ServiceProcess
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, free_port, settings_env, unique_prefix
from offload_bridge.topics import CASE_EVENTS, CASE_STATE, topic_name
from offload_bridge.worker_client import bearer_headers

LOCAL_BROKER = "127.0.0.1:9092"
TEAMS = ("ap", "procurement", "legal")
PERSON = {"X-Forwarded-Email": "bench@example.com"}


# --- the questions -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Question:
    case_id: str
    reference: str
    asked_at: int  # unix ms: inputRequestedAt
    team: str | None


def questions(count: int, newest_at: int, spacing_ms: int) -> list[Question]:
    """``count`` questions, the n-th asked ``(count - n) * spacing_ms`` before ``newest_at``; four in five
    carry a team (ap, procurement, legal in turn), the fifth no metadata at all."""
    return [
        Question(
            case_id=f"case-{n:05d}",
            reference=f"po-{n:05d}",
            asked_at=newest_at - (count - n) * spacing_ms,
            team=None if n % 5 == 4 else TEAMS[n % 3],
        )
        for n in range(count)
    ]


def webhook(question: Question) -> tuple[bytes, list[tuple[str, str | bytes | None]]]:
    """The body and headers of Offload's ``case.input_needed`` as the ingress writes it to case-events."""
    event_id = f"evt_{question.case_id}_case_input_needed_{question.asked_at}"
    data: dict[str, Any] = {
        "caseId": question.case_id, "clientReferenceId": question.reference, "status": "INPUT_NEEDED",
        "channel": "EMAIL", "attemptCount": 1, "attachments": [],
        "inputRequest": f"Vendor {question.reference} asks whether a signed PDF is acceptable. Answer?",
        "inputRequestId": f"ir-{question.case_id}", "inputRequestStatus": "PENDING",
        "inputRequestedAt": question.asked_at,
    }  # fmt: skip
    if question.team is not None:
        data["metadata"] = {"team": question.team, "vendor": question.reference}
    body = {
        "event_id": event_id,
        "event_type": "case.input_needed",
        "timestamp": question.asked_at,
        "data": data,
    }
    headers: list[tuple[str, str | bytes | None]] = [
        ("event_type", b"case.input_needed"), ("event_id", event_id.encode()),
        ("received_at", str(int(time.time() * 1000)).encode()), ("source", b"webhook"),
    ]  # fmt: skip
    return json.dumps(body).encode(), headers


def producer(settings: Settings) -> Producer:
    # Kafka's own partitioner (murmur2), as the ingress and the workers' routing expect; acks=all, idempotent.
    return Producer({
        **librdkafka_options(settings), "bootstrap.servers": settings.bootstrap_servers, "acks": "all",
        "enable.idempotence": True, "linger.ms": 5, "partitioner": "murmur2_random",
    })  # fmt: skip


def publish(kafka: Producer, settings: Settings, batch: Iterable[Question]) -> None:
    """Produce the questions' webhooks; returns once the broker acknowledged every one."""
    topic = topic_name(CASE_EVENTS, settings)
    for question in batch:
        body, headers = webhook(question)
        while True:
            try:
                kafka.produce(topic, body, key=question.case_id.encode(), headers=headers)
                break
            except BufferError:
                kafka.poll(0.05)
        kafka.poll(0)
    if kafka.flush(60) != 0:
        raise RuntimeError("the broker did not acknowledge every webhook within 60 s")


# --- the processes -------------------------------------------------------------------------------------
class Worker:
    def __init__(self, settings: Settings, workdir: Path, name: str, store: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **settings_env(settings),
            "OFFLOAD_WORKER_WEB_PORT": str(self.port),
            "OFFLOAD_WORKER_DATA_DIR": str(workdir / f"{name}-data"),
            "OFFLOAD_WORKER_STORE": store,
            # Each worker owns half the partitions and keeps no copy of the other half.
            "OFFLOAD_WORKER_STANDBY_REPLICAS": "0",
            "OFFLOAD_WORKER_LOG_LEVEL": "warning",
            # No Offload here: no case is due for a check during the run.
            "OFFLOAD_RECONCILE_STALE_S": "86400",
            "OFFLOAD_RECONCILE_SAFETY_INTERVAL_S": "86400",
        }
        self.service = ServiceProcess(["worker"], env=env, log_path=workdir / f"{name}.log", cwd=workdir)
        self.http = httpx.Client(base_url=self.url, headers=bearer_headers(settings.worker_client_token))

    def partitions(self) -> list[int]:
        try:
            answer = self.http.get("/cases", params={"limit": 1}, timeout=10)
        except httpx.HTTPError:
            return []
        return list(answer.json()["data"]["partitions"]) if answer.status_code == 200 else []

    def applied(self) -> int:
        counters: dict[str, int] = self.http.get("/stats", timeout=10).json()["data"]["caseEvents"]
        return counters["applied"]


def until(condition: Callable[[], bool], deadline_s: float, what: str, every_s: float = 0.2) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"not within {deadline_s:.0f} s: {what}")
        time.sleep(every_s)


class Inbox:
    def __init__(self, settings: Settings, workdir: Path, workers: list[Worker], run: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **settings_env(settings),
            "OFFLOAD_WORKER_URLS": ",".join(worker.url for worker in workers),
            "OFFLOAD_INBOX_CSRF_SECRET": secrets.token_hex(24),
        }
        self.service = ServiceProcess(
            ["inbox", "--port", str(self.port)], env=env, log_path=workdir / f"inbox-{run}.log", cwd=workdir
        )
        self.http = httpx.Client(base_url=self.url, headers=PERSON, timeout=30)

    def start(self, deadline_s: float) -> tuple[float, float]:
        """(seconds until the web server answered, seconds until /ready), from the process's start."""
        started = time.perf_counter()
        self.service.start()
        up = self._first_ok("/healthz", started, deadline_s)
        ready = self._first_ok("/ready", started, deadline_s)
        return up, ready

    def _first_ok(self, path: str, started: float, deadline_s: float) -> float:
        while time.perf_counter() - started < deadline_s:
            if self.service.process is not None and self.service.process.poll() is not None:
                raise RuntimeError(f"the inbox exited: {self.service.log_tail()}")
            try:
                if self.http.get(path, timeout=2).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the inbox's {path} did not answer 200 within {deadline_s:.0f} s")

    def waiting(self) -> int:
        metrics = self.http.get("/metrics").text
        line = next(
            line for line in metrics.splitlines() if line.startswith("offload_inbox_waiting_questions ")
        )
        return int(float(line.split()[1]))


# --- measuring -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageKind:
    label: str
    params: dict[str, str]
    expect: str  # text the page must hold: it is the page asked for


def page_kinds(batch: list[Question], page_size: int, now_ms: int) -> list[PageKind]:
    total = len(batch)
    middle = -(-total // page_size) // 2 + 1
    ap = sum(1 for q in batch if q.team == "ap")
    day_old = [q for q in batch if now_ms - q.asked_at >= 86_400_000]
    old_middle = -(-len(day_old) // page_size) // 2 + 1
    return [
        PageKind("first page", {}, f"{total} questions waiting"),
        PageKind("middle page", {"page_number": str(middle)}, batch[(middle - 1) * page_size].reference),
        PageKind("team=ap, page 1", {"field": "team", "value": "ap"}, f"{ap} questions match the filter"),
        PageKind(
            "age>1d, middle page",
            {"age": "1d", "page_number": str(old_middle)},
            # Not the page count: questions cross the day's line while the run goes on.
            f"Page {old_middle} of " if len(day_old) > page_size else "match the filter",
        ),
    ]


def time_pages(inbox: Inbox, kind: PageKind, requests: int) -> list[float]:
    """Milliseconds of each GET, one after the other on one connection."""
    samples: list[float] = []
    for _ in range(requests):
        started = time.perf_counter()
        response = inbox.http.get("/", params=kind.params)
        samples.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200 or kind.expect not in response.text:
            raise RuntimeError(f"{kind.label}: HTTP {response.status_code}, {kind.expect!r} not on the page")
    return samples


def time_listings(reader: QuestionReader, expected: int, listings: int) -> list[float]:
    samples: list[float] = []
    for _ in range(listings):
        started = time.perf_counter()
        listing = reader.listing()
        samples.append((time.perf_counter() - started) * 1000)
        if not listing.complete or len(listing.questions) != expected:
            raise RuntimeError(
                f"the workers listed {len(listing.questions)} questions: {listing.describe_gap()}"
            )
    return samples


@dataclass
class Probe:
    worker_ms: float  # a worker's GET /cases/{id} shows the question: the fold
    topic_ms: float  # its case-state record can be read: the fold's batch published
    inbox_ms: float  # the inbox's list shows it


def case_state_tail(settings: Settings) -> Consumer:
    """A raw consumer at the end of every partition of case-state, outside any group."""
    consumer = Consumer({
        **librdkafka_options(settings), "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"{settings.offload_topic_prefix}bench-unjoined", "enable.auto.commit": False,
    })  # fmt: skip
    topic = topic_name(CASE_STATE, settings)
    consumer.assign([TopicPartition(topic, p, OFFSET_END) for p in range(settings.offload_topic_partitions)])
    consumer.consume(1000, 1.0)  # the assignment takes effect
    return consumer


def staleness(
    kafka: Producer,
    settings: Settings,
    inbox: Inbox,
    workers: list[Worker],
    oldest_at: int,
    args: argparse.Namespace,
) -> list[Probe]:
    """Each probe a new question asked before every other: it heads the first page once the inbox has it."""
    probes: list[Probe] = []
    poll_s = args.poll_ms / 1000
    tail = case_state_tail(settings)
    try:
        for n in range(args.probes):
            question = Question(f"probe-{n:03d}", f"probe-{n:03d}", oldest_at - (n + 1) * 1000, "ap")
            seen: dict[str, float] = {}
            started = time.perf_counter()
            publish(kafka, settings, [question])
            while len(seen) < 3:
                if time.perf_counter() - started > args.phase_timeout:
                    raise RuntimeError(f"{question.case_id} not seen in {args.phase_timeout:.0f} s: {seen}")
                if "worker" not in seen:
                    answer = workers[0].http.get(f"/cases/{question.case_id}", timeout=10)
                    if answer.status_code == 200:
                        seen["worker"] = (time.perf_counter() - started) * 1000
                if "topic" not in seen:
                    for record in tail.consume(1000, 0):
                        if record.error() is None and record.key() == question.case_id.encode():
                            seen["topic"] = (time.perf_counter() - started) * 1000
                if "inbox" not in seen:
                    page = inbox.http.get("/", params={"fragment": "list"})
                    if f">{question.reference}</a>" in page.text:
                        seen["inbox"] = (time.perf_counter() - started) * 1000
                time.sleep(poll_s)
            probes.append(Probe(seen["worker"], seen["topic"], seen["inbox"]))
            # A random gap: probes a fixed time apart would meet the inbox's reads (one every 0.2 s) at the
            # same moment of each, and measure that moment rather than the spread of all of them.
            time.sleep(random.uniform(0.3, 0.8))
    finally:
        tail.close()
    return probes


def spread(values: list[float], digits: int = 1) -> str:
    """median and p95."""
    return f"{statistics.median(values):>8.{digits}f} {percentile(values, 0.95):>8.{digits}f}"


# --- the run -------------------------------------------------------------------------------------------
@dataclass
class Results:
    partitions: int
    page_size: int
    starts: list[tuple[float, float]]  # (web server up, ready), seconds
    rss_mb: float
    pages: dict[str, list[float]]  # ms, by page kind
    anchor: list[float]  # ms
    probes: list[Probe]
    loads: list[str]


def run(args: argparse.Namespace) -> int:
    settings = Settings(
        kafka_bootstrap_servers=LOCAL_BROKER,
        offload_topic_prefix=unique_prefix("bench-inbox"),
        offload_worker_api_tokens=SecretStr(secrets.token_hex(24)),
    )
    ensure_topics(settings)
    workdir = Path(tempfile.mkdtemp(prefix="bench-inbox-"))
    loads = [f"before: {load()}"]
    print(f"prefix {settings.offload_topic_prefix}  questions {args.questions:,}  store {args.store}  "
          f"logs {workdir}\n{loads[0]}", flush=True)  # fmt: skip
    workers = [Worker(settings, workdir, name, args.store) for name in ("worker-1", "worker-2")]
    inboxes: list[Inbox] = []
    try:
        results = measure(settings, args, workdir, workers, inboxes)
        results.loads = [*loads, f"after:  {load()}"]
    finally:
        for inbox in inboxes:
            inbox.service.stop()
        for worker in workers:
            worker.service.stop()
        delete_topics_with_prefix(settings)
    report(args, results)
    return 0


def measure(
    settings: Settings, args: argparse.Namespace, workdir: Path, workers: list[Worker], inboxes: list[Inbox]
) -> Results:
    """Every phase; ``inboxes`` gets each inbox started, for the caller to stop."""
    for worker in workers:
        worker.service.start()
    for worker in workers:
        worker.service.wait_http(f"{worker.url}/ready", timeout_s=args.phase_timeout)
    partitions = settings.offload_topic_partitions

    def spread_over_both() -> bool:
        owned = [worker.partitions() for worker in workers]
        return all(owned) and sorted(p for ps in owned for p in ps) == list(range(partitions))

    until(spread_over_both, args.phase_timeout, "the partitions spread over both workers", 0.5)
    print("workers: " + ", ".join(f"{w.url} owns {w.partitions()}" for w in workers), flush=True)

    batch = questions(args.questions, int(time.time() * 1000), int(args.spacing_s * 1000))
    kafka = producer(settings)
    started = time.perf_counter()
    publish(kafka, settings, batch)
    published_s = time.perf_counter() - started
    until(lambda: sum(w.applied() for w in workers) >= args.questions, args.phase_timeout,
          "the workers folding every question")  # fmt: skip
    print(f"published {args.questions:,} webhooks in {published_s:.1f} s; the workers had folded them "
          f"{time.perf_counter() - started:.1f} s after the first was sent", flush=True)  # fmt: skip
    reader = QuestionReader(settings, [worker.url for worker in workers])
    time_listings(reader, args.questions, 1)  # every question is listed; and warm

    starts: list[tuple[float, float]] = []
    rss = 0.0
    for number in range(1, args.inbox_starts + 1):
        if inboxes:
            inboxes[-1].service.stop()
        inbox = Inbox(settings, workdir, workers, number)
        inboxes.append(inbox)
        up, ready = inbox.start(args.phase_timeout)
        until(lambda: inbox.waiting() == args.questions, 30, "the ready inbox holding every question", 0.05)  # noqa: B023
        rss, _ = rss_mb(inbox.service.pid)
        starts.append((up, ready))
        print(f"inbox start {number}: web server up after {up:.1f} s, ready after {ready:.1f} s "
              f"(topics read in {ready - up:.1f} s), RSS {rss:.0f} MB", flush=True)  # fmt: skip
    inbox = inboxes[-1]

    size = settings.offload_inbox_page_size
    kinds = page_kinds(batch, size, int(time.time() * 1000))
    pages: dict[str, list[float]] = {kind.label: [] for kind in kinds}
    anchor: list[float] = []
    for kind in kinds:
        time_pages(inbox, kind, 5)  # warm: the first requests of a process fill its caches
    for number in range(1, args.runs + 1):
        for kind in kinds:
            pages[kind.label] += time_pages(inbox, kind, args.requests)
        anchor += time_listings(reader, args.questions, args.listings)
        medians = [f"{label} {statistics.median(ms[-args.requests :]):.1f}" for label, ms in pages.items()]
        print(f"run {number} (median ms): {', '.join(medians)}; "
              f"workers' listing {statistics.median(anchor[-args.listings :]):.0f}", flush=True)  # fmt: skip

    oldest_at = min(q.asked_at for q in batch)
    probes = staleness(kafka, settings, inbox, workers, oldest_at, args)
    return Results(partitions, size, starts, rss, pages, anchor, probes, [])


def report(args: argparse.Namespace, results: Results) -> None:
    anchor = statistics.median(results.anchor)
    print()
    print(f"{args.questions:,} waiting questions, 2 workers ({results.partitions} partitions, no standby, "
          f"{args.store}); inbox pages of {results.page_size}")  # fmt: skip
    print(f"{'':36}{'median':>8} {'p95':>8}  ms   ({args.runs} runs)")
    for label, samples in results.pages.items():
        faster = anchor / statistics.median(samples)
        print(f"inbox GET / {label:<24}{spread(samples)}      {len(samples)} requests; "
              f"anchor / page {faster:,.0f}x")  # fmt: skip
    print(f"{'anchor: QuestionReader.listing()':<36}{spread(results.anchor, 0)}      "
          f"{len(results.anchor)} listings of {args.questions:,} from both workers")  # fmt: skip
    worst = max(percentile(samples, 0.95) for samples in results.pages.values())
    print(f"goal: a page in <= 300 ms: {'met' if worst <= 300 else 'NOT met'} (worst p95 {worst:.1f} ms)")
    ups, readies = [up for up, _ in results.starts], [ready for _, ready in results.starts]
    print(f"inbox ready after {statistics.median(readies):.1f} s (median of {len(readies)} starts, "
          f"{min(readies):.1f}-{max(readies):.1f}); web server up after {statistics.median(ups):.1f} s; "
          f"RSS {results.rss_mb:.0f} MB")  # fmt: skip
    inbox_ms = [probe.inbox_ms for probe in results.probes]
    worker_ms = [probe.worker_ms for probe in results.probes]
    print(f"{'staleness: produce -> inbox list':<36}{spread(inbox_ms, 0)}      "
          f"{len(inbox_ms)} probes, polled every {args.poll_ms} ms")  # fmt: skip
    topic_ms = [probe.topic_ms for probe in results.probes]
    print(f"{'  of which -> worker GET /cases':<36}{spread(worker_ms, 0)}      the fold")
    print(f"{'  of which -> case-state readable':<36}{spread(topic_ms, 0)}      the fold's batch published")
    print(f"machine {results.loads[0]}; {results.loads[1]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=10_000, help="waiting questions, one case each")
    parser.add_argument("--spacing-s", type=float, default=25.0, help="seconds between two questions' times")
    parser.add_argument(
        "--store", default=Settings().offload_worker_store, choices=["memory://", "rocksdb://"],
        help="the workers' table store (default: the settings' default)",
    )  # fmt: skip
    parser.add_argument("--inbox-starts", type=int, default=3, help="inbox starts timed until /ready")
    parser.add_argument("--runs", type=int, default=3, help="runs of the pages and the anchor, alternately")
    parser.add_argument("--requests", type=int, default=100, help="GETs of each page kind per run")
    parser.add_argument("--listings", type=int, default=5, help="anchor listings per run")
    parser.add_argument("--probes", type=int, default=20, help="new questions timed to the inbox's list")
    parser.add_argument("--poll-ms", type=int, default=20, help="how often a probe's visibility is polled")
    parser.add_argument("--phase-timeout", type=float, default=300.0, help="deadline of each phase, s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
