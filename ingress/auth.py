"""Who may write: the secret path token, and optionally a Standard Webhooks signature over the raw body."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

from offload_bridge.settings import webhook_secret_key

# Standard Webhooks: a signature older or newer than this is refused (replay protection).
TIMESTAMP_TOLERANCE_S = 300


class SignatureError(ValueError):
    """The webhook's signature headers are missing, stale or do not match; the message says which."""


def token_accepted(presented: str | None, accepted: Sequence[str]) -> bool:
    """True when ``presented`` equals one of the configured tokens, compared in constant time.

    Every configured token is compared, so the time taken does not tell which one nearly matched.
    """
    if presented is None or not accepted:
        return False
    candidate = presented.encode()
    matched = False
    for token in accepted:
        matched |= hmac.compare_digest(candidate, token.encode())
    return matched


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret, padded or not (see ``webhook_secret_key``)."""
    return webhook_secret_key(secret)


def sign(key: bytes, message_id: str, timestamp: int | str, body: bytes) -> str:
    """The ``v1,<base64>`` signature of a message."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now_s: float | None = None) -> None:
    """Check ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``; raise SignatureError if wrong.

    The signature header may hold several space-separated signatures (during a secret rotation); one valid
    ``v1`` signature is enough.
    """
    message_id = headers.get("webhook-id")
    timestamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not message_id or not timestamp or not signatures:
        raise SignatureError("webhook-id, webhook-timestamp and webhook-signature headers are required")
    # ASCII digits only, and few of them: int() reads other scripts' digits, fails on "²" and on 4300+ digits.
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 15:
        raise SignatureError("webhook-timestamp is not a unix time in seconds")
    now = time.time() if now_s is None else now_s
    if abs(now - int(timestamp)) > TIMESTAMP_TOLERANCE_S:
        raise SignatureError("webhook-timestamp is more than 5 minutes away from now")
    expected = sign(key, message_id, timestamp, body).encode()
    matched = False
    for candidate in signatures.split(" "):
        if candidate.startswith("v1,"):
            matched |= hmac.compare_digest(candidate.encode(), expected)
    if not matched:
        raise SignatureError("no webhook-signature matches the body")
