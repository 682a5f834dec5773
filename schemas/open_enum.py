"""Open enumerations: values we publish today, with the promise that more may come.

A closed JSON Schema ``enum`` tells a consumer that no other value will ever appear, so adding one would break
every consumer that validates or switches exhaustively. The outcomes and statuses we write grow with the
product, so their schemas are open instead, in Zalando's ``x-extensible-enum`` convention: a plain string,
with the values known today listed under ``x-extensible-enum``. Consumers handle the values they know and
accept the others (as "unknown", or by ignoring the record).

Only the published JSON Schema changes: the model keeps validating what we publish as strictly as before.

    outcome: Annotated[Outcome, OpenEnum()]                          # an Enum: its members are known
    status: Annotated[str, OpenEnum(("CREATED", "RUNNING"))] | None  # a string: name the known values
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

EXTENSIBLE_ENUM = "x-extensible-enum"


@dataclass(frozen=True)
class OpenEnum:
    """Annotation: publish this field's enumeration as open (``x-extensible-enum``), not closed (``enum``)."""

    known: tuple[str, ...] = ()  # for a str field; an Enum field's members are read from its schema

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        known = list(self.known) or list(schema["enum"])
        # The Enum's own title would name a definition that is no longer there.
        kept = {key: value for key, value in schema.items() if key not in ("enum", "title")}
        return {**kept, "type": "string", EXTENSIBLE_ENUM: known}
