"""Benchmark of ``offload-bridge export`` against a raw consumer draining the same topic in the same run.

1. Pre-fill ``case-events`` of a fresh topic prefix with EVENTS webhook events over CASES cases, as the
   ingress writes them (body, key caseId, headers), with librdkafka's producer.
2. Anchors: a raw librdkafka consumer (confluent-kafka, the exporter's library) assigned every partition,
   reading from the oldest record to the end without looking at a record; and the same drain with aiokafka,
   the other client the project uses, which is why the exporter reads with librdkafka.
3. Export: an ``Exporter`` in its own consumer group writes the topic to Parquet in a fresh directory, to
   the end offsets and exits, as ``offload-bridge export --to DIR`` does (default OFFLOAD_EXPORT_ROLL_ROWS,
   group join and commits included, Arrow's memory from the C library's allocator as the command sets it;
   ``--allocator mimalloc`` keeps pyarrow's default). The questions and cases snapshots are timed apart
   (DuckDB, once).
4. RUNS runs of each, interleaved; medians, the ratio (goal: export >= 0.25x the raw drain), and the
   Parquet bytes per million events. Also the memory a buffered event row takes (Arrow's allocations and
   the dedup hash), which bounds OFFLOAD_EXPORT_ROLL_ROWS.

Only targets 127.0.0.1; every phase has a deadline. Run: ``.venv/bin/python -m bench.export``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import pyarrow as pa
from aiokafka import AIOKafkaConsumer
from aiokafka import TopicPartition as AioPartition
from confluent_kafka import Consumer, Producer, TopicPartition

from bench.state import make_event
from offload_bridge.analytics.files import Target
from offload_bridge.analytics.tables import EVENTS
from offload_bridge.export.batch import Records, read_records
from offload_bridge.export.buffer import PartitionBuffer
from offload_bridge.export.exporter import Exporter, consumer_config, use_system_allocator
from offload_bridge.kafka.admin import ensure_topics
from offload_bridge.kafka.connection import aiokafka_options, librdkafka_options
from offload_bridge.settings import Settings
from offload_bridge.testing import delete_topics_with_prefix, unique_group, unique_prefix
from offload_bridge.topics import CASE_EVENTS, topic_name

LOCAL_BROKER = "127.0.0.1:9092"
DEADLINE_S = 300.0


def prefill(settings: Settings, events: int, cases: int) -> float:
    """Produce the events (acks=all, Kafka's default partitioner); returns the seconds it took."""
    producer = Producer({
        **librdkafka_options(settings), "bootstrap.servers": settings.bootstrap_servers, "acks": "all",
        "enable.idempotence": True, "linger.ms": 20, "partitioner": "murmur2_random",
    })  # fmt: skip
    topic = topic_name(CASE_EVENTS, settings)
    started = time.perf_counter()
    for n in range(events):
        case_id = f"case-{n % cases:05d}"
        event = make_event(case_id, 1_774_000_000_000 + n * 1000, n // cases)
        while True:
            try:
                producer.produce(topic, event.body, key=case_id.encode(), headers=list(event.headers))
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("the producer did not deliver every event within 60 s")
    return time.perf_counter() - started


def raw_drain(settings: Settings, expected: int) -> float:
    """Events/s of a librdkafka consumer reading the whole topic: no group, no parsing."""
    topic = topic_name(CASE_EVENTS, settings)
    # The exporter's own configuration (fetch settings included), outside any group.
    consumer = Consumer(consumer_config(settings, **{"group.id": unique_group("bench-raw")}))
    try:
        started = time.perf_counter()
        consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.offload_topic_partitions)])
        seen = 0
        while seen < expected:
            if time.perf_counter() - started > DEADLINE_S:
                raise RuntimeError(f"raw consumer read only {seen}/{expected} events")
            seen += len(consumer.consume(5000, 0.5))
        return seen / (time.perf_counter() - started)
    finally:
        consumer.close()


