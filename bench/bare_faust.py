"""The framework's own ceiling: a Faust agent that iterates ``case-events`` and does nothing else.

Run as a child process by the benchmarks (``python -m bench.bare_faust PREFIX EXPECTED``): the app is built
exactly like the worker's (``create_faust_app``: same broker settings, raw serializers, one actor), under
its own app id so it reads the topic from the beginning in a group of its own. ``--table`` also writes one
table key per event (Faust's own changelog path), the cost a naive fold pays.

It prints one JSON line, ``{"events": N, "seconds": S, "rate": R}``, measured from the first event to the
EXPECTED-th, and then waits to be stopped by the parent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import faust

from offload_bridge.kafka.faust_topics import faust_topic
from offload_bridge.settings import Settings
from offload_bridge.streams.app import create_faust_app
from offload_bridge.streams.worker import run_faust_app
from offload_bridge.testing import free_port
from offload_bridge.topics import CASE_EVENTS

RESULT_PREFIX = "bare-faust-result "


def build(settings: Settings, expected: int, with_table: bool) -> faust.App:
    app = create_faust_app(settings)
    topic = faust_topic(app, CASE_EVENTS, settings)
    table: Any = None
    if with_table:  # the bare agent has no table: nothing to recover, no changelog to consume
        table = app.Table(
            "bare", partitions=settings.offload_topic_partitions, key_type=bytes, value_type=bytes
        )
        table.key_serializer = table.value_serializer = "raw"
    seen = 0
    first = 0.0

    @app.agent(topic, name="bare", concurrency=1)
    async def iterate(stream: Any) -> None:
        nonlocal seen, first
        async for event in stream.events():
            if seen == 0:
                first = time.perf_counter()
            seen += 1
            if with_table:
                table[event.key] = event.value
            if seen == expected:
                elapsed = time.perf_counter() - first
                rate = (expected - 1) / elapsed if elapsed > 0 else 0.0
                result = {"events": expected, "seconds": elapsed, "rate": rate}
                print(RESULT_PREFIX + json.dumps(result), flush=True)

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prefix", help="OFFLOAD_TOPIC_PREFIX of the pre-filled case-events topic")
    parser.add_argument("expected", type=int, help="events to read before printing the rate")
    parser.add_argument("--table", action="store_true", help="write one table key per event")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    settings = Settings(
        kafka_bootstrap_servers=args.bootstrap,
        offload_topic_prefix=args.prefix,
        offload_worker_app_id=f"{args.prefix}bare-{'table' if args.table else 'iterate'}",
        offload_worker_data_dir=args.data_dir,
        offload_worker_web_port=free_port(),
        offload_worker_log_level="warning",
    )
    # Faust creates only the last level of its data directory.
    settings.worker_data_path.parent.mkdir(parents=True, exist_ok=True)
    app = build(settings, args.expected, args.table)
    return run_faust_app(app, settings)


if __name__ == "__main__":
    sys.exit(main())
