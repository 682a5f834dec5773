"""Path tokens and Standard Webhooks signatures, including the specification's known-answer vector."""

from __future__ import annotations

import base64
import datetime

import pytest
import standardwebhooks
from pydantic import SecretStr

from offload_bridge.ingress.auth import SignatureError, secret_key, sign, token_accepted, verify
from offload_bridge.ingress.http import is_json_media_type, redact_path
from offload_bridge.settings import Settings, SettingsError, load_settings
from offload_bridge.simulator.settings import SimulatorSettings

# The Standard Webhooks specification's example.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MESSAGE_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def _headers(signature: str = SIGNATURE, timestamp: int = TIMESTAMP) -> dict[str, str]:
    return {"webhook-id": MESSAGE_ID, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_known_answer_vector() -> None:
    assert sign(secret_key(SECRET), MESSAGE_ID, TIMESTAMP, BODY) == SIGNATURE
    verify(secret_key(SECRET), _headers(), BODY, now_s=TIMESTAMP)


def test_one_matching_signature_among_several_is_enough() -> None:
    rotated = "v1,Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE= " + SIGNATURE + " v2,whatever"
    verify(secret_key(SECRET), _headers(rotated), BODY, now_s=TIMESTAMP)


@pytest.mark.parametrize(
    ("headers", "body", "now", "reason"),
    [
        (_headers(), b'{"test": 2432232315}', TIMESTAMP, "matches"),
        (_headers("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="), BODY, TIMESTAMP, "matches"),
        (_headers("v2," + SIGNATURE[3:]), BODY, TIMESTAMP, "matches"),
        (_headers(), BODY, TIMESTAMP + 301, "5 minutes"),
        (_headers(), BODY, TIMESTAMP - 301, "5 minutes"),
        ({"webhook-id": MESSAGE_ID, "webhook-timestamp": str(TIMESTAMP)}, BODY, TIMESTAMP, "required"),
        (_headers(timestamp=0) | {"webhook-timestamp": "soon"}, BODY, TIMESTAMP, "unix time"),
    ],
    ids=[
        "body-changed",
        "signature-changed",
        "unknown-version",
        "too-old",
        "too-new",
        "missing",
        "bad-timestamp",
    ],
)
def test_bad_signatures_are_refused(headers: dict[str, str], body: bytes, now: int, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(secret_key(SECRET), headers, body, now_s=now)


def test_within_tolerance_is_accepted() -> None:
    verify(secret_key(SECRET), _headers(), BODY, now_s=TIMESTAMP + 300)
    verify(secret_key(SECRET), _headers(), BODY, now_s=TIMESTAMP - 300)


def test_tokens_compare_against_every_configured_token() -> None:
    assert token_accepted("b", ("a", "b"))
    assert not token_accepted("c", ("a", "b"))
    assert not token_accepted(None, ("a",))
    assert not token_accepted("", ("a",))
    assert not token_accepted("anything", ())


def test_json_media_types() -> None:
    assert is_json_media_type("application/json")
    assert is_json_media_type("Application/JSON; charset=utf-8")
    assert is_json_media_type("application/cloudevents+json")
    assert not is_json_media_type("text/json+plain")
    assert not is_json_media_type("text/plain")
    assert not is_json_media_type(None)


def test_token_is_redacted_from_logged_paths() -> None:
    assert redact_path("/webhooks/offload/s3cret") == "/webhooks/offload/***"
    assert redact_path("/readyz") == "/readyz"


def test_webhook_settings_parse_tokens_and_check_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OFFLOAD_WEBHOOK_TOKENS", " tok-alpha9-5e2c81f0, tok-beta7-93d1a6b2 ,,")
    monkeypatch.setenv("OFFLOAD_WEBHOOK_SECRET", SECRET)
    settings = load_settings()
    assert settings.webhook_tokens == ("tok-alpha9-5e2c81f0", "tok-beta7-93d1a6b2")
    assert "tok-alpha9-5e2c81f0" not in repr(settings) and "MfKQ9r8" not in repr(settings), (
        "secrets never shown"
    )
    assert Settings(offload_webhook_tokens=SecretStr(" , ")).webhook_tokens == ()

    monkeypatch.setenv("OFFLOAD_WEBHOOK_SECRET", "whsec_not base64!")
    with pytest.raises(SettingsError, match="OFFLOAD_WEBHOOK_SECRET") as error:
        load_settings()
    assert "not base64" not in str(error.value), "a bad secret is not echoed back"


def test_an_unpadded_secret_is_accepted_as_the_official_library_accepts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    unpadded = "whsec_QDqsZTd26WtI3jz8frN4Ag"
    monkeypatch.setenv("OFFLOAD_WEBHOOK_SECRET", unpadded)
    settings = load_settings()
    assert settings.offload_webhook_secret is not None
    key = secret_key(settings.offload_webhook_secret.get_secret_value())
    assert key == secret_key(unpadded + "==") == base64.b64decode("QDqsZTd26WtI3jz8frN4Ag==")
    signature = standardwebhooks.Webhook(unpadded).sign(MESSAGE_ID, _utc(TIMESTAMP), BODY.decode())
    verify(key, _headers(signature), BODY, now_s=TIMESTAMP)
    assert SimulatorSettings(webhook_secret=SecretStr(unpadded)).signing_key == key


def _utc(timestamp_s: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp_s, tz=datetime.UTC)
