"""Who is asking, and whether a form really came from the inbox's own page.

The inbox sits behind an identity-aware proxy (oauth2-proxy, or any that sets the same headers). The proxy
logs the person in and passes ``X-Forwarded-Email`` / ``X-Forwarded-User``; those headers are believed
only on connections from ``OFFLOAD_INBOX_TRUSTED_PROXIES``, since anyone else could set them. Every request
without a person is refused (401, in Offload's envelope) but liveness, readiness and metrics.

Forms carry a CSRF token: an HMAC of the person and the time it was issued, under a secret the replicas
share (``OFFLOAD_INBOX_CSRF_SECRET``). A page of another site cannot read it, so it cannot post as the
person; the token is checked against the person who posts, so one person's token is worthless to another.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Sequence
from dataclasses import dataclass

EMAIL_HEADER = "x-forwarded-email"
USER_HEADER = "x-forwarded-user"
CSRF_FIELD = "csrf"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: tuple[Network, ...] = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class Person:
    email: str | None
    user: str | None

    @property
    def name(self) -> str:
        """What the inbox shows and what becomes an answer's ``submittedBy``: the email, else the user."""
        return self.email or self.user or ""


class IdentityRefused(Exception):
    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def parse_networks(text: str) -> tuple[Network, ...]:
    """``10.0.0.0/8, 127.0.0.1`` → networks; a bare address is a network of one. Raises ValueError."""
    networks: list[Network] = []
    for part in text.split(","):
        part = part.strip()
        if part:
            networks.append(ipaddress.ip_network(part, strict=False))
    return tuple(networks)


def trusted(peer: str | None, networks: Sequence[Network]) -> bool:
    if peer is None:
        return False
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def person_of(peer: str | None, headers: dict[str, str], networks: Sequence[Network]) -> Person:
    """The person the proxy logged in. Raises IdentityRefused saying why there is none."""
    if not trusted(peer, networks):
        raise IdentityRefused(
            "sign in through the inbox's identity-aware proxy: this connection does not come from one"
            " (OFFLOAD_INBOX_TRUSTED_PROXIES)"
        )
    email = (headers.get(EMAIL_HEADER) or "").strip() or None
    user = (headers.get(USER_HEADER) or "").strip() or None
    if email is None and user is None:
        raise IdentityRefused("the proxy passed no identity (X-Forwarded-Email or X-Forwarded-User)")
    for value in (email, user):
        if value is not None and (len(value) > 320 or any(ord(c) < 32 or ord(c) == 127 for c in value)):
            raise IdentityRefused("the proxy passed an identity that is not a plain name or address")
    return Person(email, user)


class CsrfTokens:
    """Issue and check the forms' tokens: ``<issued at>.<hmac(person, issued at)>``."""

    def __init__(self, secret: bytes, max_age_s: int) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    def issue(self, person: Person, now: float | None = None) -> str:
        issued = int(now if now is not None else time.time())
        return f"{issued}.{self._mac(person, issued)}"

    def check(self, person: Person, token: str | None, now: float | None = None) -> str | None:
        """None when the token is this person's and fresh; else why not."""
        if not token:
            return "the form carries no CSRF token"
        issued_text, _, mac = token.partition(".")
        if not issued_text.isdigit() or not mac:
            return "the form's CSRF token is malformed"
        issued = int(issued_text)
        if not hmac.compare_digest(mac, self._mac(person, issued)):
            return "the form's CSRF token was not issued to you by this inbox"
        age = (now if now is not None else time.time()) - issued
        if age > self.max_age_s:
            return "the form is too old: reload the page and send it again (your text is kept)"
        return None

    def _mac(self, person: Person, issued: int) -> str:
        message = f"{person.email or ''}\x1f{person.user or ''}\x1f{issued}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()
