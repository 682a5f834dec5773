"""``offload-bridge reconcile`` on demand: no webhook ever arrives, the command brings the state level."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from offload_bridge.case_requests import CaseRequestSubmitter
from offload_bridge.schemas.case_requests import CaseRequestOutcomeKind
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import case_body, simulator_process
from tests.kafka_java import assert_placed_like_kafka
from tests.streams_support import Worker, running_workers
from tests.test_case_requests_worker import with_offload


def test_reconcile_all_open_publishes_what_webhooks_never_told(topics: Settings, tmp_path: Path) -> None:
    with simulator_process("--step-ms", "50") as sim:
        # Every webhook is dropped; the worker's own reconciler is far off (default interval).
        sim.set_faults(webhook_drop_rate=1.0)
        settings = with_offload(topics, sim.base_url)
        worker = Worker(settings, tmp_path)
        with running_workers(worker), CaseRequestSubmitter(settings) as submitter:
            request_id = submitter.publish(case_body(scenario="fail_bounced"), request_id="req-cli")
            outcome = submitter.wait_for_outcome(request_id, timeout_s=60)
            assert outcome.outcome is CaseRequestOutcomeKind.CREATED and outcome.caseId is not None
            case_id = outcome.caseId
            worker.wait_case(case_id, lambda state: state["status"] == "CREATED")
            sim.wait_for_truth(case_id, lambda truth: truth["status"] == "FAILED")

            dry = worker.run_cli("reconcile", "--case", case_id, "--dry-run")
            assert dry.returncode == 0, dry.stderr
            assert f"{case_id}: CREATED -> FAILED: would publish case.failed" in dry.stdout
            assert worker.get_case(case_id).json()["data"]["status"] == "CREATED"

            done = worker.run_cli("reconcile", "--all-open")
            assert done.returncode == 0, done.stderr
            truth = sim.truth(case_id)
            event_id = f"evt_{case_id}_case_failed_{truth['updatedAt']}"
            assert f"{case_id}: CREATED -> FAILED: published case.failed {event_id}" in done.stdout
            assert "1 checked, 1 event(s) published, 0 problem(s)" in done.stdout
            state = worker.wait_case(case_id, lambda state: state["status"] == "FAILED")
            assert (state["resultStatus"], state["lastEventId"]) == ("BOUNCED", event_id)

            # Level now: nothing open is left; an explicit case is reported up to date.
            worker.wait_case(case_id, lambda state: state["status"] == "FAILED")
            again = worker.run_cli("reconcile", "--case", case_id)
            assert again.returncode == 0, again.stderr
            assert f"{case_id}: level: up to date" in again.stdout
            unknown = worker.run_cli("reconcile", "--case", "no-such-case")
            assert unknown.returncode == 1
            assert "no-such-case: not_found: HTTP 404 CASE_NOT_FOUND" in unknown.stdout
            # The command's event shares the partition of the case's other events (Kafka's placement).
            assert_placed_like_kafka(settings, expect=("case-events",))


def test_reconcile_tells_a_missing_or_unknown_key_from_an_inactive_one(topics: Settings) -> None:
    """401 is a key missing or unknown to Offload ("unauthorized"), 403 a key Offload refuses
    ("forbidden"): the line says which, and what to check."""
    unauthorized = (
        "case-x: unauthorized: HTTP 401 UNAUTHORIZED missing or invalid x-api-key "
        "(OFFLOAD_API_KEY is missing or not a key Offload knows)"
    )
    forbidden = (
        "case-x: forbidden: HTTP 403 FORBIDDEN this API key is inactive "
        "(OFFLOAD_API_KEY is inactive, or the case belongs to another key's client)"
    )
    with simulator_process(env={"SIMULATOR_INACTIVE_API_KEYS": "retired-key"}) as sim:
        base = {**os.environ, **topics.as_env(), "OFFLOAD_BASE_URL": sim.base_url}
        base.pop("OFFLOAD_API_KEY", None)
        cases = ((None, unauthorized), ("no-such-key", unauthorized), ("retired-key", forbidden))
        for key, expected in cases:
            env = base if key is None else {**base, "OFFLOAD_API_KEY": key}
            reconciled = subprocess.run(
                [sys.executable, "-m", "offload_bridge.cli", "reconcile", "--case", "case-x"],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert reconciled.returncode == 1, reconciled.stderr
            assert expected in reconciled.stdout.splitlines(), (key, reconciled.stdout)
