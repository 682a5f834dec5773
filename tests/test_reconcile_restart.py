"""A restarted worker gets its table back from the changelog, not through the state agent: its reconciler
indexes the open cases of that table once the recovery is done, and reconciles them."""

from __future__ import annotations

from pathlib import Path

from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import simulator_process
from tests.streams_support import Worker, event_body, publish_webhook, running_workers
from tests.test_case_requests_worker import with_offload


def test_a_restarted_worker_reconciles_the_open_cases_its_table_recovered(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "50") as sim:
        sim.set_faults(webhook_drop_rate=1.0)
        case_id = sim.create_case(scenario="fail_bounced")
        truth = sim.wait_for_truth(case_id, lambda truth: truth["status"] == "FAILED")
        # What we heard before Offload's webhooks were lost: an old question, open.
        question = event_body(case_id, "case.input_needed", 1_000, "INPUT_NEEDED", inputRequest="PDF fine?",
                              inputRequestId="ir-1", inputRequestedAt=1_000)  # fmt: skip
        publish_webhook(topics, question)
        # A case long finished that Offload no longer knows: asking about it would count not_found.
        publish_webhook(topics, event_body("finished-1", "case.completed", 1_000, "COMPLETED"))

        # The first run folds both, scheduling the open case's check 2 s after its event (it waits for an
        # answer: a safety check); its reconciler looks for due cases only after an hour, so never meanwhile.
        quiet = with_offload(
            topics, sim.base_url, offload_reconcile_interval_s=3600.0, offload_reconcile_safety_interval_s=2.0
        )
        first = Worker(quiet, tmp_path, name="first")
        with running_workers(first):
            first.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
            first.wait_case("finished-1", lambda state: state["status"] == "COMPLETED")

        # The same member again (same URL), now looking every second: the schedule it recovered with the
        # table says the case is due.
        sweeping = with_offload(
            topics, sim.base_url, offload_reconcile_interval_s=1.0, offload_reconcile_safety_interval_s=2.0
        )
        again = Worker(sweeping, tmp_path, name="again", port=first.port)
        with running_workers(again):
            state = again.wait_case(case_id, lambda state: state["status"] == "FAILED")
            assert state["lastEventId"] == f"evt_{case_id}_case_failed_{truth['updatedAt']}"
            stats = again.reconcile_stats()
            assert stats["published"] == 1 and stats["not_found"] == 0 and stats["failed"] == 0, stats
            # Indexed when the recovery completed, from the table it recovered: the open case only.
            assert again.service.log_path is not None
            assert "reconcile: indexed 1 open case(s)" in again.service.log_path.read_text()
