"""A case as Offload's ``GET /cases/{id}`` returns it (the fields the reconciler compares).

Unknown extra fields are kept; only ``caseId``, ``status`` and ``updatedAt`` are required, because they are
what tells whether Offload is ahead of our state.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload_bridge.schemas.events import Attachment

# nextActionAt when Offload has nothing scheduled for a case (9999-12-31T23:59:59.999Z).
NO_ACTION_AT = 253402300799999


class OffloadInputRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1)
    question: str
    status: str = "PENDING"
    requestedAt: int | None = None


class OffloadCase(BaseModel):
    model_config = ConfigDict(extra="allow")

    caseId: str = Field(min_length=1)
    status: str = Field(min_length=1)
    updatedAt: int = Field(ge=0, description="unix ms of the case's last update")
    clientReferenceId: str | None = None
    channel: str | None = None
    attemptCount: int | None = None
    attachments: list[Attachment] = Field(default_factory=list)
    resultStatus: str | None = None
    result: Any = None
    inputRequest: OffloadInputRequest | None = None
    nextActionAt: int | None = Field(default=None, description="unix ms of Offload's next scheduled step")

    @property
    def scheduled_action_at(self) -> int | None:
        """``nextActionAt`` when Offload has a step scheduled, else None."""
        if self.nextActionAt is None or self.nextActionAt >= NO_ACTION_AT:
            return None
        return self.nextActionAt


class CaseContext(OffloadCase):
    """A case as Offload returns it with the conversation so far: the worker's ``GET /cases/{id}/context``,
    what a person needs to answer the case's question well.

    Offload's own shapes, typed loosely and kept as received (unknown fields too): its docs describe
    ``goal`` as ``{objective, knowledge}`` (knowledge a string or an object), ``counterparty`` as
    ``{address, name, company?, timezone?, customData?}``, ``senderPersona`` as ``{name, role?, company?,
    tone?}``. Text in them comes from the client and the counterparty: escape it wherever it is shown.
    """

    goal: dict[str, Any] | None = None
    counterparty: dict[str, Any] | None = None
    senderPersona: dict[str, Any] | None = None
    constraints: list[Any] | None = None
    conversationThread: str | None = Field(default=None, description="the transcript; null when none")
    createdAt: int | None = None
    maxAttempts: int | None = None
    fetchedAt: int = Field(ge=0, description="unix ms when the worker received this from Offload")

    @property
    def objective(self) -> str | None:
        """``goal.objective`` when it is a string."""
        objective = (self.goal or {}).get("objective")
        return objective if isinstance(objective, str) else None
