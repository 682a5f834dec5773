"""``offload-bridge reconcile [--case ID | --all-open] [--dry-run]``: reconcile now, without a worker.

Our latest state of each case is read from the compacted ``case-state`` topic; Offload is asked at most
OFFLOAD_RECONCILE_RPS times a second; where it is ahead, the synthesized event goes to ``case-events``
(acks=all) for the worker to fold. One line per case says what changed.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import TYPE_CHECKING

from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands
    from offload_bridge.schemas.case_state import CaseState

EXIT_OK = 0
EXIT_PROBLEMS = 1  # some case could not be checked (404, 403, throttled, unusable answer)


def read_case_states(settings: Settings, timeout_s: float = 60.0) -> dict[str, CaseState]:
    """The latest CaseState of every case on ``case-state``, read up to its current end."""
    from pydantic import ValidationError

    from offload_bridge.kafka.reading import read_topic
    from offload_bridge.schemas.case_state import CaseState
    from offload_bridge.topics import CASE_STATE, topic_name

    states: dict[str, CaseState] = {}
    for record in read_topic(settings, topic_name(CASE_STATE, settings), timeout_s=timeout_s):
        if record.key is None:
            continue
        case_id = record.key.decode(errors="replace")
        if record.value is None:
            states.pop(case_id, None)
            continue
        try:
            states[case_id] = CaseState.model_validate_json(record.value)
        except ValidationError:
            continue
    return states


async def reconcile_cases(
    settings: Settings, case_ids: list[str], states: dict[str, CaseState], dry_run: bool
) -> int:
    from offload_bridge.kafka.connection import kafka_producer
    from offload_bridge.schemas.answers import now_ms
    from offload_bridge.streams.offload_api import OffloadApi
    from offload_bridge.streams.ratelimit import TokenBucket
    from offload_bridge.streams.reconcile.diff import SOURCE_RECONCILER, decide_reconcile
    from offload_bridge.streams.reconcile.fetch import FetchKind, fetch_case
    from offload_bridge.topics import CASE_EVENTS, topic_name

    api = OffloadApi(settings)
    bucket = TokenBucket(settings.offload_reconcile_rps)
    producer = None
    if not dry_run:
        producer = kafka_producer(settings, enable_idempotence=True, client_id="offload-bridge-reconcile")
    problems = published = 0
    try:
        for case_id in case_ids:
            await bucket.take()
            fetched = await fetch_case(api, case_id)
            if fetched.kind is not FetchKind.OK or fetched.case is None:
                problems += 1
                print(f"{case_id}: {fetched.describe()}", flush=True)
                continue
            comparison = decide_reconcile(states.get(case_id), fetched.case)
            event = comparison.event
            if event is not None and producer is not None:
                future = producer.send(
                    topic_name(CASE_EVENTS, settings),
                    key=case_id.encode(),
                    value=event.body,
                    headers=event.headers(now_ms(), SOURCE_RECONCILER),
                )
                future.get(timeout=30)
                published += 1
            line = comparison.describe(case_id)
            print(line.replace("published", "would publish") if dry_run else line, flush=True)
    finally:
        await api.aclose()
        if producer is not None:
            producer.close()
    print(f"{len(case_ids)} checked, {published} event(s) published, {problems} problem(s)")
    return EXIT_PROBLEMS if problems else EXIT_OK


def cmd_reconcile(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge.schemas.events import TERMINAL_STATUSES

    states = read_case_states(settings)
    if args.case:
        case_ids = list(args.case)
    else:
        case_ids = sorted(cid for cid, state in states.items() if state.status not in TERMINAL_STATUSES)
    return asyncio.run(reconcile_cases(settings, case_ids, states, args.dry_run))


def register(commands: Subcommands) -> None:
    reconcile = commands.add_parser(
        "reconcile", help="ask Offload about cases now and publish what our state missed to case-events"
    )
    which = reconcile.add_mutually_exclusive_group(required=True)
    which.add_argument("--case", action="append", metavar="ID", help="this case (repeatable)")
    which.add_argument("--all-open", action="store_true", help="every case case-state shows open")
    reconcile.add_argument("--dry-run", action="store_true", help="print what would change, publish nothing")
    reconcile.set_defaults(handler=cmd_reconcile)
