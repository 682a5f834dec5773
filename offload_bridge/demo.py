"""``offload-bridge run --demo``: a handful of simulator cases, watched and answered in the terminal."""

from __future__ import annotations

import sys
import time
from typing import Any, Protocol

import httpx

from offload_bridge.answers import AnswerSubmitter
from offload_bridge.settings import Settings
from offload_bridge.tail import follow, human_line

SCENARIOS = (
    "complete",
    "input_then_complete",
    "input_twice_then_complete",
    "fail_max_retries",
    "fail_bounced",
)
TERMINAL = frozenset({"COMPLETED", "FAILED"})
DEMO_ANSWER = "Yes. A signed PDF is fine; please send it before Friday 5 PM PT."
# The key `offload-bridge run` gives the simulator and the demo uses to create cases.
SIMULATOR_KEY = "dev-key"


class RunningStack(Protocol):
    """What the demo needs of the running stack (``offload_bridge.run.Stack``)."""

    settings: Settings

    @property
    def uses_simulator(self) -> bool: ...

    @property
    def offload_url(self) -> str: ...

    @property
    def webhook_url(self) -> str: ...

    def check_alive(self) -> None: ...


def _case_body(webhook_url: str, scenario: str, number: int) -> dict[str, Any]:
    return {
        "clientReferenceId": f"demo_{number}_{scenario}",
        "channel": "EMAIL",
        "maxAttempts": 3,
        "goal": {"objective": "Collect a signed W-9 from the vendor", "knowledge": {"vendor": "Northstar"}},
        "counterparty": {"address": f"ap{number}@northstar.example", "name": "Maya Chen"},
        "senderPersona": {"name": "Avery", "role": "Accounts Payable"},
        "resultSchema": {"type": "object", "properties": {"signedW9Received": {"type": "boolean"}}},
        "clientWebhookUrl": webhook_url,
        "metadata": {"simScenario": scenario, "demo": True},
    }


def create_demo_cases(stack: RunningStack) -> dict[str, str]:
    """One case per scenario; returns caseId -> scenario."""
    cases: dict[str, str] = {}
    with httpx.Client(base_url=stack.offload_url, headers={"x-api-key": SIMULATOR_KEY}, timeout=30) as http:
        for number, scenario in enumerate(SCENARIOS, start=1):
            response = http.post("/cases", json=_case_body(stack.webhook_url, scenario, number))
            response.raise_for_status()
            case_id = response.json()["data"]["caseId"]
            cases[case_id] = scenario
            print(f"demo       created case {case_id} ({scenario})", flush=True)
    return cases


def run_demo(stack: RunningStack) -> None:
    """Create the cases, print every state change and outcome, answer each question once."""
    if not stack.uses_simulator:
        print("demo       needs the simulator: unset OFFLOAD_API_KEY", file=sys.stderr)
        return
    colour = sys.stdout.isatty()
    cases: dict[str, str] = {}
    answered: set[str] = set()
    finished: set[str] = set()
    with AnswerSubmitter(stack.settings) as submitter:
        for record in follow(
            stack.settings,
            topics=("case-state", "answer-outcomes"),
            stop=lambda: bool(cases) and len(finished) == len(cases),
            positioned=lambda: cases.update(create_demo_cases(stack)),
        ):
            stack.check_alive()
            if record.key not in cases:
                continue
            print(human_line(record, colour), flush=True)
            state = record.value if record.topic == "case-state" and isinstance(record.value, dict) else {}
            question = state.get("inputRequest") or {}
            if question.get("status") == "PENDING" and question.get("id") not in answered:
                answered.add(question["id"])
                answer_id = submitter.publish(record.key, question["id"], DEMO_ANSWER, submitted_by="demo")
                print(f"demo       answered {question['id']} with {answer_id}", flush=True)
            if state.get("status") in TERMINAL:
                finished.add(record.key)
    print(f"demo       all {len(cases)} cases finished at {time.strftime('%H:%M:%S')}", flush=True)
