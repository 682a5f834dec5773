"""Arrow schemas of the analytics tables, built from their row models (needs pyarrow)."""

from __future__ import annotations

import types
import typing
from datetime import datetime
from typing import Any

import pyarrow as pa
from pydantic import BaseModel

from offload_bridge.analytics.tables import TableSpec

TIMESTAMP = pa.timestamp("ms", tz="UTC")
_ARROW_TYPES: dict[Any, pa.DataType] = {str: pa.string(), int: pa.int64(), datetime: TIMESTAMP}


def _arrow_type(annotation: Any) -> tuple[pa.DataType, bool]:
    """The arrow type of a field's annotation, and whether it may be null."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        (member,) = members
        return _ARROW_TYPES[member], True
    return _ARROW_TYPES[annotation], False


def arrow_schema(row: type[BaseModel]) -> pa.Schema:
    fields = []
    for name, info in row.model_fields.items():
        data_type, nullable = _arrow_type(info.annotation)
        fields.append(pa.field(name, data_type, nullable=nullable))
    return pa.schema(fields)


def table_schema(spec: TableSpec) -> pa.Schema:
    return arrow_schema(spec.row)
