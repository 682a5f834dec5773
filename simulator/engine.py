"""The lifecycle engine: each case runs its scenario as an asyncio task, one step every ``step_ms``.

Every case starts CREATED with attemptCount 0; one step later the first email goes out (RUNNING,
attemptCount 1). What follows is the case's scenario, chosen by ``metadata.simScenario``:

- ``complete`` (default): the counterparty replies; COMPLETED, resultStatus ``goal_achieved``, a ``result``
  with a value for every property of ``resultSchema`` (so its required fields are satisfied);
  webhook ``case.completed``.
- ``input_then_complete``: INPUT_NEEDED with a question (webhook ``case.input_needed``), waiting as long as it
  takes for the answer; then as ``complete``.
- ``input_twice_then_complete``: asks, and after the first answer asks a second question with a new
  inputRequestId; then as ``complete``.
- ``fail_max_retries``: no reply; one follow-up per step until attemptCount reaches maxAttempts, then FAILED
  with resultStatus ``max_retries`` (failureReason null); webhook ``case.failed``.
- ``fail_bounced``: the first email bounces; FAILED with resultStatus ``BOUNCED`` and a failureReason.

After an answer is accepted the input request is RESOLVED at once while the case still reads INPUT_NEEDED
for one more step; then the reply goes out (RUNNING) and the scenario moves on. Follow-ups come one step
apart whatever ``followUpDelayHours`` says: time is compressed, and ``nextActionAt`` is the real time of
the next step (253402300799999 when nothing is scheduled: waiting for input, or terminal).

Other per-case knobs in ``metadata``: ``simStepMs`` (this case's step), ``simLatencyMs`` (added to every
API call about this case), ``simAttachments`` (how many attachments the counterparty's reply carries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from offload_bridge.simulator.models import NO_ACTION_AT
from offload_bridge.simulator.store import COMPLETED_EVENT, FAILED_EVENT, INPUT_NEEDED_EVENT, Case, now_ms
from offload_bridge.simulator.webhooks import WebhookSender

log = logging.getLogger("offload_bridge.simulator.engine")

QUESTIONS = (
    "The counterparty asked whether a signed PDF is acceptable. How should I respond?",
    "The counterparty asked whether they can send it next Monday. Should I accept that timeline?",
)

_SAMPLE_VALUES: dict[str, Any] = {"boolean": True, "integer": 1, "number": 1.0, "array": [], "object": {}}


def sample_result(case: Case) -> dict[str, Any]:
    """A result with a plausible value for every property the resultSchema declares."""
    schema = case.request.resultSchema or {}
    properties = schema.get("properties")
    if not isinstance(properties, dict) or not properties:
        return {"summary": f"Goal achieved: {case.request.goal.objective}"}
    result: dict[str, Any] = {}
    for name, spec in properties.items():
        kind = spec.get("type") if isinstance(spec, dict) else None
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "string")
        value = _SAMPLE_VALUES.get(kind) if isinstance(kind, str) else None
        result[name] = value if value is not None else f"simulated {name}"
    required = schema.get("required")
    for name in required if isinstance(required, list) else []:
        result.setdefault(str(name), f"simulated {name}")
    return result


class Engine:
    def __init__(self, sender: WebhookSender) -> None:
        self.sender = sender
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, case: Case) -> None:
        task = asyncio.create_task(self._run(case), name=f"case-{case.case_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def cancel_all(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        self.tasks.clear()

    async def close(self) -> None:
        tasks = list(self.tasks)
        self.cancel_all()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, case: Case) -> None:
        try:
            await SCENARIOS[case.scenario](self, case)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("scenario %s of case %s failed", case.scenario, case.case_id)

    # --- building blocks -------------------------------------------------------------------------

    async def step(self, case: Case) -> None:
        case.next_action_at = now_ms() + case.step_ms
        await asyncio.sleep(case.step_ms / 1000)

    def emit(self, case: Case, event_type: str) -> None:
        self.sender.send(case, case.event(event_type))

    def first_send(self, case: Case) -> None:
        case.status = "RUNNING"
        case.attempt_count = 1
        case.transcript.append(f"To {case.request.counterparty.address}: {case.request.goal.objective}")
        case.touch()

    def follow_up(self, case: Case) -> None:
        case.attempt_count += 1
        case.transcript.append(f"To {case.request.counterparty.address}: follow-up #{case.attempt_count - 1}")
        case.touch()

    async def ask(self, case: Case, question: str) -> None:
        """INPUT_NEEDED until an answer arrives, then one more step, then the reply (RUNNING)."""
        case.status = "INPUT_NEEDED"
        case.next_action_at = NO_ACTION_AT
        case.answered.clear()
        case.input_request = {"id": str(uuid.uuid4()), "question": question, "status": "PENDING"}
        case.input_request["requestedAt"] = case.touch()
        self.emit(case, INPUT_NEEDED_EVENT)
        await case.answered.wait()
        await self.step(case)
        case.status = "RUNNING"
        case.transcript.append(f"To {case.request.counterparty.address}: reply using the client's answer")
        case.touch()

    def complete(self, case: Case) -> None:
        count = (
            case.request.metadata.get("simAttachments", 0) if isinstance(case.request.metadata, dict) else 0
        )
        at = now_ms()
        message_id = f"<{uuid.uuid4()}@sim.offload.local>"
        for index in range(count):
            case.attachments.append(
                {
                    "attachmentId": str(uuid.uuid4()),
                    "name": f"document-{index + 1}.pdf",
                    "size": 1024 * (index + 1),
                    "type": "application/pdf",
                    "messageId": message_id,
                    "inboxId": f"inbox-{case.case_id[:8]}",
                    "receivedAt": at,
                }
            )
        case.transcript.append(f"From {case.request.counterparty.address}: here it is.")
        case.status = "COMPLETED"
        case.result_status = "goal_achieved"
        case.result = sample_result(case)
        case.next_action_at = NO_ACTION_AT
        case.touch()
        self.emit(case, COMPLETED_EVENT)

    def fail(self, case: Case, result_status: str, reason: str | None) -> None:
        case.status = "FAILED"
        case.result_status = result_status
        case.failure_reason = reason
        case.next_action_at = NO_ACTION_AT
        case.touch()
        self.emit(case, FAILED_EVENT)

    # --- scenarios ---------------------------------------------------------------------------------

    async def run_complete(self, case: Case) -> None:
        await self.step(case)
        self.first_send(case)
        await self.step(case)
        self.complete(case)

    async def run_input_then_complete(self, case: Case, questions: int = 1) -> None:
        await self.step(case)
        self.first_send(case)
        for number in range(questions):
            await self.step(case)
            await self.ask(case, QUESTIONS[number % len(QUESTIONS)])
        await self.step(case)
        self.complete(case)

    async def run_input_twice_then_complete(self, case: Case) -> None:
        await self.run_input_then_complete(case, questions=2)

    async def run_fail_max_retries(self, case: Case) -> None:
        await self.step(case)
        self.first_send(case)
        while case.attempt_count < case.request.maxAttempts:
            await self.step(case)
            self.follow_up(case)
        await self.step(case)
        self.fail(case, "max_retries", None)

    async def run_fail_bounced(self, case: Case) -> None:
        await self.step(case)
        self.first_send(case)
        await self.step(case)
        self.fail(case, "BOUNCED", f"The email to {case.request.counterparty.address} bounced.")


SCENARIOS: dict[str, Callable[[Engine, Case], Awaitable[None]]] = {
    "complete": Engine.run_complete,
    "input_then_complete": Engine.run_input_then_complete,
    "input_twice_then_complete": Engine.run_input_twice_then_complete,
    "fail_max_retries": Engine.run_fail_max_retries,
    "fail_bounced": Engine.run_fail_bounced,
}
DEFAULT_SCENARIO = "complete"
