"""The Offload API client against the simulator over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from pydantic import HttpUrl, SecretStr

from offload_bridge.settings import Settings
from offload_bridge.simulator.testing import RunningSimulator, WebhookReceiver, simulator_process
from offload_bridge.streams.offload_api import OffloadApi, OffloadReply, OffloadUnreachable
from offload_bridge.testing import free_port


@pytest.fixture(scope="module")
def sim() -> Iterator[RunningSimulator]:
    with simulator_process("--step-ms", "50", "--seed", "1") as running:
        yield running


def _api(sim: RunningSimulator, key: str = "dev-key") -> OffloadApi:
    return OffloadApi(Settings(offload_base_url=HttpUrl(sim.base_url), offload_api_key=SecretStr(key)))


async def _call(api: OffloadApi, method: str, *args: str) -> OffloadReply:
    """One call on a fresh client, closed afterwards."""
    try:
        result: OffloadReply = await getattr(api, method)(*args)
        return result
    finally:
        await api.aclose()


def test_answer_accepted_then_resent(sim: RunningSimulator) -> None:
    with WebhookReceiver() as receiver:
        case_id = sim.create_case(receiver.url, scenario="input_then_complete")
        event = receiver.wait_for_event(case_id, "case.input_needed")
    request_id = event["data"]["inputRequestId"]

    accepted = asyncio.run(_call(_api(sim), "submit_input", case_id, request_id, " Yes. "))
    again = asyncio.run(_call(_api(sim), "submit_input", case_id, request_id, "Yes."))

    assert accepted.status == 202 and accepted.data == {
        "caseId": case_id,
        "inputRequestId": request_id,
        "accepted": True,
    }
    assert again.status == 409
    assert again.error_code in {"INPUT_REQUEST_NOT_PENDING", "CASE_NOT_WAITING_FOR_INPUT"}
    case = asyncio.run(_call(_api(sim), "get_case", case_id))
    assert case.ok and case.data is not None and case.data["caseId"] == case_id


def test_the_transcript_comes_only_when_asked_for(sim: RunningSimulator) -> None:
    case_id = sim.create_case(scenario="input_then_complete")
    sim.wait_for_truth(case_id, lambda truth: truth["status"] == "INPUT_NEEDED")
    plain = asyncio.run(_call(_api(sim), "get_case", case_id))

    async def with_transcript(api: OffloadApi) -> OffloadReply:
        try:
            return await api.get_case(case_id, include_transcript=True)
        finally:
            await api.aclose()

    full = asyncio.run(with_transcript(_api(sim)))
    assert plain.data is not None and plain.data["conversationThread"] is None
    assert full.data is not None
    assert full.data["conversationThread"] == sim.truth(case_id)["conversationThread"]
    assert "Collect a signed W-9" in full.data["conversationThread"]
    assert [read["includeTranscript"] for read in sim.truth(case_id)["reads"]] == [False, True]


def test_errors_keep_offloads_codes(sim: RunningSimulator) -> None:
    missing = asyncio.run(_call(_api(sim), "get_case", "no-such-case"))
    unauthorized = asyncio.run(_call(_api(sim, key="wrong-key"), "get_case", "no-such-case"))
    assert (missing.status, missing.error_code, missing.enveloped) == (404, "CASE_NOT_FOUND", True)
    assert (unauthorized.status, unauthorized.error_code) == (401, "UNAUTHORIZED")


def test_case_ids_cannot_change_the_path(sim: RunningSimulator) -> None:
    reply = asyncio.run(_call(_api(sim), "get_case", "../_sim/health"))
    assert reply.status == 404, "the id must stay one path segment, never reach /_sim/health"


def test_a_bare_gateway_502_is_read_without_an_envelope(sim: RunningSimulator) -> None:
    sim.set_faults(endpoints={"get_case": {"rate": 1.0, "error": "502-bare"}})
    try:
        reply = asyncio.run(_call(_api(sim), "get_case", "any"))
    finally:
        sim.reset()
    assert reply.status == 502 and reply.enveloped is False and reply.error_code is None


def test_refused_connection_never_reached_offload() -> None:
    api = OffloadApi(Settings(offload_base_url=HttpUrl(f"http://127.0.0.1:{free_port()}")))
    with pytest.raises(OffloadUnreachable) as caught:
        asyncio.run(api.create_case({}))
    assert caught.value.reached is False
