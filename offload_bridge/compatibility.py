"""Does a topic's new value schema keep the parties built on its last released schema working?

The rule follows who writes the topic (the registry's ``writers``):

- FORWARD, topics the service writes: a consumer built on the released schema reads every new record.
- BACKWARD, topics other teams write (``answers``, ``case-requests``, ``case-watch``): records built on the
  released schema are still accepted.

Both are one question asked in opposite directions: does the reader's schema accept every value the
writer's schema allows? FORWARD: the writer is the new schema, the reader the released one; BACKWARD the
reverse. It is answered structurally, field by field, so that a failure names its field. Three readings
beyond plain JSON Schema, each from the contract:

- A writer sends the fields its schema declares. An object schema open to unknown fields would otherwise
  let an old record carry a later-added field with any value, and no optional field could ever be added.
- FORWARD: every field the released schema declares stays, required or not, since consumers read it; a
  field the released schema marks ``deprecated`` may go (a breaking change ships as a new field and a
  deprecation kept for a release). The same holds for a whole topic.
- An enumeration declared open (``x-extensible-enum``, see ``schemas.open_enum``) is a string: consumers
  accept values they do not know, so adding one passes.

A keyword the checker does not understand raises ``UnsupportedSchema`` rather than passing unjudged.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from offload_bridge.topics import Party, TopicSpec

Schema = dict[str, Any]

# Keywords that describe but never refuse a value; "x-..." extensions (x-extensible-enum among them) too.
_ANNOTATIONS = {"$schema", "$id", "$defs", "$comment", "title", "description", "default", "examples"}
_ANNOTATIONS |= {"deprecated", "readOnly", "writeOnly", "discriminator"}
_VALIDATION = {"type", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "properties", "required"}
_VALIDATION |= {"additionalProperties", "items", "minItems", "maxItems", "uniqueItems", "minLength"}
_VALIDATION |= {"maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum"}
_VALIDATION |= {"exclusiveMaximum", "multipleOf"}
_MAX_DEPTH = 64  # deeper than any model of ours: a recursive schema, which this checker does not follow


class Rule(StrEnum):
    FORWARD = "FORWARD"
    BACKWARD = "BACKWARD"


def rule_for(spec: TopicSpec) -> Rule:
    """BACKWARD when other teams write the topic (their code is built on a released schema), else FORWARD."""
    return Rule.BACKWARD if Party.TEAMS in spec.writers else Rule.FORWARD


class UnsupportedSchema(ValueError):
    """A schema uses something the checker cannot judge."""


@dataclass(frozen=True)
class Break:
    """One breaking change: where it is, which rule it breaks, and what changed."""

    topic: str
    field: str  # a path in the value: inputRequest.question, attachments[].size, answers.*.outcome
    rule: Rule | None  # None: the topic itself is gone, which breaks whoever used it
    what: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.field}: {self.rule or 'REMOVED'}: {self.what}"


def compare(
    topic: str, rule: Rule, released: Schema, current: Schema, version: str = "the released schema"
) -> list[Break]:
    """The breaking changes from ``released`` (the schema of release ``version``) to ``current``."""
    writer, reader = (current, released) if rule is Rule.FORWARD else (released, current)
    check = _Check(topic, rule, version, writer, reader)
    check.accepts(writer, reader, ())
    return check.breaks


@dataclass
class _Check:
    topic: str
    rule: Rule
    version: str
    writer_root: Schema
    reader_root: Schema
    breaks: list[Break] = field(default_factory=list)

    def fail(self, path: tuple[str, ...], change: str) -> None:
        if self.rule is Rule.FORWARD:
            harm = f"a consumer built on {self.version} may fail on new records"
        else:
            harm = f"records built on {self.version} may be refused"
        self.breaks.append(Break(self.topic, _path(path), self.rule, f"{change}; {harm}"))

    def old_new(self, writer: Any, reader: Any) -> tuple[Any, Any]:
        return (reader, writer) if self.rule is Rule.FORWARD else (writer, reader)

    @property
    def reader_name(self) -> str:
        return f"the {'released' if self.rule is Rule.FORWARD else 'new'} schema"

    def accepts(self, writer: Any, reader: Any, path: tuple[str, ...]) -> None:
        """Record why ``reader`` may refuse a value ``writer`` allows (nothing when it accepts them all)."""
        if len(path) > _MAX_DEPTH:
            raise UnsupportedSchema(f"{self.topic}: {_path(path)}: nested too deep (a recursive schema?)")
        writer_branches = _branches(writer, self.writer_root, self.topic, path)
        reader_branches = _branches(reader, self.reader_root, self.topic, path)
        for branch in writer_branches:
            candidates = [r for r in reader_branches if _type_accepts(r["type"], branch["type"])]
            if not candidates:
                old, new = self.old_new(_types(writer_branches), _types(reader_branches))
                self.fail(path, f"type {old} -> {new}")
                continue
            # The value may match any of the reader's branches: it is accepted when one takes all of it.
            # Otherwise the branch of its own type says best what changed.
            failures = []
            for candidate in sorted(candidates, key=lambda r: r["type"] != branch["type"]):
                trial = _Check(self.topic, self.rule, self.version, self.writer_root, self.reader_root)
                trial.same_type(branch, candidate, path)
                if not trial.breaks:
                    break
                failures.append(trial.breaks)
            else:
                self.breaks.extend(failures[0])

    def same_type(self, writer: Schema, reader: Schema, path: tuple[str, ...]) -> None:
        if reader["type"] == "any":
            return
        values, closed = _values(writer), _values(reader)
        if closed is not None:
            if values is None:
                old, new = self.old_new("any value", f"the closed enum {closed}")
                self.fail(path, f"{old} -> {new}")
            elif extra := [value for value in values if value not in closed]:
                if self.rule is Rule.FORWARD:
                    self.fail(path, f"new value(s) {extra} in a closed enum")
                else:
                    self.fail(path, f"enum value(s) {extra} removed")
            return
        if values is not None:
            for value in values:
                if not _fits(value, reader):
                    self.fail(path, f"value {value!r} breaks a constraint of {self.reader_name}")
            return
        self.constraints(writer, reader, path)
        if reader["type"] == "array" and "items" in reader:
            self.accepts(writer.get("items", True), reader["items"], (*path, "[]"))
        elif reader["type"] == "object":
            self.objects(writer, reader, path)

    def constraints(self, writer: Schema, reader: Schema, path: tuple[str, ...]) -> None:
        """A bound, pattern or format of the reader that the writer's values need not meet."""
        for low in ("minLength", "minItems"):
            if reader.get(low, 0) > writer.get(low, 0):
                self.narrowed(path, low, writer.get(low), reader[low])
        for high in ("maxLength", "maxItems"):
            if high in reader and writer.get(high, float("inf")) > reader[high]:
                self.narrowed(path, high, writer.get(high), reader[high])
        for exact in ("pattern", "format", "multipleOf"):
            if exact in reader and writer.get(exact) != reader[exact]:
                self.narrowed(path, exact, writer.get(exact), reader[exact])
        if reader.get("uniqueItems") and not writer.get("uniqueItems"):
            self.narrowed(path, "uniqueItems", writer.get("uniqueItems"), True)
        for side, sign in (("minimum", 1), ("maximum", -1)):
            reader_bound, writer_bound = _bound(reader, side, sign), _bound(writer, side, sign)
            if reader_bound is not None and (writer_bound is None or writer_bound < reader_bound):
                self.narrowed(path, side, _bound_text(writer_bound, sign), _bound_text(reader_bound, sign))

    def narrowed(self, path: tuple[str, ...], keyword: str, writer_value: Any, reader_value: Any) -> None:
        old, new = self.old_new(writer_value, reader_value)
        self.fail(path, f"{keyword} {_show(old)} -> {_show(new)}")

    def objects(self, writer: Schema, reader: Schema, path: tuple[str, ...]) -> None:
        written, read = writer.get("properties", {}), reader.get("properties", {})
        writer_required, reader_required = set(writer.get("required", [])), set(reader.get("required", []))
        extra = reader.get("additionalProperties", True)
        for name, schema in read.items():
            here = (*path, name)
            if name in written:
                self.accepts(written[name], schema, here)
                if name in reader_required and name not in writer_required:
                    old, new = self.old_new("optional", "required")
                    self.fail(here, f"{old} -> {new}")
            elif self.rule is Rule.FORWARD:
                resolved = _resolve(schema, self.reader_root, self.topic, here)
                if not (isinstance(resolved, dict) and resolved.get("deprecated")):
                    self.fail(here, "removed or renamed (deprecate it for a release first)")
            elif name in reader_required:
                self.fail(here, "new required field")
        for name, schema in written.items():
            if name in read:
                continue
            if extra is False:
                change = "new field" if self.rule is Rule.FORWARD else "removed"
                self.fail((*path, name), f"{change}, and {self.reader_name} forbids unknown fields")
            elif extra is not True:
                self.accepts(schema, extra, (*path, name))
        # A map (dict[str, X]) is an object whose values are all described by additionalProperties.
        written_extra = writer.get("additionalProperties", True)
        if extra is not True and written_extra is not False and (written_extra is not True or not written):
            self.accepts(written_extra, extra, (*path, "*"))


