"""Log formatting shared by every process: text or JSON (OFFLOAD_LOG_FORMAT), secrets never written.

Context fields are passed as ``extra``: ``log.info("accepted", extra={"caseId": ..., "answerId": ...})``;
JSON lines carry them as keys, text lines append them as ``key=value``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from offload_bridge.settings import Settings

CONTEXT_FIELDS = ("caseId", "eventId", "answerId", "inputRequestId", "requestId", "outcome", "topic")
REDACTED = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in CONTEXT_FIELDS if getattr(record, name, None) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, the context fields, and exc when any."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        context = _context(record)
        return text + "".join(f" {name}={value}" for name, value in context.items()) if context else text


class RedactSecrets(logging.Filter):
    """Replaces every configured secret in a record's message and arguments, whoever logs it."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self.secrets = sorted({secret for secret in secrets if len(secret) >= 4}, key=len, reverse=True)

    def _clean(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            cleaned = self._clean(message)
            if cleaned != message:
                record.msg, record.args = cleaned, None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self._clean(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold."""
    values = [
        settings.offload_api_key,
        settings.offload_webhook_secret,
        settings.kafka_sasl_password,
        settings.kafka_ssl_key_password,
    ]
    secrets = [value.get_secret_value() for value in values if value is not None]
    return secrets + list(settings.webhook_tokens) + list(settings.worker_api_tokens)


def make_formatter(settings: Settings) -> logging.Formatter:
    return JsonFormatter() if settings.offload_log_format == "json" else TextFormatter()


def logging_dict(settings: Settings, level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for frameworks that configure logging themselves (Faust, uvicorn)."""
    formatter = "JsonFormatter" if settings.offload_log_format == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"bridge": {"()": f"offload_bridge.logs.{formatter}"}},
        "filters": {"redact": {"()": "offload_bridge.logs.RedactSecrets", "secrets": secrets_of(settings)}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "bridge",
                "filters": ["redact"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"level": level.upper(), "handlers": ["default"]},
    }


def configure_logging(settings: Settings, level: str = "INFO") -> logging.Handler:
    """Root logging for a process: one stderr handler with the chosen format, secrets redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(make_formatter(settings))
    handler.addFilter(RedactSecrets(secrets_of(settings)))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
