"""The case-requests table: CaseRequestRecord JSON by requestId, whose writes can be awaited.

``pending`` must be on the broker before ``POST /cases`` is called, or a crash right after the call
could forget it and the request would be sent again. Faust buffers changelog writes and gives no handle
on them, so this table keeps the future of its last changelog write for the agent to await.
"""

from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.serializers.codecs import Codec

from offload_bridge.schemas.case_requests import CaseRequestRecord


class CaseRequestRecordCodec(Codec):
    def _dumps(self, obj: Any) -> bytes:
        record: CaseRequestRecord = obj
        return record.model_dump_json().encode()

    def _loads(self, s: bytes) -> Any:
        return CaseRequestRecord.model_validate_json(s)


class CaseRequestTable(faust.Table[str, CaseRequestRecord]):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, key_type=str, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = CaseRequestRecordCodec()
        self.last_write: asyncio.Future[Any] | None = None

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send_changelog(*args, **kwargs)
        self.last_write = future
        return future

    async def put_durably(self, key: str, record: CaseRequestRecord, timeout_s: float) -> None:
        """Set ``key`` and wait until the broker acknowledged the changelog record. Raises TimeoutError."""
        self[key] = record
        if self.last_write is not None:
            await asyncio.wait_for(asyncio.shield(self.last_write), timeout_s)


def add_case_request_table(app: faust.App, name: str, partitions: int, help: str) -> CaseRequestTable:
    table = CaseRequestTable(app, name=name, partitions=partitions, beacon=app.tables.beacon, help=help)
    app.tables.add(table)
    return table