def _path(path: tuple[str, ...]) -> str:
    text = ".".join(path).replace(".[]", "[]")
    return text or "(the value)"


def _resolve(node: Any, root: Schema, topic: str, path: tuple[str, ...]) -> Any:
    """``node`` with its ``$ref`` (``#/...`` into the same document) and single ``allOf`` merged in."""
    for _ in range(_MAX_DEPTH):
        if not (isinstance(node, dict) and ("$ref" in node or "allOf" in node)):
            return node
        node = dict(node)
        if "$ref" in node:
            reference = node.pop("$ref")
            if not reference.startswith("#/"):
                raise UnsupportedSchema(f"{topic}: {_path(path)}: only local references: {reference}")
            target: Any = root
            for part in reference[2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
        else:
            parts = node.pop("allOf")
            if len(parts) != 1:
                raise UnsupportedSchema(f"{topic}: {_path(path)}: allOf of {len(parts)} schemas")
            target = parts[0]
        if target is False:
            raise UnsupportedSchema(f"{topic}: {_path(path)}: a reference to a schema that accepts nothing")
        target = {} if target is True else target
        if any(k in _VALIDATION and node[k] != target[k] for k in node.keys() & target.keys()):
            raise UnsupportedSchema(f"{topic}: {_path(path)}: a reference with conflicting siblings")
        node = {**target, **node}
    raise UnsupportedSchema(f"{topic}: {_path(path)}: references that never end")


def _branches(node: Any, root: Schema, topic: str, path: tuple[str, ...]) -> list[Schema]:
    """The schema as a union of single-type schemas: anyOf/oneOf and type lists taken apart."""
    node = _resolve(node, root, topic, path)
    if node is True:
        return [{"type": "any"}]
    if node is False:
        return []
    unknown = [k for k in node if k not in _ANNOTATIONS | _VALIDATION and not k.startswith("x-")]
    if unknown:
        raise UnsupportedSchema(f"{topic}: {_path(path)}: unsupported keyword(s) {unknown}")
    for union in ("anyOf", "oneOf"):  # oneOf read as anyOf: exclusivity only ever refuses more
        if union in node:
            rest = {k: v for k, v in node.items() if k != union and k in _VALIDATION}
            if rest:
                raise UnsupportedSchema(f"{topic}: {_path(path)}: {union} beside {sorted(rest)}")
            return [b for part in node[union] for b in _branches(part, root, topic, path)]
    values = _values(node)
    declared = node.get("type")
    if declared is None:
        declared = sorted({_json_type(v) for v in values}) if values is not None else "any"
    if declared == "any" and set(node) & _VALIDATION:
        raise UnsupportedSchema(f"{topic}: {_path(path)}: constraints without a type")
    types = declared if isinstance(declared, list) else [declared]
    branches = []
    for kind in types:
        branch = {**node, "type": kind}
        if values is not None:
            branch["enum"] = [v for v in values if _type_accepts(kind, _json_type(v))]
            branch.pop("const", None)
        branches.append(branch)
    return branches


def _values(schema: Schema) -> list[Any] | None:
    """The closed list of values a schema allows (enum or const), None when not closed."""
    if "const" in schema:
        return [schema["const"]]
    return list(schema["enum"]) if "enum" in schema else None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    names = {float: "number", str: "string", list: "array", dict: "object"}
    return names[type(value)]


def _type_accepts(reader: str, writer: str) -> bool:
    return reader in ("any", writer) or (reader == "number" and writer == "integer")


def _types(branches: list[Schema]) -> str:
    return "|".join(dict.fromkeys(branch["type"] for branch in branches)) or "nothing"


def _bound(schema: Schema, side: str, sign: int) -> tuple[float, int] | None:
    """A lower (sign 1) or upper (sign -1) bound as a sortable pair: tighter bounds sort higher."""
    exclusive = "exclusiveMinimum" if sign == 1 else "exclusiveMaximum"
    bounds = [(sign * schema[side], 0)] if side in schema else []
    bounds += [(sign * schema[exclusive], 1)] if exclusive in schema else []
    return max(bounds) if bounds else None


def _bound_text(bound: tuple[float, int] | None, sign: int) -> str | None:
    if bound is None:
        return None
    return f"{'>' if sign == 1 else '<'}{'' if bound[1] else '='} {sign * bound[0]:g}"


def _fits(value: Any, schema: Schema) -> bool:
    """Whether one value of a closed enum meets a schema's string and number constraints."""
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return False
        return "pattern" not in schema or re.search(schema["pattern"], value) is not None
    if isinstance(value, int | float) and not isinstance(value, bool):
        for side, sign in (("minimum", 1), ("maximum", -1)):
            bound = _bound(schema, side, sign)
            if bound is not None and (sign * value < bound[0] or (sign * value == bound[0] and bound[1])):
                return False
    return True


def _show(value: Any) -> str:
    return "none" if value is None else str(value)
