"""The docs: a short README that points into docs/, a reference with a description for everything it lists,
and examples whose marks the runner can take (the examples themselves run in test_docs_examples.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from offload_bridge import docs_reference
from offload_bridge.docs_examples import Example, examples, page_examples, problems, site_pages
from offload_bridge.topics import ALL_TOPICS

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README_MAX_LINES = 150


def test_the_readme_is_short_and_every_link_of_it_leads_to_a_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\((docs/[^)#]+)(?:#[^)]*)?\)", readme)
    assert links, "the README points at no page of the docs"
    missing = [link for link in links if not (ROOT / link).is_file()]
    assert missing == []


def test_every_setting_command_option_and_topic_has_a_description() -> None:
    assert docs_reference.undescribed() == []


def test_the_reference_lists_every_setting_command_and_topic() -> None:
    settings = docs_reference.settings_page()
    for _, model in docs_reference.settings_models():
        for name in model.model_fields:
            variable = (str(model.model_config.get("env_prefix", "")) + name).upper()
            assert f"`{variable}`" in settings, variable
    cli = docs_reference.cli_page()
    for words, _, _ in docs_reference.commands():
        assert f"`offload-bridge {' '.join(words)}`" in cli, words
    topics = docs_reference.topics_page()
    for spec in ALL_TOPICS:
        assert f"## `offload.{spec.name}`" in topics, spec.name


def test_a_setting_without_a_description_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    from offload_bridge.settings import Settings

    field = Settings.model_fields["offload_topic_prefix"]
    monkeypatch.setattr(field, "description", "")
    assert docs_reference.undescribed() == ["setting OFFLOAD_TOPIC_PREFIX"]


def test_every_page_of_the_docs_is_in_the_site() -> None:
    written = {str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md")}
    assert written - set(site_pages(DOCS)) == set()


def test_every_block_of_the_docs_is_marked_as_the_runner_needs() -> None:
    found = examples(DOCS)
    assert problems(found) == []
    assert sum(example.runs for example in found) >= 30


def test_the_marks_are_read_from_the_line_above_a_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- not run: needs a cloud -->\n```sh\naws s3 ls\n```\n\n"
        "<!-- until: following -->\n```sh\noffload-bridge tail\n```\n\n"
        "  ```sql\n  SELECT 1;\n  ```\n\n```text\noutput\n```\n"
    )
    cloud, tail, sql, output = page_examples(tmp_path, "page.md")
    assert (cloud.not_run, cloud.runs, cloud.code) == ("needs a cloud", False, "aws s3 ls\n")
    assert (tail.until, tail.runs) == ("following", True)
    assert (sql.code, sql.line) == ("SELECT 1;\n", 11)
    assert problems([sql]) == ["docs/page.md:11: a sql block runs nowhere: mark it <!-- not run: why -->"]
    assert not output.runs and problems([output]) == []
    assert problems([Example("p.md", 1, "sh", "x\n", not_run=" ")]) == [
        "docs/p.md:1: `not run` without saying why"
    ]


def test_the_page_of_examples_not_run_lists_exactly_the_marked_ones() -> None:
    listed = docs_reference.not_run_page(DOCS)
    marked = [example for example in examples(DOCS) if example.not_run is not None]
    rows = [line for line in listed.splitlines() if line.startswith("| [")]
    assert len(rows) == len(marked)
    for example, row in zip(marked, rows, strict=True):
        assert f"line {example.line}" in row and example.page in row and (example.not_run or "") in row
