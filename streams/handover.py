"""A workaround for Faust losing records of the stream partitions while it takes them over.

It shows after a worker restarts with a backlog (SIGKILL, then the same worker again): it replays its
changelogs, so Faust's fetcher is already running when the stream partitions are resumed. A record lost
there is never processed nor acknowledged. Past a hole of two offsets Faust never commits the partition
again (``Consumer._new_offset`` commits only up to the first gap): the lag stays, every actor waits in
its stream and the fetcher waits on the consumer thread. A single lost record is committed over in
silence.
"""

from __future__ import annotations

from typing import Any

import faust


def install(app: faust.App) -> None:
    """Apply the workaround to ``app`` before it starts."""

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
