"""The simulator's cases: what Offload would hold, plus the truth tests ask for (every input received,
every read of the case, every webhook and what became of it, every status change)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from offload_bridge.simulator.models import NO_ACTION_AT, CreateCaseRequest

INPUT_NEEDED_EVENT = "case.input_needed"
COMPLETED_EVENT = "case.completed"
FAILED_EVENT = "case.failed"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Case:
    case_id: str
    api_key: str
    request: CreateCaseRequest
    scenario: str
    step_ms: int
    created_at: int
    updated_at: int
    goal: dict[str, Any]
    status: str = "CREATED"
    attempt_count: int = 0
    next_action_at: int = NO_ACTION_AT
    result_status: str | None = None
    result: Any = None
    failure_reason: str | None = None
    input_request: dict[str, Any] | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    # --- truth only ---
    history: list[dict[str, Any]] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    reads: list[dict[str, Any]] = field(default_factory=list)  # each GET /cases/{id} that reached the case
    webhooks: list[dict[str, Any]] = field(default_factory=list)
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    def touch(self) -> int:
        """Stamp an update; updatedAt strictly increases so every update has its own event_id."""
        self.updated_at = max(now_ms(), self.updated_at + 1)
        self.history.append(
            {"status": self.status, "attemptCount": self.attempt_count, "at": self.updated_at}
        )
        return self.updated_at

    @property
    def metadata(self) -> Any:
        return self.request.metadata

    def attachment_summaries(self) -> list[dict[str, Any]]:
        keys = ("attachmentId", "name", "size", "type", "messageId", "inboxId", "receivedAt")
        return [{key: attachment[key] for key in keys} for attachment in self.attachments]

    def view(self, include_transcript: bool = False) -> dict[str, Any]:
        """GET /cases/{id}: every documented field."""
        request = self.request
        return {
            "caseId": self.case_id,
            "clientReferenceId": request.clientReferenceId,
            "status": self.status,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "nextActionAt": self.next_action_at,
            "attemptCount": self.attempt_count,
            "maxAttempts": request.maxAttempts,
            "channel": request.channel,
            "counterparty": request.counterparty.model_dump(exclude_none=True),
            "attachments": self.attachment_summaries(),
            "resultStatus": self.result_status,
            "result": self.result,
            "goal": self.goal,
            "resultSchema": request.resultSchema,
            "senderPersona": request.senderPersona.model_dump(exclude_none=True),
            "constraints": request.constraints,
            "inputRequest": dict(self.input_request) if self.input_request else None,
            "conversationThread": "\n\n".join(self.transcript) if include_transcript else None,
        }

    def event(self, event_type: str) -> dict[str, Any]:
        """The webhook for the case's current update, in Offload's documented shape."""
        data: dict[str, Any] = {"caseId": self.case_id}
        if self.request.clientReferenceId is not None:
            data["clientReferenceId"] = self.request.clientReferenceId
        data.update(
            status=self.status,
            channel=self.request.channel,
            attemptCount=self.attempt_count,
            attachments=self.attachment_summaries(),
        )
        if event_type == INPUT_NEEDED_EVENT:
            assert self.input_request is not None
            data.update(
                inputRequest=self.input_request["question"],
                inputRequestId=self.input_request["id"],
                inputRequestStatus=self.input_request["status"],
                inputRequestedAt=self.input_request["requestedAt"],
            )
        elif event_type == COMPLETED_EVENT:
            data.update(resultStatus=self.result_status, result=self.result)
        elif event_type == FAILED_EVENT:
            data.update(resultStatus=self.result_status, failureReason=self.failure_reason)
        if self.request.metadata is not None:
            data["metadata"] = self.request.metadata
        return {
            "event_id": f"evt_{self.case_id}_{event_type.replace('.', '_')}_{self.updated_at}",
            "event_type": event_type,
            "timestamp": self.updated_at,
            "data": data,
        }

    def truth(self) -> dict[str, Any]:
        """GET /_sim/cases/{id}: the public view plus everything the simulator knows."""
        return {
            **self.view(include_transcript=True),
            "apiKey": self.api_key,
            "scenario": self.scenario,
            "stepMs": self.step_ms,
            "followUpDelayHours": self.request.followUpDelayHours,
            "clientWebhookUrl": self.request.clientWebhookUrl,
            "metadata": self.request.metadata,
            "failureReason": self.failure_reason,
            "attachmentDetails": self.attachments,
            "history": self.history,
            "inputs": self.inputs,
            "reads": self.reads,
            "webhooks": self.webhooks,
        }


class CaseStore:
    def __init__(self) -> None:
        self.cases: dict[str, Case] = {}
        self.created_per_key: dict[str, int] = {}

    def create(self, api_key: str, request: CreateCaseRequest, scenario: str, step_ms: int) -> Case:
        at = now_ms()
        case = Case(
            case_id=str(uuid.uuid4()),
            api_key=api_key,
            request=request,
            scenario=scenario,
            step_ms=step_ms,
            created_at=at,
            updated_at=at,
            goal=request.goal.model_dump(),
        )
        case.history.append({"status": case.status, "attemptCount": 0, "at": at})
        self.cases[case.case_id] = case
        self.created_per_key[api_key] = self.created_per_key.get(api_key, 0) + 1
        return case

    def get(self, case_id: str) -> Case | None:
        return self.cases.get(case_id)

    def clear(self) -> None:
        self.cases.clear()
        self.created_per_key.clear()
