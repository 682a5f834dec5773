"""The simulator's own models of Offload's request bodies, and the envelope.

These mirror Offload's documented API independently of the product's ``schemas/`` package on purpose: the
simulator stands in for Offload, so a mistake in our schemas must not silently become the simulator's too.
Unknown request fields are ignored; documented ones are checked as the docs describe.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

NO_ACTION_AT = 253402300799999  # nextActionAt when nothing is scheduled (9999-12-31T23:59:59.999Z)


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Goal(_Body):
    objective: str
    knowledge: str | dict[str, Any]

    @field_validator("objective")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class Counterparty(_Body):
    address: str
    name: str
    company: str | None = None
    timezone: str | None = None
    customData: dict[str, str] | None = None

    @field_validator("address", "name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class SenderPersona(_Body):
    name: str
    role: str | None = None
    company: str | None = None
    tone: str | None = None

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class CreateCaseRequest(_Body):
    model_config = ConfigDict(extra="ignore", strict=True)

    channel: Literal["EMAIL", "SMS"]
    goal: Goal
    counterparty: Counterparty
    senderPersona: SenderPersona
    clientReferenceId: str | None = None
    constraints: list[str] = Field(default_factory=list)
    maxAttempts: int = Field(default=3, ge=1)
    followUpDelayHours: float = Field(default=72, gt=0)
    resultSchema: dict[str, Any] | None = None
    clientWebhookUrl: str | None = None
    metadata: Any = None

    @field_validator("maxAttempts", mode="before")
    @classmethod
    def _integral_number(cls, value: Any) -> Any:
        # 3.0 is the integer 3 in JSON (and in JSON Schema); strict mode would refuse it as a float.
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value

    @field_validator("clientWebhookUrl")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None:
            AnyHttpUrl(value)
        return value


class ProvideInputRequest(_Body):
    model_config = ConfigDict(extra="ignore", strict=True)

    inputRequestId: str
    providedContext: str

    @field_validator("inputRequestId", "providedContext")
    @classmethod
    def _trimmed(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value


def ok(data: dict[str, Any], status_code: int = 200) -> JSONResponse:
    return JSONResponse({"ok": True, "data": data}, status_code=status_code)


def error(status_code: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": {"code": code, "message": message}}, status_code=status_code, headers=headers
    )
