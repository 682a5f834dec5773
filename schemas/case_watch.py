"""Watch requests: cases created outside offload-bridge that the worker should know about now.

Offload has no list endpoint, so a case created with Offload's ``POST /cases`` directly (not through
``case-requests``) stays unknown to the worker until its first webhook arrives, and webhooks are sent once and
may be lost. A ``CaseWatch`` on ``case-watch`` names such a case: the worker fetches it from Offload at once
and from then on keeps it reconciled like any case it learned of from a webhook.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from offload_bridge.schemas.answers import NonBlank, now_ms


class CaseWatch(BaseModel):
    """A message on ``case-watch`` (key = caseId); unknown extra fields are ignored, as on ``answers``.

    Every record counts: watching a case the worker already knows only makes it fetch the case again, which
    is harmless, so there is no id to deduplicate by.
    """

    model_config = ConfigDict(extra="ignore")

    caseId: NonBlank
    requestedBy: NonBlank | None = Field(
        default=None, description="who asked (a team, a person, a script): free text, for the logs"
    )
    note: str | None = Field(default=None, description="why, or where the case came from: free text")
    at: int = Field(
        default_factory=now_ms,
        ge=0,
        description="unix ms when the watch was requested; a record without it is dated when it is read",
    )
