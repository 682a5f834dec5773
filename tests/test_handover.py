"""The workarounds for Faust losing records while it takes partitions over (streams/handover.py).

The loss itself shows only in a real restart (tests/test_crash_outcomes.py); these pin the
mechanisms without a broker.
"""

from __future__ import annotations

import faust

from offload_bridge.streams import handover


async def test_deliveries_wait_from_the_end_of_recovery_until_faust_resumes_the_flow() -> None:
    app = faust.App("handover-test-flow", autodiscover=False)
    handover.install(app)
    app.flow_control.resume()
    await app.on_rebalance_complete.send()
    assert not app.flow_control.is_active()
