"""Many answers of a partition in flight at once: a slow first record while later ones finish, then a
SIGKILL. Its offset must not be committed past: after the restart it is delivered again, and its answer
reaches Offload with one terminal outcome.

Faust's own gap tracking would commit past it (``Consumer._new_offset`` skips a gap of exactly one record
at the head, and checks nothing while the committed offset is 0); the worker acknowledges records in
offset order only (``streams.lanes``). Both cases are here: nothing committed on the partition before, and
a partition already committed up to a later offset.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.kafka.partitioning import partition_for
from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, simulator_process
from offload_bridge.topics import ANSWER_OUTCOMES, ANSWERS
from tests.streams_support import Worker
from tests.test_case_requests_worker import with_offload
from tests.test_crash_outcomes import committed, terminal_outcomes

SLOW_MS = 15_000
FAST_AFTER_THE_SLOW_ONE = 8
COMMIT_INTERVAL_S = 0.5
TIMEOUT_S = 120.0


def questions_in_partition(
    sim: RunningSimulator, partition: int, partitions: int, count: int, **case: Any
) -> list[tuple[str, str]]:
    """``count`` simulator cases waiting for input whose caseId is in ``partition``: (caseId, question)."""
    found: list[tuple[str, str]] = []
    for _ in range(count * partitions * 10):
        case_id = sim.create_case(scenario="input_then_complete", step_ms=50, **case)
        if partition_for(case_id, partitions) == partition:
            truth = sim.wait_for_truth(case_id, lambda truth: truth["status"] == "INPUT_NEEDED")
            found.append((case_id, truth["inputRequest"]["id"]))
            if len(found) == count:
                return found
    raise AssertionError(f"not {count} cases in partition {partition}")


def publish_answers(settings: Settings, questions: list[tuple[str, str]]) -> list[str]:
    with AnswerSubmitter(settings) as submitter:
        return [submitter.publish(case_id, question, "Yes, go ahead.") for case_id, question in questions]


def wait_terminal(settings: Settings, answer_ids: set[str], worker: Worker) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        outcomes = terminal_outcomes(settings, ANSWER_OUTCOMES, "answerId")
        if answer_ids <= {outcome["answerId"] for outcome in outcomes}:
            return outcomes
        assert time.monotonic() < deadline, worker.service.log_tail(30)
        time.sleep(0.2)


def committed_offset(settings: Settings, partition: int) -> int:
    marks, _ = committed(settings, ANSWERS)
    return marks.get(partition, 0)


@pytest.mark.parametrize("committed_before", [0, 3], ids=["nothing-committed", "committed-later"])
def test_a_slow_first_record_is_not_committed_over_and_survives_a_sigkill(
    topics: Settings, tmp_path: Path, committed_before: int
) -> None:
    partitions = topics.offload_topic_partitions
    with simulator_process("--step-ms", "50") as sim:
        settings = with_offload(
            topics, sim.base_url, offload_worker_commit_interval_s=COMMIT_INTERVAL_S,
            offload_http_timeout_s=30.0,
        )  # fmt: skip
        [(slow_case, slow_question)] = questions_in_partition(
            sim, 0, partitions, 1, metadata={"simLatencyMs": SLOW_MS}
        )
        partition = partition_for(slow_case, partitions)
        worker = Worker(settings, tmp_path).start()
        try:
            if committed_before:
                # The partition's committed offset moves past 0 first.
                earlier = publish_answers(
                    settings, questions_in_partition(sim, partition, partitions, committed_before)
                )
                wait_terminal(settings, set(earlier), worker)
                deadline = time.monotonic() + TIMEOUT_S
                while committed_offset(settings, partition) != committed_before:
                    assert time.monotonic() < deadline, committed(settings, ANSWERS)
                    time.sleep(0.2)

            fast_questions = questions_in_partition(sim, partition, partitions, FAST_AFTER_THE_SLOW_ONE)
            [slow_answer] = publish_answers(settings, [(slow_case, slow_question)])
            fast_answers = publish_answers(settings, fast_questions)

            # Every answer after the slow one has its outcome while the slow call is still in flight.
            wait_terminal(settings, set(fast_answers), worker)
            sim.wait_in_flight("provide_input")
            # Several commit intervals pass: Faust's gap tracking would commit past the slow record now.
            for _ in range(6):
                assert committed_offset(settings, partition) == committed_before, (
                    "committed past the slow record while its call is in flight"
                )
                time.sleep(COMMIT_INTERVAL_S)
            ended = {o["answerId"] for o in terminal_outcomes(settings, ANSWER_OUTCOMES, "answerId")}
            assert slow_answer not in ended, "the slow call is still going"
            worker.service.kill()

            worker.start()
            outcomes = wait_terminal(settings, {slow_answer, *fast_answers}, worker)
        finally:
            worker.service.stop()
        inputs = sim.truth(slow_case)["inputs"]
    per_answer: dict[str, list[str]] = {}
    for outcome in outcomes:
        per_answer.setdefault(outcome["answerId"], []).append(outcome["outcome"])
    assert per_answer[slow_answer] in (["accepted"], ["duplicate"]), per_answer[slow_answer]
    assert all(per_answer[answer] == ["accepted"] for answer in fast_answers), per_answer
    assert [i["httpStatus"] for i in inputs if i["httpStatus"] == 202] == [202], "Offload has the answer"


def test_faust_commits_over_a_one_record_gap_and_the_barrier_stops_it() -> None:
    """Faust's own consumer (not started): with offset 10 held unsettled and 11 acknowledged (a record Faust
    dropped and acknowledged itself during a rebalance), ``Consumer._new_offset`` commits 12 past the
    held record; with a window holding it, the commit stays at 10."""
    import faust
    from faust.transport.consumer import Consumer
    from faust.types import TP
    from faust.types.tuples import Message

    from offload_bridge.streams import lanes

    app = faust.App("barrier", broker="kafka://127.0.0.1:1", autodiscover=False)
    consumer: Any = app.consumer
    tp = TP("answers", 0)

    def acknowledged_past_the_held_record() -> int | None:
        consumer._committed_offset[tp] = 10
        consumer._acked[tp] = [11]
        consumer._acked_index[tp] = {11}
        offset: int | None = consumer._new_offset(tp)
        return offset if offset is not None and consumer._should_commit(tp, offset) else None

    original: Any = Consumer._new_offset
    original = getattr(original, "__wrapped__", original)  # Faust's own, whether patched yet or not
    assert original(consumer, tp) is None  # nothing acknowledged yet
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [11]
    consumer._acked_index[tp] = {11}
    assert original(consumer, tp) == 12, "Faust commits over the one-record gap"

    lanes.install_commit_barrier()
    window = lanes._Window(stream=None, size=8, handle=_nothing, failed=_nothing_failed, before=None)
    held = Message("answers", 0, 10, 0.0, 0, None, b"case", b"{}", None, tp=tp)
    window.admit(faust.Event(app, b"case", b"{}", None, held))
    try:
        assert acknowledged_past_the_held_record() is None, "the commit stays at the held record"
    finally:
        window.close()
    assert acknowledged_past_the_held_record() == 12, "without a window holding a record, Faust's own rule"


async def _nothing(message: Any) -> None:
    return None


async def _nothing_failed(message: Any, error: Exception) -> None:
    return None
