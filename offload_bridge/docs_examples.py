"""The examples of the docs: every fenced code block of ``docs/**/*.md``, in the order of the site's pages.

The suite runs them as printed (``tests/test_docs_examples.py``), and the docs list the ones it does not run
(``offload_bridge.docs_reference.not_run_page``); both read them here, from the pages themselves, so no
copy of an example is kept anywhere else.

A block is an example when its language is ``sh`` or ``python``. Blocks with no language, ``text`` or
``json`` show output or data and are never run. A block in any other language (``sql``, ``yaml``, ...)
cannot be run here and must say so. An HTML comment on the line right above a block's fence, invisible
in the rendered page, tells the runner how to treat it:

- ``<!-- not run: why -->``: the suite does not run it; ``why`` is shown on the page of examples not run.
- ``<!-- until: TEXT -->``: a command that runs until stopped (``tail``, ``export --follow``): the runner
  waits for TEXT in its output, then interrupts it as Ctrl-C would, and expects a clean exit.
- ``<!-- scene: a question waits -->``: before the block, the runner makes sure a question waits for an
  answer: that of the case an earlier block of the page created, else of a case it creates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

RUNNABLE = frozenset({"sh", "python"})
SHOWN = frozenset({"", "text", "json"})  # output and data: never run
SCENES = frozenset({"a question waits"})

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+)(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>not run|until|scene):\s*(?P<text>.*?)\s*-->\s*$")


class BadExample(ValueError):
    """A page's block or marker the runner cannot take as it is."""


@dataclass(frozen=True)
class Example:
    page: str  # relative to the docs directory, with forward slashes
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    not_run: str | None = None  # why, when the suite does not run it
    until: str | None = None
    scene: str | None = None

    @property
    def runs(self) -> bool:
        return self.language in RUNNABLE and self.not_run is None

    @property
    def where(self) -> str:
        return f"docs/{self.page}:{self.line}"


def page_examples(docs_dir: Path, page: str) -> list[Example]:
    """The fenced blocks of one page, in order."""
    lines = (docs_dir / page).read_text().splitlines()
    found: list[Example] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        indent, fence = opening.group("indent"), opening.group("fence")
        language = opening.group("info").strip().split(" ", 1)[0].lower()
        body: list[str] = []
        end = index + 1
        while end < len(lines) and lines[end].strip() != fence:
            body.append(lines[end][len(indent) :] if lines[end].startswith(indent) else lines[end].lstrip())
            end += 1
        if end == len(lines):
            raise BadExample(f"docs/{page}:{index + 1}: a code block that never closes")
        markers: dict[str, str] = {}
        before = index - 1
        while before >= 0 and (marker := _MARKER.match(lines[before])) is not None:
            markers[marker.group("kind")] = marker.group("text")
            before -= 1
        found.append(
            Example(
                page=page,
                line=index + 1,
                language=language,
                code="\n".join(body) + "\n",
                not_run=markers.get("not run"),
                until=markers.get("until"),
                scene=markers.get("scene"),
            )
        )
        index = end + 1
    return found


def _nav_pages(entries: Any) -> list[str]:
    pages: list[str] = []
    for entry in entries if isinstance(entries, list) else [entries]:
        if isinstance(entry, str):
            pages.append(entry)
        elif isinstance(entry, dict):
            for value in entry.values():
                pages += _nav_pages(value)
    return pages


def site_pages(docs_dir: Path) -> list[str]:
    """The pages of the site's navigation that exist in ``docs_dir``, in order (generated ones are not)."""
    config = yaml.safe_load((docs_dir.parent / "mkdocs.yml").read_text())
    return [page for page in _nav_pages(config["nav"]) if (docs_dir / page).is_file()]


def examples(docs_dir: Path) -> list[Example]:
    """Every block of every page of the site, in the order a reader meets them."""
    return [example for page in site_pages(docs_dir) for example in page_examples(docs_dir, page)]


def problems(found: list[Example]) -> list[str]:
    """What is wrong with the marks of these blocks: each one the runner could not take as it is."""
    wrong: list[str] = []
    for example in found:
        if example.not_run is not None and not example.not_run.strip():
            wrong.append(f"{example.where}: `not run` without saying why")
        if example.language not in RUNNABLE | SHOWN and example.not_run is None:
            wrong.append(
                f"{example.where}: a {example.language} block runs nowhere: mark it <!-- not run: why -->"
            )
        if example.language in SHOWN and (example.not_run or example.until or example.scene):
            wrong.append(f"{example.where}: an output block is never run; drop its marker")
        if example.scene is not None and example.scene not in SCENES:
            wrong.append(f"{example.where}: unknown scene {example.scene!r} (known: {sorted(SCENES)})")
        if example.until is not None and example.language != "sh":
            wrong.append(f"{example.where}: `until` applies to a shell command")
    return wrong
