"""The compatibility check: a known answer for each rule, the same verdict from an independent checker, and
today's schemas against the released baseline kept in the repository."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import jsoncompat  # an independent checker (Rust, set-based): the cross-check of every verdict below
import pytest
from pydantic import BaseModel, Field

from offload_bridge import contracts
from offload_bridge.compatibility import Rule, UnsupportedSchema, compare, rule_for
from offload_bridge.schemas.open_enum import EXTENSIBLE_ENUM, OpenEnum
from offload_bridge.topics import ALL_TOPICS

FORWARD, BACKWARD = Rule.FORWARD, Rule.BACKWARD


class Question(BaseModel):
    id: str
    text: str


class Released(BaseModel):
    """A released value schema, as pydantic writes it: $defs and $ref, anyOf with null, arrays, enums."""

    caseId: str
    status: Annotated[str, OpenEnum(("OPEN", "DONE"))]  # open: consumers accept other values
    verdict: Literal["accepted", "rejected"]  # closed
    attempt: int = Field(default=0, ge=0)
    ratio: float = 1.0
    note: str | None = None
    old: str | None = Field(default=None, deprecated="use note")
    question: Question | None = None
    tags: list[str] = Field(default_factory=list)


RELEASED = Released.model_json_schema()
Edit = Callable[[dict[str, Any]], object]


def _changed(edit: Edit) -> dict[str, Any]:
    schema = copy.deepcopy(RELEASED)
    edit(schema)
    return schema


def _props(schema: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = schema["properties"]
    return properties


def _add_required(name: str, field: dict[str, Any]) -> Edit:
    return lambda s: (_props(s).update({name: field}), s["required"].append(name))


def _rename_note(schema: dict[str, Any]) -> None:
    _props(schema)["remark"] = _props(schema).pop("note")


# Each breaking change: the rule it breaks, the edit from the released schema, the field named, what is said.
BREAKING: dict[str, tuple[Rule, Edit, str, str]] = {
    # FORWARD: a consumer built on the released schema reads every new record.
    "removed field": (FORWARD, lambda s: _props(s).pop("note"), "note", "removed or renamed"),
    "renamed field": (FORWARD, _rename_note, "note", "removed or renamed"),
    "removed nested field, through $ref": (
        FORWARD,
        lambda s: (
            s["$defs"]["Question"]["properties"].pop("text"),
            s["$defs"]["Question"]["required"].pop(),
        ),
        "question.text",
        "removed or renamed",
    ),
    "changed type": (
        FORWARD,
        lambda s: _props(s)["attempt"].update(type="string"),
        "attempt",
        "integer -> string",
    ),
    "widened type, integer to number": (
        FORWARD,
        lambda s: _props(s)["attempt"].update(type="number"),
        "attempt",
        "type integer -> number",
    ),
    "became nullable": (
        FORWARD,
        lambda s: _props(s).update(ratio={"anyOf": [{"type": "number"}, {"type": "null"}]}),
        "ratio",
        "type number -> number|null",
    ),
    "required became optional": (
        FORWARD,
        lambda s: s["required"].remove("caseId"),
        "caseId",
        "required -> optional",
    ),
    "new value in a closed enum": (
        FORWARD,
        lambda s: _props(s)["verdict"]["enum"].append("escalated"),
        "verdict",
        "new value(s) ['escalated'] in a closed enum",
    ),
    # BACKWARD: records built on the released schema are still accepted.
    "new required field": (
        BACKWARD,
        _add_required("priority", {"type": "integer"}),
        "priority",
        "new required field",
    ),
    "optional became required": (
        BACKWARD,
        lambda s: s["required"].append("note"),
        "note",
        "optional -> required",
    ),
    "narrowed type, string to enum": (
        BACKWARD,
        lambda s: _props(s)["caseId"].update(enum=["c-1"]),
        "caseId",
        "any value -> the closed enum ['c-1']",
    ),
    "narrowed type, number to integer": (
        BACKWARD,
        lambda s: _props(s)["ratio"].update(type="integer"),
        "ratio",
        "type number -> integer",
    ),
    "narrowed type, new maxLength": (
        BACKWARD,
        lambda s: _props(s)["caseId"].update(maxLength=8),
        "caseId",
        "maxLength none -> 8",
    ),
    "narrowed type, new pattern": (
        BACKWARD,
        lambda s: _props(s)["caseId"].update(pattern="^case_"),
        "caseId",
        "pattern none -> ^case_",
    ),
    "narrowed type, tightened minimum": (
        BACKWARD,
        lambda s: _props(s)["attempt"].update(minimum=1),
        "attempt",
        "minimum >= 0 -> >= 1",
    ),
    "narrowed nested field, through $ref": (
        BACKWARD,
        lambda s: s["$defs"]["Question"]["properties"]["id"].update(minLength=3),
        "question.id",
        "minLength none -> 3",
    ),
    "narrowed array items": (
        BACKWARD,
        lambda s: _props(s)["tags"].update(items={"type": "integer"}),
        "tags[]",
        "type string -> integer",
    ),
    "removed enum value": (
        BACKWARD,
        lambda s: _props(s)["verdict"]["enum"].remove("rejected"),
        "verdict",
        "enum value(s) ['rejected'] removed",
    ),
}

# Changes that break neither rule, and changes that break one rule only (the other direction is safe).
COMPATIBLE: dict[str, tuple[tuple[Rule, ...], Edit]] = {
    "added optional field": ((FORWARD, BACKWARD), lambda s: _props(s).update(channel={"type": "string"})),
    "new value in an open enum": (
        (FORWARD, BACKWARD),
        lambda s: _props(s)["status"][EXTENSIBLE_ENUM].append("HELD"),
    ),
    "added optional field in a nested model": (
        (FORWARD, BACKWARD),
        lambda s: s["$defs"]["Question"]["properties"].update(askedAt={"type": "integer"}),
    ),
    "narrowed type": ((FORWARD,), lambda s: _props(s)["caseId"].update(maxLength=8)),
    "removed enum value": ((FORWARD,), lambda s: _props(s)["verdict"]["enum"].remove("rejected")),
    "new required field": ((FORWARD,), _add_required("priority", {"type": "integer"})),
    "removed field": ((BACKWARD,), lambda s: _props(s).pop("note")),
    "widened type": ((BACKWARD,), lambda s: _props(s)["attempt"].update(type="number")),
    "new value in a closed enum": ((BACKWARD,), lambda s: _props(s)["verdict"]["enum"].append("escalated")),
}

# What jsoncompat 0.3 does not detect: an added pattern (it judges a pattern change compatible).
INDEPENDENT_BLIND_SPOTS = {"narrowed type, new pattern"}


def _closed(node: Any) -> Any:
    """The schema with every model closed to undeclared fields: BACKWARD's reading that a writer sends only
    the fields its schema declares, spelled in plain JSON Schema for the independent checker."""
    if isinstance(node, list):
        return [_closed(item) for item in node]
    if not isinstance(node, dict):
        return node
    closed = {key: _closed(value) for key, value in node.items()}
    if "properties" in closed and closed.get("additionalProperties", True) is True:
        closed["additionalProperties"] = False
    return closed


def _independent_verdict(rule: Rule, released: dict[str, Any], current: dict[str, Any]) -> bool:
    """jsoncompat's verdict: FORWARD is its serializer role (new within old), BACKWARD its deserializer."""
    if rule is FORWARD:
        return jsoncompat.check_compat(json.dumps(released), json.dumps(current), "serializer")
    return jsoncompat.check_compat(json.dumps(_closed(released)), json.dumps(current), "deserializer")


