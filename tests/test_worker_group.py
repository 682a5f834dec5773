"""Several workers as real processes in one consumer group: routing, a worker killed, a worker restarted."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from offload_bridge.kafka.connection import admin_for
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.settings import Settings
from tests.streams_support import (
    Worker,
    cases_on_every_partition,
    event_body,
    publish_webhook,
    running_workers,
    wait_for_spread,
)

TAKEOVER_S = 30.0  # a SIGKILLed worker's cases are served by the others within this
RESTART_S = 20.0  # a SIGKILLed worker restarted as itself serves again within this


def question(case_id: str, n: int) -> bytes:
    return event_body(case_id, "case.input_needed", 1_000 + n, "INPUT_NEEDED", inputRequest=f"Q{n}?",
                      inputRequestId=f"ir-{n}", inputRequestStatus="PENDING")  # fmt: skip


def completion(case_id: str, n: int) -> bytes:
    return event_body(case_id, "case.completed", 5_000 + n, "COMPLETED", resultStatus="goal_achieved",
                      result={"n": n})  # fmt: skip


def equals(want: dict[str, Any]) -> Callable[[dict[str, Any]], bool]:
    return lambda answer: answer == want


def wait_all_equal(workers: list[Worker], expected: dict[str, dict[str, Any]], deadline: float) -> None:
    """Every worker answers every case with exactly the expected state before ``deadline``."""
    for case_id, state in expected.items():
        for worker in workers:
            worker.wait_case(
                case_id,
                equals(state),
                timeout_s=max(deadline - time.monotonic(), 0.5),
            )


def test_three_workers_answer_for_every_case_and_take_over_from_a_killed_one(
    topics: Settings, tmp_path: Path
) -> None:
    # No standby copies: a worker holds only its own partitions, so every other answer is routed.
    settings = topics.model_copy(update={"offload_worker_standby_replicas": 0})
    partitions = settings.offload_topic_partitions
    workers = [Worker(settings, tmp_path, name=f"w{n}") for n in range(3)]
    cases = cases_on_every_partition("case-trio", partitions)
    assert {partition_for(case, partitions) for case in cases} == set(range(partitions))
    with running_workers(*workers):
        owned = wait_for_spread(workers, partitions)
        owner_of = {partition: worker for worker in workers for partition in owned[worker.url]}

        # Two events per case: answers must show the owner's current state, not the first one.
        for n, case in enumerate(cases):
            assert publish_webhook(settings, question(case, n))[0] == partition_for(case, partitions)
        for n, case in enumerate(cases):
            publish_webhook(settings, completion(case, n))
        current: dict[str, dict[str, Any]] = {}
        for n, case in enumerate(cases):
            owner = owner_of[partition_for(case, partitions)]
            current[case] = owner.wait_case(case, lambda state: state["eventCount"] == 2)
            assert current[case]["status"] == "COMPLETED"
            assert current[case]["result"] == {"n": n}
        for case, state in current.items():
            for worker in workers:
                answer = worker.get_case(case)
                assert answer.status_code == 200, f"{worker.url} for {case}: {answer.text}"
                assert answer.json()["data"] == state, f"{worker.url} for {case}"

        victim, survivors = workers[0], workers[1:]
        orphaned = [case for case in cases if partition_for(case, partitions) in owned[victim.url]]
        assert orphaned, "the killed worker owned cases"
        victim.service.kill()
        killed_at = time.monotonic()
        wait_all_equal(survivors, current, deadline=killed_at + TAKEOVER_S)
        took = time.monotonic() - killed_at
        assert took <= TAKEOVER_S, f"the survivors took {took:.1f} s"
        # The survivors own everything between them and fold new events of the orphaned cases.
        wait_for_spread(survivors, partitions, timeout_s=10)
        publish_webhook(settings, event_body(orphaned[0], "case.archived", 9_000, "COMPLETED"))
        for worker in survivors:
            worker.wait_case(orphaned[0], lambda state: state["eventCount"] == 3, timeout_s=30)
        print(f"the survivors answered for every case {took:.1f} s after the SIGKILL")


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_worker_restarted_after_sigkill_answers_within_seconds(
    topics: Settings, tmp_path: Path, store: str
) -> None:
    if store.startswith("rocksdb"):
        pytest.importorskip("rocksdict", reason="rocksdict comes with pip install 'offload-bridge[server]'")
    # A session of 45 s: a worker that had to wait out its predecessor's session could not serve within
    # RESTART_S, however loaded the machine (the test suite runs beside it).
    settings = topics.model_copy(
        update={
            "offload_worker_store": store, "offload_worker_instance_id": "restart-me",
            "offload_worker_session_timeout_s": 45.0,
        }
    )  # fmt: skip
    cases = cases_on_every_partition("case-restart", settings.offload_topic_partitions, per_partition=1)
    first = Worker(settings, tmp_path, name="worker")
    with running_workers(first):
        for n, case in enumerate(cases):
            publish_webhook(settings, question(case, n))
        before = {case: first.wait_case(case, lambda state: state["eventCount"] == 1) for case in cases}
        first.service.kill()

    # Same port, data directory and instance id. The deadline is shorter than the session timeout:
    # only rejoining as the same static member gets the partitions back this fast.
    assert settings.offload_worker_session_timeout_s > RESTART_S
    again = Worker(settings, tmp_path, name="worker", port=first.port)
    try:
        started = time.monotonic()
        again.start(wait=False)
        for case, state in before.items():
            again.wait_case(
                case, equals(state),
                timeout_s=max(started + RESTART_S - time.monotonic(), 0.5),
            )  # fmt: skip
        took = time.monotonic() - started
        assert took <= RESTART_S, f"the restarted worker took {took:.1f} s"
        # The broker knows the worker by the configured group.instance.id, and by nothing else.
        admin = admin_for(settings)
        try:
            group = admin.describe_groups([settings.worker_app_id])[settings.worker_app_id]
        finally:
            admin.close()
        assert [member["group_instance_id"] for member in group["members"]] == ["restart-me"], group
    finally:
        again.service.stop()
    print(f"restarted worker ({store}) answered for every case after {took:.1f} s")
