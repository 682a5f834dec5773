"""The reference pages of the docs, rendered from the code at build time, so that they cannot drift.

``docs/hooks.py`` (a MkDocs hook) adds each page of ``reference_pages()`` to the site as it builds; nothing
here is written into ``docs/``. Every page is Markdown made from one source of truth:

- settings: the two settings models, ``Settings`` (``offload_bridge.settings``) and ``SimulatorSettings``
  (``offload_bridge.simulator.settings``): each field's variable, type, default, bounds and description;
- the command line: the parser of ``offload-bridge`` (``offload_bridge.cli.build_parser``);
- topics: the topic registry (``offload_bridge.topics``) and the JSON Schemas made from its models;
- HTTP APIs: the OpenAPI documents of the ingress and of the simulator;
- the examples the suite does not run: the markers in the pages themselves (``offload_bridge.docs_examples``).

``undescribed()`` lists what has no description; the suite fails while it lists anything.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import re
import textwrap
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import HttpUrl, SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from offload_bridge import __version__, contracts
from offload_bridge.docs_examples import Example, examples
from offload_bridge.settings import Settings
from offload_bridge.topics import ALL_TOPICS, TopicSpec

SETTINGS_PAGE = "reference/settings.md"
CLI_PAGE = "reference/cli.md"
TOPICS_PAGE = "reference/topics.md"
HTTP_PAGE = "reference/http.md"
NOT_RUN_PAGE = "reference/examples-not-run.md"
SCHEMAS_DIR = "reference/schemas"
OPENAPI_DIR = "reference/openapi"
GENERATED_NOTE = (
    "<!-- Generated at build time by offload_bridge/docs_reference.py: edit the code, not this. -->"
)


def _cell(text: str) -> str:
    """Text for one cell of a Markdown table: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


# --- settings -------------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\s*# --- (?P<title>.+?) -*$")


def _sections(model: type[BaseSettings]) -> dict[str, str]:
    """Field name -> the title of the ``# --- Title ---`` comment above it in the model's source."""
    source = textwrap.dedent(inspect.getsource(model))
    lines = source.splitlines()
    tree = ast.parse(source)
    [cls] = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    sections: dict[str, str] = {}
    current = "General"
    last_line = 0
    for node in cls.body:
        for line in lines[last_line : node.lineno - 1]:
            match = _SECTION.match(line)
            if match:
                current = match.group("title").strip()
        last_line = node.lineno - 1
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            sections[node.target.id] = current
    return sections


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(_code(str(value)) for value in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return " or ".join(_type_name(part) for part in parts)
    names = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean (`true` / `false`)",
        Path: "path",
        SecretStr: "secret string (never logged)",
        HttpUrl: "URL",
    }
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _default(field: FieldInfo) -> str:
    value = field.default
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return _code(str(value).lower())
    if isinstance(value, str) and value == "":
        return "empty"
    if isinstance(value, float) and value.is_integer():
        return _code(str(int(value)))
    return _code(str(value))


def _bounds(field: FieldInfo) -> str:
    words: list[str] = []
    for item in field.metadata:
        if isinstance(item, Ge):
            words.append(f"≥ {item.ge}")
        elif isinstance(item, Gt):
            words.append(f"> {item.gt}")
        elif isinstance(item, Le):
            words.append(f"≤ {item.le}")
        elif isinstance(item, Lt):
            words.append(f"< {item.lt}")
        elif isinstance(item, MinLen):
            words.append(f"at least {item.min_length} characters")
        elif isinstance(item, MaxLen):
            words.append(f"at most {item.max_length} characters")
        elif getattr(item, "pattern", None):
            words.append(f"matches {_code(item.pattern)}")
    return ", ".join(words)


def settings_models() -> list[tuple[str, type[BaseSettings]]]:
    from offload_bridge.simulator.settings import SimulatorSettings

    return [("offload-bridge", Settings), ("The simulator", SimulatorSettings)]


def _variable(model: type[BaseSettings], name: str) -> str:
    return (str(model.model_config.get("env_prefix", "")) + name).upper()


def _settings_table(model: type[BaseSettings]) -> Iterator[str]:
    sections = _sections(model)
    current = None
    for name, field in model.model_fields.items():
        section = sections.get(name, "General")
        if section != current:
            current = section
            yield f"\n### {section}\n"
            yield "| variable | type | default | description |"
            yield "|---|---|---|---|"
        bounds = _bounds(field)
        kind = _type_name(field.annotation) + (f"; {bounds}" if bounds else "")
        variable = _variable(model, name)
        yield (
            f'| <span id="{variable}"></span>{_code(variable)} | {_cell(kind)} | {_cell(_default(field))} '
            f"| {_cell(field.description or '')} |"
        )