@pytest.mark.parametrize("case", BREAKING)
def test_a_breaking_change_fails_naming_topic_field_and_rule(case: str) -> None:
    rule, edit, field, what = BREAKING[case]
    current = _changed(edit)
    breaks = compare("t", rule, RELEASED, current, "0.1.0")
    assert [(b.field, b.rule) for b in breaks] == [(field, rule)], breaks
    assert what in breaks[0].what
    assert str(breaks[0]).startswith(f"t: {field}: {rule}: ")
    if case not in INDEPENDENT_BLIND_SPOTS:
        assert _independent_verdict(rule, RELEASED, current) is False


@pytest.mark.parametrize("case", COMPATIBLE)
def test_a_compatible_change_passes(case: str) -> None:
    rules, edit = COMPATIBLE[case]
    current = _changed(edit)
    for rule in rules:
        assert compare("t", rule, RELEASED, current) == []
        assert _independent_verdict(rule, RELEASED, current) is True


def test_a_field_deprecated_in_the_released_schema_may_go() -> None:
    assert RELEASED["properties"]["old"]["deprecated"] is True
    assert compare("t", FORWARD, RELEASED, _changed(lambda s: _props(s).pop("old"))) == []
    breaks = compare("t", FORWARD, RELEASED, _changed(lambda s: _props(s).pop("note")))
    assert [b.field for b in breaks] == ["note"]


