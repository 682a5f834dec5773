"""Two workarounds for Faust losing records of the stream partitions while it takes them over.

Both show after a worker restarts with a backlog (SIGKILL, then the same worker again): it replays its
changelogs, so Faust's fetcher is already running when the stream partitions are resumed. A record lost
there is never processed nor acknowledged. Past a hole of two offsets Faust never commits the partition
again (``Consumer._new_offset`` commits only up to the first gap): the lag stays, every actor waits in
its stream and the fetcher waits on the consumer thread. A single lost record is committed over in
silence.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.consumer import ThreadDelegateConsumer

_PATCHED = "_fetches_a_snapshot"


def install(app: faust.App) -> None:
    """Apply both workarounds to ``app`` before it starts."""
    _fetch_only_the_partitions_active_at_the_call()

    @app.on_rebalance_complete.connect
    async def hold_deliveries_until_seeked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        # Recovery.on_recovery_completed (faust/tables/recovery.py) sends this signal, then resumes the
        # stream partitions, seeks them to their committed offsets and only then calls
        # app.flow_control.resume(), which empties every stream buffer. Records fetched in between,
        # by the fetcher that the changelog replay started, would be delivered into those buffers and
        # emptied out with them. Suspended, the delivery of the first of them waits inside the
        # conductor until that resume(), after the buffers were emptied. Every path that sends this
        # signal goes on to flow_control.resume(), or a newer rebalance does.
        app.flow_control.suspend()


def _fetch_only_the_partitions_active_at_the_call() -> None:
    """Make the fetch on the consumer thread use a copy of the active partitions, not Faust's live set.

    Faust hands its set of active partitions itself to the consumer thread, where aiokafka's
    ``Fetcher.fetched_records`` waits up to a second for data and reads the set again each time data
    comes in, taking an empty set to mean every partition. Recovery pauses the changelog partitions
    once it has replayed them, while the stream partitions are still paused: the set is empty for a
    moment, and a fetch still waiting returns the records of the stream partitions. Faust drops them
    (they are not active), yet aiokafka has moved past them; the seek to the committed offsets that
    follows cannot bring back a partition with no committed offset, so those records are never seen.
    """
    original = ThreadDelegateConsumer._getmany
    if getattr(original, _PATCHED, False):
        return

    async def _getmany(self: Any, active_partitions: set[Any] | None, timeout: float) -> Any:
        snapshot = None if active_partitions is None else set(active_partitions)
        return await original(self, snapshot, timeout)

    setattr(_getmany, _PATCHED, True)
    ThreadDelegateConsumer._getmany = _getmany  # type: ignore[method-assign]
