"""A case created outside the bridge, whose webhooks never arrive: once tracked through ``case-watch``, the
worker fetches it at once, keeps it on its schedule, and ends equal to Offload's truth. Real processes."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.case_watch import CaseWatcher
from offload_bridge.kafka.connection import kafka_producer
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import simulator_process
from offload_bridge.topics import CASE_WATCH, CASE_WATCH_DLQ, topic_name
from tests.ingress_support import read_topic
from tests.streams_support import Worker, running_workers, wait_for
from tests.test_case_requests_worker import with_offload

# Short waits so that the schedule, not the test's patience, is what is exercised.
FAST = {
    "offload_reconcile_interval_s": 0.3,
    "offload_reconcile_stale_s": 1.0,
    "offload_reconcile_max_interval_s": 2.0,
    "offload_reconcile_after_answer_s": 0.2,
    "offload_reconcile_after_next_action_s": 0.2,
    "offload_reconcile_jitter": 0.0,
}


def test_a_case_created_elsewhere_and_tracked_is_known_at_once_and_repaired_without_webhooks(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "400") as sim:
        # Created directly at Offload, with no webhook ever reaching the bridge.
        case_id = sim.create_case(scenario="input_then_complete")
        truth = sim.wait_for_truth(case_id, lambda truth: truth["status"] == "INPUT_NEEDED")
        worker = Worker(with_offload(topics, sim.base_url, **FAST), tmp_path)
        with running_workers(worker):
            assert worker.get_case(case_id).status_code == 404  # nobody told the bridge
            with CaseWatcher(topics) as watcher:
                watcher.track(case_id, requested_by="finance-ops")
            state = worker.wait_case(case_id, lambda state: state["status"] == "INPUT_NEEDED")
            assert state["inputRequest"]["id"] == truth["inputRequest"]["id"]
            assert state["lastEventAt"] == truth["updatedAt"]

            # Answered: Offload moves on (RUNNING, then COMPLETED), and tells nobody; the schedule finds out.
            with AnswerSubmitter(topics) as answers:
                answer_id = answers.publish(case_id, truth["inputRequest"]["id"], "A signed PDF is fine.")
                assert answers.wait_for_outcome(answer_id, timeout_s=60).outcome == "accepted"
            done = sim.wait_for_truth(case_id, lambda truth: truth["status"] == "COMPLETED")
            state = worker.wait_case(case_id, lambda state: state["status"] == "COMPLETED")
            assert (state["lastEventAt"], state["resultStatus"]) == (done["updatedAt"], done["resultStatus"])

            stats = worker.reconcile_stats()
            assert stats["caseWatch"]["watched"] == 1 and stats["caseWatch"]["dead_lettered"] == 0, stats
            # Terminal: out of the schedule, never asked about again.
            asked = stats["checked"]
            time.sleep(3 * FAST["offload_reconcile_max_interval_s"])
            assert worker.reconcile_stats()["checked"] == asked and worker.reconcile_stats()["scheduled"] == 0

            # What operators see, read back with Prometheus' own text parser.
            samples = {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(worker.get("/metrics").text)
                for sample in family.samples
            }
            # Two repairs: the question (found when tracked) and the completion (found on schedule).
            assert samples[("offload_worker_reconcile_repair_seconds_count", ())] >= 2
            assert samples[("offload_worker_reconcile_gets_total", (("outcome", "ok"),))] == asked
            assert samples[("offload_worker_reconcile_cases_scheduled", ())] == 0
            assert samples[("offload_worker_reconcile_budget_left", ())] == 3600 - asked
            assert samples[("offload_worker_case_watch_total", (("kind", "watched"),))] == 1


def test_a_watch_offload_does_not_know_or_that_is_no_request_goes_to_the_dlq_with_the_reason(
    topics: Settings, tmp_path: Path
) -> None:
    with simulator_process("--step-ms", "400") as sim:
        worker = Worker(with_offload(topics, sim.base_url, **FAST), tmp_path)
        with running_workers(worker):
            with CaseWatcher(topics) as watcher:
                watcher.track("no-such-case")
            producer = kafka_producer(topics)
            try:
                producer.send(topic_name(CASE_WATCH, topics), key=b"c-1", value=b"not json").get(timeout=30)
            finally:
                producer.close()
            wait_for(lambda: len(read_topic(topics, CASE_WATCH_DLQ)) == 2)
            letters = {record.key: record.headers for record in read_topic(topics, CASE_WATCH_DLQ)}
            assert letters[b"no-such-case"]["outcome"] == b"not_found"
            assert letters[b"c-1"]["outcome"] == b"rejected" and letters[b"c-1"]["error"]
            assert worker.reconcile_stats()["caseWatch"]["dead_lettered"] == 2