async def aiokafka_drain(settings: Settings, expected: int) -> float:
    """Events/s of an aiokafka consumer reading the whole topic: no group, no parsing."""
    topic = topic_name(CASE_EVENTS, settings)
    consumer = AIOKafkaConsumer(**aiokafka_options(settings), enable_auto_commit=False)
    started = time.perf_counter()
    await consumer.start()
    try:
        partitions = [AioPartition(topic, p) for p in range(settings.offload_topic_partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen = 0
        while seen < expected:
            if time.perf_counter() - started > DEADLINE_S:
                raise RuntimeError(f"aiokafka read only {seen}/{expected} events")
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            seen += sum(len(records) for records in batches.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def export(settings: Settings, directory: Path, expected: int) -> tuple[float, int]:
    """(rows/s, Parquet bytes) of one export of the topic into an empty directory, in a group of its own."""
    shutil.rmtree(directory, ignore_errors=True)
    grouped = settings.model_copy(update={"offload_export_group": unique_group("bench-export")})
    started = time.perf_counter()
    summary = Exporter(grouped, Target.parse(str(directory)), snapshot=lambda target: {}).run()
    elapsed = time.perf_counter() - started
    rows = summary.rows.get("events", 0)
    if rows != expected:
        raise RuntimeError(f"export wrote {rows} rows, expected {expected}")
    size = sum(path.stat().st_size for path in (directory / "events").rglob("*.parquet"))
    return rows / elapsed, size


def snapshot_seconds(directory: Path) -> tuple[float, dict[str, int]]:
    from offload_bridge.analytics.derive import write_snapshots

    started = time.perf_counter()
    counts = write_snapshots(Target.parse(str(directory)))
    return time.perf_counter() - started, counts


def buffered_row_bytes(rows: int = 20_000, batch: int = 5000) -> float:
    """Memory one buffered events row takes: its columns in Arrow's memory and its dedup hash in Python's."""
    events = [make_event(f"case-{n % 2000:05d}", 1_774_000_000_000 + n, n // 2000) for n in range(rows)]
    batches = [
        Records(
            [0] * len(chunk), list(range(lo, lo + len(chunk))), [event.body for event in chunk],
            [event.headers for event in chunk], [0] * len(chunk),
        )
        for lo in range(0, rows, batch)
        for chunk in [events[lo : lo + batch]]
    ]  # fmt: skip
    del events
    tracemalloc.start()
    arrow_before, (python_before, _) = pa.total_allocated_bytes(), tracemalloc.get_traced_memory()
    buffer = PartitionBuffer(EVENTS, "t", 0, 0)
    for records in batches:
        buffer.add(records.offsets[0], records.offsets[-1] + 1, read_records(EVENTS, records).table)
    arrow_after, (python_after, _) = pa.total_allocated_bytes(), tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert buffer.rows == rows
    return (arrow_after - arrow_before + python_after - python_before) / rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--cases", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--allocator", choices=("system", "mimalloc"), default="system",
        help="Arrow's allocator: the C library's, as offload-bridge export sets it, or pyarrow's default",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.allocator == "system":
        use_system_allocator()
    settings = Settings(
        kafka_bootstrap_servers=LOCAL_BROKER, offload_topic_prefix=unique_prefix("bench-export")
    )
    ensure_topics(settings)
    workdir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        print(f"prefix {settings.offload_topic_prefix}  events {args.events}  cases {args.cases}", flush=True)
        fill_s = prefill(settings, args.events, args.cases)
        print(f"pre-fill: {args.events} events in {fill_s:.1f}s ({args.events / fill_s:,.0f}/s)", flush=True)
        raw: list[float] = []
        aio: list[float] = []
        exported: list[float] = []
        size = 0
        for run in range(1, args.runs + 1):
            raw.append(raw_drain(settings, args.events))
            aio.append(asyncio.run(aiokafka_drain(settings, args.events)))
            rate, size = export(settings, workdir / "tables", args.events)
            exported.append(rate)
            print(f"run {run}: raw librdkafka {raw[-1]:,.0f}/s  raw aiokafka {aio[-1]:,.0f}/s  "
                  f"export {rate:,.0f} rows/s", flush=True)  # fmt: skip
        snap_s, counts = snapshot_seconds(workdir / "tables")
        anchor, export_rate = statistics.median(raw), statistics.median(exported)
        print()
        print(f"export               {export_rate:>10,.0f} rows/s (median of {args.runs})")
        print(f"raw drain librdkafka {anchor:>10,.0f} events/s (median of {args.runs}, the anchor)")
        print(f"raw drain aiokafka   {statistics.median(aio):>10,.0f} events/s (median of {args.runs})")
        print(f"ratio to raw         {export_rate / anchor:>10.2f}x   (goal >= 0.25x)")
        print(f"parquet              {size * 1_000_000 / args.events / 2**20:>10.1f} MiB per million events")
        print(f"buffered row         {buffered_row_bytes():>10,.0f} bytes in memory (events)")
        print(f"snapshots            {snap_s:>10.1f} s for {counts}")
        return 0
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        delete_topics_with_prefix(settings)


if __name__ == "__main__":
    sys.exit(main())
