"""How the case-state table stores its values: a CaseRecord as its JSON, keyed by the caseId's bytes.

With the memory store Faust keeps the model object itself, so the fold never re-parses its own state;
the changelog (and the rocksdb store) hold the JSON.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.serializers.codecs import Codec

from offload_bridge.schemas.case_state import CaseRecord


class CaseRecordCodec(Codec):
    def _dumps(self, obj: Any) -> bytes:
        record: CaseRecord = obj
        return record.model_dump_json().encode()

    def _loads(self, s: bytes) -> Any:
        return CaseRecord.model_validate_json(s)


class CaseStateTable(faust.Table[str, CaseRecord]):
    """A Table[str, CaseRecord].

    Faust derives a table's serializers from its key and value types and falls back to JSON, which would
    write the key ``c1`` as ``"c1"``: a different partition hash than the caseId key of case-events, so
    query routing would miss. Keys are written raw and values with the codec above.
    """

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, key_type=str, **kwargs)
        self.key_serializer = "raw"
        self.value_serializer = CaseRecordCodec()


def add_case_state_table(app: faust.App, name: str, partitions: int, help: str) -> CaseStateTable:
    table = CaseStateTable(app, name=name, partitions=partitions, beacon=app.tables.beacon, help=help)
    app.tables.add(table)
    return table
