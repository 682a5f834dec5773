"""The reconcile schedule is kept with the case in the table: a worker killed after checking a case and
restarted goes on with the schedule it recovered, instead of asking Offload about every case again.
Real processes: the simulator, the broker, the worker (SIGKILLed)."""

from __future__ import annotations

import time
from pathlib import Path

from offload_bridge.schemas.offload_case import OffloadCase
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import simulator_process
from offload_bridge.streams.reconcile.diff import synthesize
from offload_bridge.topics import CASE_STATE
from tests.ingress_support import read_topic
from tests.streams_support import Worker, publish_webhook, running_workers, wait_for
from tests.test_case_requests_worker import with_offload


def test_a_case_checked_before_a_sigkill_waits_for_its_recovered_schedule_after_the_restart(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "50") as sim:
        case_id = sim.create_case(scenario="input_then_complete")
        truth = sim.wait_for_truth(case_id, lambda truth: truth["status"] == "INPUT_NEEDED")
        # The webhook Offload sent for this update: our state will be level with Offload's.
        event = synthesize(OffloadCase.model_validate(truth))
        assert event is not None
        publish_webhook(topics, event.body)
        # First check 1 s after the event; a quiet one pushes the next 100 s away. (The backoff alone: with
        # the hints, a case waiting for our answer would get only the safety checks.)
        settings = with_offload(
            topics, sim.base_url, offload_reconcile_interval_s=0.3, offload_reconcile_stale_s=1.0,
            offload_reconcile_backoff_factor=100.0, offload_reconcile_jitter=0.0,
            offload_reconcile_hints=False,
        )  # fmt: skip
        first = Worker(settings, tmp_path, name="first")
        with running_workers(first):
            first.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
            wait_for(lambda: first.reconcile_stats()["checked"] == 1)
            assert first.reconcile_stats()["level"] == 1
            time.sleep(1.0)  # the schedule's write is in the next batch (50 ms)
            first.service.kill()
        # Downstream readers see the state change, never the schedule's: one case-state record.
        assert [record.key for record in read_topic(topics, CASE_STATE)] == [case_id.encode()]

        again = Worker(settings, tmp_path, name="first", port=first.port)
        with running_workers(again):
            wait_for(lambda: again.reconcile_stats()["scheduled"] == 1)
            # Due 100 s after the check, as recovered: not asked again now. A schedule lost with the
            # process would make the case due 1 s after its event, long past.
            time.sleep(3.0)
            stats = again.reconcile_stats()
            assert stats["checked"] == 0 and stats["due"] == 0, stats
