"""The checked-in JSON Schemas and AsyncAPI document match the models, and cover every topic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from offload_bridge import contracts
from offload_bridge.topics import ALL_TOPICS


def test_every_topic_has_exactly_one_contract() -> None:
    schema_files = [name for name in contracts.render() if name.endswith(".schema.json")]
    assert schema_files == [f"{spec.name}.schema.json" for spec in ALL_TOPICS]


def test_checked_in_files_match_the_models() -> None:
    stale = contracts.drifted()
    assert stale == [], f"run `offload-bridge schemas export`; stale: {stale}"


def test_drift_is_detected_and_export_repairs_it(tmp_path: Path) -> None:
    assert contracts.export(tmp_path) == sorted(contracts.render())
    state = tmp_path / "case-state.schema.json"
    state.write_text(state.read_text().replace('"caseId"', '"case_id"'))
    command = [sys.executable, "-m", "offload_bridge.cli", "schemas", "export", "--dir", str(tmp_path)]
    check = subprocess.run([*command, "--check"], capture_output=True, text=True, env=os.environ, timeout=60)
    assert check.returncode == 1 and "case-state.schema.json" in check.stdout
    subprocess.run(command, check=True, capture_output=True, env=os.environ, timeout=60)
    assert contracts.drifted(tmp_path) == []


def test_schemas_describe_the_model_fields() -> None:
    state = json.loads((contracts.SCHEMAS_DIR / "case-state.schema.json").read_text())
    assert {"caseId", "status", "inputRequest", "answers", "lastEventAt"} <= set(state["properties"])
    answer = json.loads((contracts.SCHEMAS_DIR / "answers.schema.json").read_text())
    assert set(answer["required"]) == {"caseId", "inputRequestId", "providedContext"}


def test_asyncapi_names_every_topic_with_its_key_and_payload() -> None:
    document = yaml.safe_load((contracts.SCHEMAS_DIR / "asyncapi.yaml").read_text())
    assert document["asyncapi"] == "3.0.0"
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == {f"offload.{spec.name}" for spec in ALL_TOPICS}
    for message in document["components"]["messages"].values():
        assert (contracts.SCHEMAS_DIR / message["payload"]["$ref"]).exists()
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    events = document["components"]["messages"]["caseEvents"]
    assert set(events["headers"]["properties"]) == {"event_type", "event_id", "received_at", "source"}
    assert {op["action"] for op in document["operations"].values()} == {"send", "receive"}
