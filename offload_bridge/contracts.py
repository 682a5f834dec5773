"""Render the contracts for other teams: one JSON Schema per topic value, and an AsyncAPI 3.0 document.

Generated from the topic registry (``offload_bridge.topics``) and the pydantic models it names;
``offload-bridge schemas export`` writes them into ``schemas/``. Each release keeps a copy of its value
schemas in ``schemas/released/<version>/`` (``offload-bridge schemas release``), and today's schemas are
compared with the newest copy by ``offload_bridge.compatibility`` (``offload-bridge schemas check-compat``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from offload_bridge import __version__, schemas
from offload_bridge.compatibility import Break, compare, rule_for
from offload_bridge.topics import ALL_TOPICS, TopicSpec

SCHEMAS_DIR = Path(schemas.__file__).resolve().parent
RELEASED_DIR = SCHEMAS_DIR / "released"
ASYNCAPI_FILE = "asyncapi.yaml"
DEFAULT_PREFIX = "offload."
SCHEMA_SUFFIX = ".schema.json"
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")
COMPACTED_RETENTION = "Compacted: the latest record of each key is kept, older ones are removed."


def schema_file(spec: TopicSpec) -> str:
    return f"{spec.name}{SCHEMA_SUFFIX}"


def _camel(topic: str) -> str:
    words = topic.replace(".", "-").split("-")
    return words[0] + "".join(word.capitalize() for word in words[1:])


def json_schema(spec: TopicSpec) -> dict[str, Any]:
    header = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_file(spec),
        "title": spec.title,
        "description": spec.summary,
    }
    if spec.model is None:
        return {**header, "description": f"{spec.summary} Any bytes: no schema applies."}
    generated = spec.model.model_json_schema()
    generated.pop("title", None)
    generated.pop("description", None)
    return {**header, **generated}


def _channel_description(spec: TopicSpec) -> str:
    internal = " Internal: written and read by the worker only." if spec.internal else ""
    return f"{spec.summary}{internal} The prefix is OFFLOAD_TOPIC_PREFIX."


def _topic_configuration(spec: TopicSpec) -> dict[str, Any]:
    """What ``topics create`` sets with the default settings, in the Kafka binding's terms (it wants numbers
    as numbers); ``x-retention`` says why, and which setting changes it."""
    return {
        name: [value] if name == "cleanup.policy" else int(value) for name, value in spec.config().items()
    }


def asyncapi() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for spec in ALL_TOPICS:
        name = _camel(spec.name)
        channels[name] = {
            "address": f"{DEFAULT_PREFIX}{spec.name}",
            "description": _channel_description(spec),
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "kafka": {"topicConfiguration": _topic_configuration(spec), "bindingVersion": "0.5.0"}
            },
            # Extensions: what the registry knows that AsyncAPI has no field for.
            "x-retention": spec.retention.why if spec.retention else COMPACTED_RETENTION,
            "x-partitioning": spec.partitioning,
            "x-writers": [str(party) for party in spec.writers],
            "x-readers": [str(party) for party in spec.readers],
            # How the value schema may evolve (docs: "Evolve the contracts").
            "x-compatibility": str(rule_for(spec)),
        }
        message: dict[str, Any] = {
            "name": name,
            "title": spec.title,
            "summary": spec.summary,
            "contentType": "application/json" if spec.model is not None else "application/octet-stream",
            "payload": {"$ref": schema_file(spec)},
            "bindings": {
                "kafka": {
                    "key": {"type": "string", "description": spec.key_description},
                    "bindingVersion": "0.5.0",
                }
            },
        }
        if spec.headers:
            message["headers"] = {
                "type": "object",
                "properties": {
                    header: {"type": "string", "description": text} for header, text in spec.headers.items()
                },
            }
        messages[name] = message
        for action, wanted in (("send", spec.service_writes), ("receive", spec.service_reads)):
            if wanted:
                operations[f"{action}{name[0].upper()}{name[1:]}"] = {
                    "action": action,
                    "channel": {"$ref": f"#/channels/{name}"},
                    "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
                }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "offload-bridge",
            "version": __version__,
            "description": "Kafka topics connecting the Offload case API to the teams that use it.",
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> dict[str, str]:
    """Every generated file's name and text."""
    files = {schema_file(spec): json.dumps(json_schema(spec), indent=2) + "\n" for spec in ALL_TOPICS}
    files[ASYNCAPI_FILE] = (
        "# Generated by `offload-bridge schemas export` from the pydantic models; do not edit.\n"
        + yaml.safe_dump(asyncapi(), sort_keys=False, width=100)
    )
    return files


