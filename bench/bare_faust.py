"""The framework's own ceiling: a Faust agent that iterates ``case-events`` and does nothing else.

Run as a child process by the benchmarks (``python -m bench.bare_faust PREFIX EXPECTED``). Two builds of the
app, which ``bench.state`` measures side by side:

- built like the worker (the default): the worker's Faust options (``streams.app.faust_app_options``), its
  web server without Faust's views, and the handover workarounds (``streams.handover``);
- ``--faust-defaults``: Faust's defaults for everything but what it needs to run here at all (the broker,
  the data directory, the web server's address, no module scan).

``--without NAME`` (repeatable) leaves one of the worker's choices at Faust's default, to find what a
difference between the two costs. Either way the app runs as the worker runs it
(``streams.worker.run_faust_app``), under its own app id (``--run`` tells runs apart), so it reads the topic
from the beginning in a group of its own. ``--table`` also writes one table key per event (Faust's own
changelog path), the cost a naive fold pays.

It prints one JSON line, ``{"events": N, "seconds": S, "rate": R, "cpu_seconds": C}``, measured from the
first event to the EXPECTED-th (C: the CPU time of the whole process, every thread, meanwhile), and then
waits to be stopped by the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import faust

from offload_bridge.kafka.faust_topics import faust_topic
from offload_bridge.settings import Settings
from offload_bridge.streams import handover
from offload_bridge.streams.app import faust_app_options
from offload_bridge.streams.web_access import serve_only_our_views
from offload_bridge.streams.worker import run_faust_app
from offload_bridge.testing import free_port
from offload_bridge.topics import CASE_EVENTS

RESULT_PREFIX = "bare-faust-result "
# What the app needs to run here at all; every other option of the worker's is a choice.
ESSENTIAL = (
    "broker", "broker_credentials", "datadir", "web_bind", "web_host", "web_port", "canonical_url",
    "autodiscover",
)  # fmt: skip
# What the worker does to its app besides its options (streams.app.create_app).
WORKER_STEPS = ("blueprints", "handover")


def worker_choices(settings: Settings) -> list[str]:
    """The names ``--without`` takes: the worker's options but the essential ones, and its extra steps."""
    return [name for name in faust_app_options(settings) if name not in ESSENTIAL] + list(WORKER_STEPS)


def create_app(settings: Settings, without: set[str]) -> faust.App:
    """The worker's app, less the choices named in ``without`` (left at Faust's defaults)."""
    options = {name: value for name, value in faust_app_options(settings).items() if name not in without}
    app = faust.App(settings.worker_app_id, **options)
    if "blueprints" not in without:
        serve_only_our_views(app)
    if "handover" not in without:
        handover.install(app)
    return app


def build(settings: Settings, expected: int, with_table: bool, without: set[str]) -> faust.App:
    app = create_app(settings, without)
    topic = faust_topic(app, CASE_EVENTS, settings)
    table: Any = None
    if with_table:  # the bare agent has no table: nothing to recover, no changelog to consume
        table = app.Table(
            "bare", partitions=settings.offload_topic_partitions, key_type=bytes, value_type=bytes
        )
        table.key_serializer = table.value_serializer = "raw"
    seen = 0
    first = first_cpu = 0.0

    @app.agent(topic, name="bare", concurrency=1)
    async def iterate(stream: Any) -> None:
        nonlocal seen, first, first_cpu
        async for event in stream.events():
            if seen == 0:
                first, first_cpu = time.perf_counter(), time.process_time()
            seen += 1
            if with_table:
                table[event.key] = event.value
            if seen == expected:
                elapsed = time.perf_counter() - first
                rate = (expected - 1) / elapsed if elapsed > 0 else 0.0
                cpu_seconds = time.process_time() - first_cpu
                result = {"events": expected, "seconds": elapsed, "rate": rate, "cpu_seconds": cpu_seconds}
                # Straight to the descriptor: with Faust's default, print() would go to its logger.
                os.write(1, (RESULT_PREFIX + json.dumps(result) + "\n").encode())

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("prefix", help="OFFLOAD_TOPIC_PREFIX of the pre-filled case-events topic")
    parser.add_argument("expected", type=int, help="events to read before printing the rate")
    parser.add_argument("--table", action="store_true", help="write one table key per event")
    parser.add_argument("--faust-defaults", action="store_true", help="leave every choice to Faust")
    parser.add_argument("--without", action="append", default=[], metavar="NAME", help="one choice to drop")
    parser.add_argument("--run", default="1", help="tells the runs apart (part of the app id)")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    build_name = "defaults" if args.faust_defaults else "worker"
    agent = "table" if args.table else "iterate"
    settings = Settings(
        kafka_bootstrap_servers=args.bootstrap,
        offload_topic_prefix=args.prefix,
        offload_worker_app_id=f"{args.prefix}bare-{build_name}-{agent}-{args.run}",
        offload_worker_data_dir=args.data_dir,
        offload_worker_web_port=free_port(),
        offload_worker_log_level="warning",
    )
    choices = worker_choices(settings)
    unknown = sorted(set(args.without) - set(choices))
    if unknown:
        parser.error(f"--without takes {', '.join(choices)}; not {', '.join(unknown)}")
    without = set(choices) if args.faust_defaults else set(args.without)
    # Faust creates only the last level of its data directory.
    settings.worker_data_path.parent.mkdir(parents=True, exist_ok=True)
    app = build(settings, args.expected, args.table, without)
    return run_faust_app(app, settings)


if __name__ == "__main__":
    sys.exit(main())
