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