def drifted(directory: Path = SCHEMAS_DIR) -> list[str]:
    """Names of generated files that are missing or differ from what the models give now."""
    return sorted(
        name
        for name, text in render().items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    )


def export(directory: Path = SCHEMAS_DIR) -> list[str]:
    """Write every generated file that changed; returns their names."""
    changed = drifted(directory)
    rendered = render()
    for name in changed:
        (directory / name).write_text(rendered[name])
    return changed


class ReleaseRefused(ValueError):
    """A baseline that would rewrite history or hide a breaking change."""


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def released_versions(released: Path = RELEASED_DIR) -> list[str]:
    """The versions that have a baseline under ``released``, oldest first."""
    if not released.is_dir():
        return []
    names = [path.name for path in released.iterdir() if path.is_dir() and VERSION_PATTERN.match(path.name)]
    return sorted(names, key=_version_key)


def check_compatibility(baseline: Path) -> list[Break]:
    """The breaking changes from the value schemas in ``baseline`` (a release's folder) to the models'."""
    version = baseline.name
    breaks: list[Break] = []
    current = {spec.name: spec for spec in ALL_TOPICS}
    for path in sorted(baseline.glob(f"*{SCHEMA_SUFFIX}")):
        topic = path.name.removesuffix(SCHEMA_SUFFIX)
        released = json.loads(path.read_text())
        spec = current.get(topic)
        if spec is not None:
            breaks += compare(topic, rule_for(spec), released, json_schema(spec), version)
        elif not released.get("deprecated"):
            what = f"topic removed; its writers and readers built on {version} have none (deprecate it first)"
            breaks.append(Break(topic, "(the topic)", None, what))
    return breaks


def release(version: str, released: Path = RELEASED_DIR, accept_breaking: bool = False) -> list[str]:
    """Keep today's value schemas as the baseline of release ``version``; returns the files written (none
    when that baseline already holds exactly them).

    Refused (``ReleaseRefused``) when ``version`` is no version, when its baseline exists with other schemas
    (a release is never rewritten), when a newer baseline exists, and when today's schemas break the newest
    baseline, unless ``accept_breaking``.
    """
    if not VERSION_PATTERN.match(version):
        raise ReleaseRefused(f"{version!r} is not a version like 1.2.3")
    files = {name: text for name, text in render().items() if name.endswith(SCHEMA_SUFFIX)}
    target = released / version
    if target.exists():
        kept = {path.name: path.read_text() for path in target.glob(f"*{SCHEMA_SUFFIX}")}
        if kept == files:
            return []
        raise ReleaseRefused(
            f"{target} exists and differs from the models: a released baseline is never "
            "rewritten; bump the version"
        )
    versions = released_versions(released)
    if versions and _version_key(versions[-1]) > _version_key(version):
        raise ReleaseRefused(f"a newer baseline exists: {released / versions[-1]}")
    if versions and not accept_breaking:
        breaks = check_compatibility(released / versions[-1])
        if breaks:
            raise ReleaseRefused(
                f"{len(breaks)} breaking change(s) against {versions[-1]}, the first: "
                f"{breaks[0]}; see `offload-bridge schemas check-compat`"
            )
    target.mkdir(parents=True)
    for name, text in files.items():
        (target / name).write_text(text)
    return sorted(files)