def settings_page() -> str:
    lines = [
        GENERATED_NOTE,
        "# Settings",
        "",
        "Every setting is an environment variable, read once at start. A bad value stops",
        "the command with one",
        "line naming the variable. Generated from the settings models (`offload_bridge/settings.py`,",
        "`offload_bridge/simulator/settings.py`): the code is the only place a setting is described.",
    ]
    for title, model in settings_models():
        lines += ["", f"## {title}", "", f"`{model.__module__}.{model.__name__}`"]
        lines += list(_settings_table(model))
    return "\n".join(lines) + "\n"


# --- the command line -----------------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def commands(
    parser: argparse.ArgumentParser | None = None, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str, argparse.ArgumentParser]]:
    """Every command of ``offload-bridge``, depth first: (words, help, its parser)."""
    if parser is None:
        from offload_bridge.cli import build_parser

        parser = build_parser()
    for name, text, sub in _subcommands(parser):
        yield (*path, name), text, sub
        yield from commands(sub, (*path, name))


def options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The arguments and options of one command, without help and subcommands."""
    return [
        action
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
    ]


def _option_name(action: argparse.Action) -> str:
    if action.option_strings:
        takes_value = action.nargs != 0
        metavar = action.metavar or (action.dest.upper() if takes_value else None)
        if action.choices is not None and action.metavar is None:
            metavar = "{" + ",".join(map(str, action.choices)) + "}"
        return ", ".join(action.option_strings) + (f" {metavar}" if takes_value and metavar else "")
    return str(action.metavar or action.dest.upper())


def _usage(parser: argparse.ArgumentParser) -> str:
    return " ".join(parser.format_usage().removeprefix("usage: ").split())


def cli_page() -> str:
    lines = [
        GENERATED_NOTE,
        "# Command line",
        "",
        "Every command of `offload-bridge` and its options, generated from its parser",
        "(`offload_bridge.cli.build_parser()`). Each command prints a one-line error on stderr and exits",
        "non-zero when something is wrong; `offload-bridge COMMAND --help` prints the same help.",
        "From a checkout, `. .venv/bin/activate` puts `offload-bridge` on PATH (or run",
        "`.venv/bin/offload-bridge`).",
    ]
    for words, text, parser in commands():
        level = "#" * (1 + len(words))
        lines += ["", f"{level} `offload-bridge {' '.join(words)}`", "", text[:1].upper() + text[1:] + "."]
        if any(True for _ in _subcommands(parser)):
            continue
        lines += ["", "```text", _usage(parser), "```"]
        listed = options(parser)
        if listed:
            lines += ["", "| argument | default | description |", "|---|---|---|"]
            for action in listed:
                default = action.default
                shown = "" if default in (None, False, argparse.SUPPRESS) else _code(str(default))
                lines.append(f"| {_code(_option_name(action))} | {shown} | {_cell(action.help or '')} |")
    return "\n".join(lines) + "\n"


# --- topics ---------------------------------------------------------------------------------------------


def _schema_type(schema: dict[str, Any], definitions: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        target = definitions.get(name, {})
        if "enum" in target:
            return _schema_type(target, definitions)
        return f"object ({name})"
    if "anyOf" in schema:
        parts = [_schema_type(part, definitions) for part in schema["anyOf"]]
        return " or ".join(dict.fromkeys(parts))
    if "enum" in schema:
        return "one of " + ", ".join(_code(str(value)) for value in schema["enum"])
    if "x-extensible-enum" in schema:
        known = ", ".join(_code(str(value)) for value in schema["x-extensible-enum"])
        return f"string, open: {known} or a value added later"
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_schema_type(schema.get('items', {}), definitions)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map of {_schema_type(schema['additionalProperties'], definitions)}"
    if isinstance(kind, str):
        return kind
    return "any"


def _value_fields(spec: TopicSpec) -> Iterator[str]:
    if spec.model is None:
        return
    schema = contracts.json_schema(spec)
    definitions = schema.get("$defs", {})
    required = set(schema.get("required", []))
    yield ""
    yield "| field | type | required | description |"
    yield "|---|---|---|---|"
    for name, field in schema.get("properties", {}).items():
        kind = _schema_type(field, definitions)
        needed = "yes" if name in required else ""
        yield f"| {_code(name)} | {_cell(kind)} | {needed} | {_cell(field.get('description', ''))} |"


def _retention(spec: TopicSpec) -> str:
    config = spec.config()
    if spec.retention is None:
        return "compacted: the latest record of each key"
    ms = int(config["retention.ms"])
    kept = "forever" if ms == -1 else f"{ms // 86_400_000} days"
    return f"{kept} (`retention.ms={ms}`). {spec.retention.why}"


def topics_page() -> str:
    lines = [
        GENERATED_NOTE,
        "# Topics",
        "",
        "Every topic, generated from the topic registry (`offload_bridge/topics.py`), where each is declared",
        "once. Names are shown with the default `OFFLOAD_TOPIC_PREFIX` (`offload.`).",
        "Retention and configs are",
        "what `offload-bridge topics create` sets with the default settings. The value schemas are the JSON",
        "Schemas generated from the models (`schemas/*.schema.json`); the AsyncAPI document of all topics is",
        f"[asyncapi.yaml]({Path(SCHEMAS_DIR).name}/{contracts.ASYNCAPI_FILE}).",
        "",
        "| topic | key | value | kept |",
        "|---|---|---|---|",
    ]
    for spec in ALL_TOPICS:
        value = spec.model.__name__ if spec.model is not None else "bytes as received"
        kept = "compacted" if spec.retention is None else _retention(spec).split(" (", 1)[0]
        anchor = spec.name.replace(".", "")
        lines.append(f"| [`offload.{spec.name}`](#{anchor}) | {spec.key_description} | {value} | {kept} |")
    for spec in ALL_TOPICS:
        schema_link = (
            f"[{contracts.schema_file(spec)}]({Path(SCHEMAS_DIR).name}/{contracts.schema_file(spec)})"
        )
        value = (
            f"{spec.model.__name__}, {schema_link}" if spec.model is not None else f"any bytes, {schema_link}"
        )
        configs = ", ".join(f"`{name}={setting}`" for name, setting in spec.config().items())
        lines += [
            "",
            f"## `offload.{spec.name}` {{#{spec.name.replace('.', '')}}}",
            "",
            f"{spec.title}: {spec.summary}",
            "",
            "| | |",
            "|---|---|",
            f"| key | {_cell(spec.key_description)} |",
            f"| value | {value} |",
            f"| partitioning | {_cell(spec.partitioning)} |",
            f"| kept | {_cell(_retention(spec))} |",
            f"| configs | {configs} |",
            f"| written by | {', '.join(party.value for party in spec.writers)} |",
            f"| read by | {', '.join(party.value for party in spec.readers)} |",
        ]
        if spec.headers:
            lines += ["", "Headers:", "", "| header | holds |", "|---|---|"]
            lines += [f"| `{name}` | {_cell(text)} |" for name, text in spec.headers.items()]
        fields = list(_value_fields(spec))
        if fields:
            lines += ["", "Value fields (top level):", *fields]
    return "\n".join(lines) + "\n"


# --- HTTP APIs ------------------------------------------------------------------------------------------


def openapi_documents() -> list[tuple[str, str, dict[str, Any]]]:
    """(title, file name, document) of each HTTP API with an OpenAPI document."""
    from offload_bridge.ingress.openapi import openapi_document as ingress_document
    from offload_bridge.simulator.openapi import openapi_document as simulator_document

    return [
        ("The ingress", "ingress.json", ingress_document(__version__)),
        ("The simulator (Offload's API)", "simulator.json", simulator_document(__version__)),
    ]


_METHODS = ("get", "put", "post", "delete", "patch", "head")


def _resolve(document: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in item:
        node: Any = document
        for part in str(item["$ref"]).removeprefix("#/").split("/"):
            node = node[part]
        item = node
    return item


def _body_name(document: dict[str, Any], operation: dict[str, Any]) -> str:
    body = operation.get("requestBody")
    if not body:
        return ""
    content = _resolve(document, body).get("content", {})
    names = []
    for media, entry in content.items():
        schema = entry.get("schema", {})
        ref = schema.get("$ref") or next((s.get("$ref") for s in schema.get("oneOf", [])), None)
        names.append(f"{media}" + (f" ({str(ref).rsplit('/', 1)[-1]})" if ref else ""))
    return ", ".join(names)


def http_page() -> str:
    lines = [
        GENERATED_NOTE,
        "# HTTP APIs",
        "",
        "Generated from the OpenAPI documents the processes serve (`GET /openapi.json` on the ingress,",
        "`GET /_sim/openapi.json` on the simulator); each document is also here in full. The worker's query",
        "API has no OpenAPI document: its routes are described in",
        "[Consume events downstream](../how-to/consume-events.md#the-workers-query-api).",
    ]
    for title, file_name, document in openapi_documents():
        info = document["info"]
        lines += [
            "",
            f"## {title}",
            "",
            _cell(info.get("description", "")),
            "",
            f"OpenAPI {document['openapi']}: [{file_name}]({Path(OPENAPI_DIR).name}/{file_name}).",
        ]
        for path, item in document["paths"].items():
            for method in _METHODS:
                operation = item.get(method)
                if operation is None:
                    continue
                lines += ["", f"### `{method.upper()} {path}`", "", _cell(operation.get("summary", ""))]
                if operation.get("description"):
                    lines += ["", _cell(operation["description"])]
                parameters = [
                    _resolve(document, p)
                    for p in [*item.get("parameters", []), *operation.get("parameters", [])]
                ]
                if parameters:
                    lines += ["", "| parameter | in | required | description |", "|---|---|---|---|"]
                    for parameter in parameters:
                        required = "yes" if parameter.get("required") else ""
                        lines.append(
                            f"| `{parameter['name']}` | {parameter['in']} | {required} "
                            f"| {_cell(parameter.get('description', ''))} |"
                        )
                body = _body_name(document, operation)
                if body:
                    lines += ["", f"Body: {body}."]
                lines += ["", "| status | meaning |", "|---|---|"]
                for status, response in operation.get("responses", {}).items():
                    lines.append(
                        f"| {status} | {_cell(_resolve(document, response).get('description', ''))} |"
                    )
    return "\n".join(lines) + "\n"


# --- examples not run -----------------------------------------------------------------------------------


def not_run_page(docs_dir: Path) -> str:
    skipped: list[Example] = [example for example in examples(docs_dir) if example.not_run is not None]
    lines = [
        GENERATED_NOTE,
        "# Examples not run in the suite",
        "",
        "Every example in these pages runs in the test suite as printed",
        "(`tests/test_docs_examples.py`, against",
        "a real broker, simulator, ingress and worker), except those below: each page marks them with a",
        "`<!-- not run: why -->` comment before the block, and this list is made from those marks.",
        "",
        "| page | example | why not |",
        "|---|---|---|",
    ]
    for example in skipped:
        first = next((line for line in example.code.splitlines() if line.strip()), "")
        link = f"[{example.page}](../{example.page})"
        lines.append(
            f"| {link}, line {example.line} | {_code(_cell(first))} | {_cell(example.not_run or '')} |"
        )
    return "\n".join(lines) + "\n"


def reference_pages(docs_dir: Path) -> dict[str, str]:
    """Site path -> content of every generated file: the pages, the JSON Schemas and OpenAPI documents."""
    pages = {
        SETTINGS_PAGE: settings_page(),
        CLI_PAGE: cli_page(),
        TOPICS_PAGE: topics_page(),
        HTTP_PAGE: http_page(),
        NOT_RUN_PAGE: not_run_page(docs_dir),
    }
    for name, content in contracts.render().items():
        pages[f"{SCHEMAS_DIR}/{name}"] = content
    for _, file_name, document in openapi_documents():
        pages[f"{OPENAPI_DIR}/{file_name}"] = json.dumps(document, indent=2) + "\n"
    return pages


# --- what has no description ----------------------------------------------------------------------------


def undescribed() -> list[str]:
    """Every setting, command, option and topic without a description, named; empty when all have one."""
    missing: list[str] = []
    for _, model in settings_models():
        missing += [
            f"setting {_variable(model, name)}"
            for name, field in model.model_fields.items()
            if not (field.description or "").strip()
        ]
    for words, text, parser in commands():
        command = "offload-bridge " + " ".join(words)
        if not text.strip():
            missing.append(f"command {command}")
        missing += [
            f"option {_option_name(action)} of {command}"
            for action in options(parser)
            if not (action.help or "").strip()
        ]
    for spec in ALL_TOPICS:
        if not spec.summary.strip() or not spec.title.strip():
            missing.append(f"topic {spec.name}")
        missing += [
            f"header {name} of topic {spec.name}" for name, text in spec.headers.items() if not text.strip()
        ]
    return missing
