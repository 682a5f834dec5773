"""The workarounds for Faust losing records while it takes partitions over (streams/handover.py).

The loss itself shows only in a real restart (tests/test_crash_outcomes.py); these pin the two
mechanisms without a broker. Checked with faust-streaming 0.15, aiokafka 0.14 and mode-streaming 0.7, the
minor releases pyproject.toml bounds them to (tests/test_pinned_dependencies.py).
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.consumer import ThreadDelegateConsumer
from faust.types import TP

from offload_bridge.streams import handover


async def test_the_consumer_thread_fetches_the_partitions_active_when_the_fetch_began() -> None:
    """faust-streaming 0.15 (the patched ``ThreadDelegateConsumer._getmany``) with aiokafka 0.14 (whose
    ``Fetcher.fetched_records`` takes an empty set for every partition)."""
    handover.install(faust.App("handover-test-fetch", autodiscover=False))
    live = {TP("answers", 0), TP("answers", 1)}
    seen: list[set[TP]] = []

    class ConsumerThread:
        async def getmany(self, active_partitions: set[TP], timeout: float) -> dict[TP, Any]:
            # Faust pauses partitions while a fetch waits on the consumer thread; an empty set would
            # mean every partition to aiokafka.
            live.clear()
            seen.append(active_partitions)
            return {}

    class Consumer:
        _thread = ConsumerThread()

    getmany: Any = ThreadDelegateConsumer._getmany
    await getmany(Consumer(), live, 1.0)
    assert seen == [{TP("answers", 0), TP("answers", 1)}]


async def test_deliveries_wait_from_the_end_of_recovery_until_faust_resumes_the_flow() -> None:
    """faust-streaming 0.15 (``Recovery`` resumes the flow after ``on_rebalance_complete``) with
    mode-streaming 0.7 (``FlowControlEvent``)."""
    app = faust.App("handover-test-flow", autodiscover=False)
    handover.install(app)
    app.flow_control.resume()
    await app.on_rebalance_complete.send()
    assert not app.flow_control.is_active()
