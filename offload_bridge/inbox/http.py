"""Offload's error envelope, which every refusal of the inbox that is not a page uses."""

from __future__ import annotations

from fastapi.responses import JSONResponse


def envelope(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"ok": False, "error": {"code": code, "message": message}}, status_code=status, headers=headers
    )