def test_a_closed_model_makes_any_new_field_a_forward_break() -> None:
    closed = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": False}
    widened = {**closed, "properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    breaks = compare("t", FORWARD, closed, widened)
    assert [(b.field, b.what.split(";")[0]) for b in breaks] == [
        ("b", "new field, and the released schema forbids unknown fields")
    ]


def test_a_keyword_the_checker_cannot_judge_is_refused_not_passed() -> None:
    negated = _changed(lambda s: _props(s)["caseId"].update({"not": {"const": "x"}}))
    with pytest.raises(UnsupportedSchema, match=r"caseId.*not"):
        compare("t", BACKWARD, RELEASED, negated)


def test_teams_written_topics_are_backward_and_ours_forward() -> None:
    rules = {spec.name: rule_for(spec) for spec in ALL_TOPICS}
    assert {name for name, rule in rules.items() if rule is BACKWARD} == {
        "answers",
        "case-requests",
        "case-watch",
    }
    document = contracts.asyncapi()
    assert {channel["address"]: channel["x-compatibility"] for channel in document["channels"].values()} == {
        f"offload.{name}": str(rule) for name, rule in rules.items()
    }


def _enum_keywords(node: Any, path: str = "") -> list[str]:
    if isinstance(node, list):
        return [found for item in node for found in _enum_keywords(item, path)]
    if not isinstance(node, dict):
        return []
    here = [path] if "enum" in node else []
    return here + [found for key, value in node.items() for found in _enum_keywords(value, f"{path}/{key}")]


def test_enumerations_we_publish_are_open() -> None:
    """Consumers of topics we write must accept values they do not know: no closed enum in their schemas."""
    published = [spec for spec in ALL_TOPICS if rule_for(spec) is FORWARD and not spec.internal]
    closed = {spec.name: _enum_keywords(contracts.json_schema(spec)) for spec in published}
    assert {name: paths for name, paths in closed.items() if paths} == {}
    outcome = contracts.json_schema(next(spec for spec in ALL_TOPICS if spec.name == "answer-outcomes"))
    assert "dead_lettered" in outcome["properties"]["outcome"][EXTENSIBLE_ENUM]


def test_todays_schemas_are_compatible_with_the_last_release() -> None:
    versions = contracts.released_versions()
    assert versions, "no baseline under schemas/released: run `offload-bridge schemas release`"
    baseline = contracts.RELEASED_DIR / versions[-1]
    breaks = contracts.check_compatibility(baseline)
    assert breaks == [], "breaking changes (docs: Evolve the contracts):\n" + "\n".join(map(str, breaks))
    first = contracts.RELEASED_DIR / versions[0]
    assert sorted(path.name for path in first.iterdir()) == sorted(map(contracts.schema_file, ALL_TOPICS))


def _baseline_copy(tmp_path: Path) -> Path:
    versions = contracts.released_versions()
    released = tmp_path / "released"
    shutil.copytree(contracts.RELEASED_DIR / versions[-1], released / versions[-1])
    return released / versions[-1]


def test_a_removed_topic_breaks_unless_it_was_deprecated(tmp_path: Path) -> None:
    baseline = _baseline_copy(tmp_path)
    retired = {"type": "object", "properties": {"caseId": {"type": "string"}}}
    (baseline / "retired.schema.json").write_text(json.dumps(retired))
    assert [(b.topic, b.rule) for b in contracts.check_compatibility(baseline)] == [("retired", None)]
    (baseline / "retired.schema.json").write_text(json.dumps({**retired, "deprecated": True}))
    assert contracts.check_compatibility(baseline) == []
    (baseline / "case-watch.schema.json").unlink()  # a topic new since that release: nothing to compare
    assert contracts.check_compatibility(baseline) == []


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "offload_bridge.cli", "schemas", *args]
    return subprocess.run(command, capture_output=True, text=True, env=os.environ, timeout=60)


def test_check_compat_command_names_the_break_and_exits_1(tmp_path: Path) -> None:
    baseline = _baseline_copy(tmp_path)
    assert _cli("check-compat", "--released", str(baseline.parent)).returncode == 0
    released = json.loads((baseline / "answer-outcomes.schema.json").read_text())
    released["properties"]["legacyCode"] = {"type": "string"}  # a field today's model no longer has
    (baseline / "answer-outcomes.schema.json").write_text(json.dumps(released))
    result = _cli("check-compat", "--released", str(baseline.parent))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "answer-outcomes: legacyCode: FORWARD: removed or renamed" in result.stdout
    assert "ok        answers (BACKWARD)" in result.stdout
    missing = _cli("check-compat", "--released", str(tmp_path / "none"))
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "schemas release" in missing.stderr


def test_release_keeps_a_baseline_and_never_rewrites_one(tmp_path: Path) -> None:
    released = tmp_path / "released"
    names = contracts.release("1.0.0", released)
    assert names == sorted(map(contracts.schema_file, ALL_TOPICS))
    assert contracts.check_compatibility(released / "1.0.0") == []
    assert contracts.release("1.0.0", released) == []  # the same schemas: nothing to do
    state = released / "1.0.0" / "case-state.schema.json"
    state.write_text(state.read_text().replace('"lastEventId"', '"lastEvent"'))
    refused = _cli("release", "--version", "1.0.0", "--released", str(released))
    assert refused.returncode == 2 and "never rewritten" in refused.stderr
    # The doctored 1.0.0 has a field today's model lacks: cutting 1.1.0 would hide a breaking change.
    with pytest.raises(contracts.ReleaseRefused, match="case-state: lastEvent: FORWARD"):
        contracts.release("1.1.0", released)
    with pytest.raises(contracts.ReleaseRefused, match="newer baseline"):
        contracts.release("0.9.0", released)
    assert (
        _cli("release", "--version", "1.1.0", "--released", str(released), "--accept-breaking").returncode
        == 0
    )
    assert contracts.released_versions(released) == ["1.0.0", "1.1.0"]
