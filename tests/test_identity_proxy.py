"""The browser tests' own tools, proven on a tiny upstream: people logged in through oauth2-proxy and a test
OpenID provider reach the app as themselves, nobody reaches it without a login, and axe-core's check finds
what it should."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser

from tests.browser import IdentityProxy, axe_violations, describe_violations


@dataclass
class Upstream:
    """An HTTP server in a thread answering every GET with a small page, keeping each request's path and
    headers (names in lower case)."""

    server: ThreadingHTTPServer
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def requests_to(self, path: str) -> list[dict[str, str]]:
        """The headers of the requests to ``path`` (the browser's own, such as /favicon.ico, left out)."""
        return [headers for seen_path, headers in self.seen if seen_path == path]

    def wait_for(self, path: str, count: int, timeout_s: float = 10.0) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout_s
        while len(self.requests_to(path)) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.requests_to(path)


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    seen: list[tuple[str, dict[str, str]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append((self.path, {name.lower(): value for name, value in self.headers.items()}))
            body = b"<!doctype html><html lang=en><title>upstream</title><p>reached</p></html>"
            # A browser may drop a request it no longer needs (its favicon's) before the answer is written.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield Upstream(server, seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_each_browser_context_reaches_the_upstream_as_the_person_who_logged_in(
    browser: Browser, upstream: Upstream, tmp_path: Path
) -> None:
    with IdentityProxy(upstream.url, tmp_path) as proxy:
        alice, bob = browser.new_context(), browser.new_context()
        proxy.login(alice, "alice@example.com", name="alice")
        proxy.login(bob, "bob@example.com", name="bob")

        page = alice.new_page()
        page.goto(f"{proxy.url}/inbox")
        assert page.text_content("p") == "reached"
        (as_alice,) = upstream.wait_for("/inbox", 1)
        assert as_alice["x-forwarded-email"] == "alice@example.com"
        assert as_alice["x-forwarded-user"] == "alice"
        assert "authorization" not in as_alice

        # Logged in after alice, and still bob: each context holds its own session.
        bob.new_page().goto(f"{proxy.url}/inbox")
        as_bob = upstream.wait_for("/inbox", 2)[1]
        assert (as_bob["x-forwarded-email"], as_bob["x-forwarded-user"]) == ("bob@example.com", "bob")


def test_without_a_login_nothing_reaches_the_upstream(
    browser: Browser, upstream: Upstream, tmp_path: Path
) -> None:
    with IdentityProxy(upstream.url, tmp_path) as proxy:
        # A person's identity sent by the client itself is no login.
        forged = {"X-Forwarded-Email": "mallory@example.com", "X-Forwarded-User": "mallory"}
        for accept in ("text/html", "application/json"):
            response = httpx.get(f"{proxy.url}/inbox", headers={**forged, "Accept": accept})
            assert response.status_code in (302, 401, 403), response.text
        # A browser with no session is sent to the provider, which logs in nobody it was not given.
        context = browser.new_context()
        page = context.new_page()
        refused = page.goto(f"{proxy.url}/inbox")
        assert refused is not None and refused.status == 403
        assert page.url.startswith(f"{proxy.issuer}/authorize?")
        assert upstream.seen == []
        # A logged-in context then reaches it: the empty record above is not a dead upstream.
        proxy.login(context, "carol@example.com")
        context.new_page().goto(f"{proxy.url}/inbox")
        assert [seen["x-forwarded-email"] for seen in upstream.wait_for("/inbox", 1)] == ["carol@example.com"]


# Served with a strict Content-Security-Policy, as the inbox's pages are: the check must work under it.
_CSP = "default-src 'self'; script-src 'self'"
_BAD_PAGE = """<!doctype html><html lang="en"><head><title>bad</title></head><body><main>
<img src="/chart.png"><form><input type="text" name="answer"></form></main></body></html>"""
_GOOD_PAGE = """<!doctype html><html lang="en"><head><title>good</title></head><body><main>
<h1>Answer</h1><img src="/chart.png" alt="Invoices by week">
<form><label for="answer">Your answer</label><input id="answer" type="text" name="answer"></form>
</main></body></html>"""


def test_axe_finds_the_serious_violations_of_a_bad_page_and_none_on_a_good_one(browser: Browser) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.route(
        "http://pages.test/**",
        lambda route: route.fulfill(
            content_type="text/html",
            headers={"Content-Security-Policy": _CSP},
            body=_BAD_PAGE if route.request.url.endswith("/bad") else _GOOD_PAGE,
        ),
    )

    page.goto("http://pages.test/bad")
    found = {violation["id"]: violation for violation in axe_violations(page)}
    assert {"image-alt", "label"} <= set(found), describe_violations(list(found.values()))
    assert found["image-alt"]["targets"] == ["img"]
    assert "critical: image-alt" in describe_violations([found["image-alt"]])

    page.goto("http://pages.test/good")
    assert axe_violations(page, impacts=("minor", "moderate", "serious", "critical")) == [], (
        describe_violations(axe_violations(page))
    )
