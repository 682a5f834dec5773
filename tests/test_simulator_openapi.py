"""The simulator's OpenAPI document says what the simulator does: checked by openapi-spec-validator, then by
schemathesis against a running simulator (positive and negative requests, every check it has)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

from offload_bridge.simulator.testing import DEFAULT_API_KEY, RunningSimulator, simulator_process
from tests.schemathesis_support import run_schemathesis

# Bounded: a fixed number of examples per operation and a fixed seed, so a run takes the same requests
# (and about 30 s) every time.


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    # Cases never move on during the run: no webhook goes to the URLs the fuzzer makes up.
    with simulator_process("--step-ms", "3600000") as running:
        yield running


@pytest.fixture(scope="module")
def document(sim: RunningSimulator) -> dict[str, Any]:
    response = sim.http.get("/_sim/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)


def test_the_document_says_what_each_operation_answers(document: dict[str, Any]) -> None:
    paths = document["paths"]
    assert set(paths) == {
        "/cases",
        "/cases/{caseId}",
        "/cases/{caseId}/input",
        "/cases/{caseId}/attachments/{attachmentId}",
    }, "Offload's API only: the /_sim control surface is left out"
    create, read, answer = (
        paths["/cases"]["post"],
        paths["/cases/{caseId}"]["get"],
        paths["/cases/{caseId}/input"]["post"],
    )
    assert set(create["responses"]) == {"201", "400", "401", "403", "429", "500", "502", "503"}
    assert set(answer["responses"]) == {"202", "400", "401", "403", "404", "409", "429", "500", "502", "503"}
    assert set(read["responses"]) == {"200", "400", "401", "403", "404", "429", "500", "502", "503"}
    assert not [op for path in paths.values() for op in path.values() if "422" in op["responses"]]
    assert create["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/CreateCaseRequest"
    )
    assert answer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ProvideInputRequest"
    )
    assert [p["name"] for p in read["parameters"]] == ["caseId", "includeTranscript"]
    assert document["components"]["securitySchemes"] == {
        "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}
    }
    assert document["security"] == [{"apiKey": []}]
    envelope = document["components"]["schemas"]["ErrorEnvelope"]
    assert set(envelope["required"]) == {"ok", "error"}


def test_schemathesis_finds_no_mismatch_with_the_running_simulator(
    sim: RunningSimulator, tmp_path: Path
) -> None:
    result = run_schemathesis(
        f"{sim.base_url}/_sim/openapi.json",
        "examples,coverage,fuzzing,stateful",
        10,
        tmp_path,
        "--header",
        f"x-api-key: {DEFAULT_API_KEY}",
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "4 selected / 4 total" in result.stdout
