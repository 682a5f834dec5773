"""The worker's query API as a client reads it, and the questions waiting for an answer.

``CasePage`` is one page of ``GET /cases``, ``WorkerGroup`` the answer of ``GET /workers``; both travel in
Offload's envelope ``{"ok": true, "data": ...}``. ``PendingQuestion`` is what ``offload-bridge questions
--json`` prints, one per case waiting for an answer.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from offload_bridge.schemas.case_state import CaseState


class CasePage(BaseModel):
    """One page of ``GET /cases`` on one worker: the cases of the partitions it owns."""

    model_config = ConfigDict(extra="ignore")

    worker: str | None = Field(default=None, description="the listing worker's own URL")
    partitions: list[int] = Field(description="the partitions this worker owns, so the walk covers")
    partitionCount: int = Field(description="partitions of the case topics")
    complete: bool = Field(description="true when this worker owns every partition")
    nextCursor: str | None = Field(default=None, description="pass as cursor for the next page; null: done")
    cases: list[CaseState]


class WorkerPartitions(BaseModel):
    url: str = Field(description="the worker's URL, as the workers reach one another")
    partitions: list[int] = Field(description="the case partitions it owns")


class WorkerGroup(BaseModel):
    """``GET /workers``: every worker of the group and its partitions, as the last assignment gave them."""

    worker: str = Field(description="the answering worker's own URL")
    partitionCount: int
    workers: list[WorkerPartitions]


class PendingQuestion(BaseModel):
    """A case waiting for an answer: its question is PENDING and no answer of ours was taken."""

    caseId: str
    clientReferenceId: str | None = None
    caseStatus: str | None = None
    inputRequestId: str = Field(description="what an answer names (answers topic: inputRequestId)")
    question: str
    requestedAt: int = Field(description="unix ms at which Offload asked")
    ageSeconds: int = Field(ge=0, description="seconds since requestedAt, when read")
    metadata: Any = None
