"""The open cases of some table partitions, read without decoding the terminal ones.

After a restart or a rebalance the reconciler indexes the open cases of its partitions from one scan of
the table. With the rocksdb store every value is JSON on disk, and a million case records cost tens of
seconds of parsing while the event loop waits; nearly all of them are terminal. The table's codec
writes the fields of a CaseRecord in the model's order, so a terminal record starts with a prefix a
regular expression recognises exactly: only the other records are parsed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from offload_bridge.schemas.case_state import CaseRecord
from offload_bridge.schemas.events import TERMINAL_STATUSES

_JSON_STRING = rb'"(?:[^"\\]|\\.)*"'
# {"state":{"caseId":"…","clientReferenceId":null|"…","status":"COMPLETED"|"FAILED"
_TERMINAL_RECORD = re.compile(
    rb'\{"state":\{"caseId":' + _JSON_STRING + rb',"clientReferenceId":(?:null|' + _JSON_STRING + rb"),"
    rb'"status":"(?:' + b"|".join(re.escape(status.encode()) for status in sorted(TERMINAL_STATUSES)) + rb')"'
)


def is_terminal_json(value: bytes) -> bool:
    """True when a CaseRecord's JSON (as the table's codec writes it) is of a terminal case."""
    return _TERMINAL_RECORD.match(value) is not None


def open_records(table: Any, partitions: Iterable[int]) -> Iterator[tuple[str, CaseRecord]] | None:
    """(caseId, record) of the non-terminal cases of ``partitions`` in a rocksdb-backed ModelTable, or
    None when the table's store has no partition databases to read (the memory store keeps objects:
    reading them costs nothing)."""
    store = getattr(table, "data", None)
    if store is None or not hasattr(store, "_db_for_partition"):
        return None
    return _read(table, store, sorted(partitions))


def _read(table: Any, store: Any, partitions: list[int]) -> Iterator[tuple[str, CaseRecord]]:
    codec = table.codec
    offset_key: bytes = store.offset_key
    for partition in partitions:
        for key, value in store._db_for_partition(partition).items():
            if key == offset_key or value is None or is_terminal_json(value):
                continue
            yield key.decode(), codec.loads(value)
