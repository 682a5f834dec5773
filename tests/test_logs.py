"""Log lines: JSON with context fields when asked, and secrets never written whoever logs them."""

from __future__ import annotations

import io
import json
import logging

from pydantic import SecretStr

from offload_bridge.logs import JsonFormatter, RedactSecrets, TextFormatter, secrets_of
from offload_bridge.settings import Settings


def _logger(formatter: logging.Formatter, secrets: list[str]) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets(secrets))
    logger = logging.getLogger(f"test-logs-{id(stream)}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_lines_carry_the_context_fields() -> None:
    logger, stream = _logger(JsonFormatter(), [])
    logger.warning("answer %s accepted", "ans_1", extra={"caseId": "case-1", "answerId": "ans_1"})
    line = json.loads(stream.getvalue())
    assert line["message"] == "answer ans_1 accepted"
    assert line["level"] == "warning"
    assert (line["caseId"], line["answerId"]) == ("case-1", "ans_1")
    assert "eventId" not in line


def test_text_lines_append_the_context_fields() -> None:
    logger, stream = _logger(TextFormatter(), [])
    logger.info("folded", extra={"caseId": "case-1", "eventId": "evt_1"})
    assert stream.getvalue().rstrip().endswith("folded caseId=case-1 eventId=evt_1")


def test_secrets_are_redacted_in_messages_arguments_and_tracebacks() -> None:
    settings = Settings(
        offload_api_key=SecretStr("sk-live-123456"),
        offload_webhook_tokens=SecretStr("tok-one-4f1c9a2e7b,tok-two-8d3b6e0c51"),
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="bridge",
        kafka_sasl_password=SecretStr("kafka-pass-9"),
    )
    logger, stream = _logger(JsonFormatter(), secrets_of(settings))
    logger.error("calling with key sk-live-123456")
    logger.error("path %s", "/webhooks/offload/tok-two-8d3b6e0c51")
    try:
        raise RuntimeError("auth failed for kafka-pass-9")
    except RuntimeError:
        logger.exception("broker said no")
    written = stream.getvalue()
    for secret in ("sk-live-123456", "tok-one-4f1c9a2e7b", "tok-two-8d3b6e0c51", "kafka-pass-9"):
        assert secret not in written
    lines = [json.loads(line) for line in written.splitlines()]
    assert lines[0]["message"] == "calling with key ***"
    assert lines[1]["message"] == "path /webhooks/offload/***"
    assert "RuntimeError: auth failed for ***" in lines[2]["exc"]
