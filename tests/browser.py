"""Browser tests: Debian's chromium through Playwright, axe-core's verdict on a page, and people logged in
through an identity-aware proxy.

``make`` builds the tools into ``.tools/`` (docs: Develop). A test uses them like this::

    def test_alice_sees_her_name(browser: Browser, tmp_path: Path) -> None:
        with IdentityProxy(app_url, tmp_path) as proxy:
            alice = browser.new_context()
            proxy.login(alice, "alice@example.com", name="alice")
            page = alice.new_page()
            page.goto(proxy.url + "/")  # the app sees X-Forwarded-Email: alice@example.com
            assert not axe_violations(page), describe_violations(axe_violations(page))

The ``browser`` fixture comes from here through ``tests/conftest.py``.
"""

from __future__ import annotations

import os
import secrets
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Response, sync_playwright

from offload_bridge.processes import ServiceProcess
from offload_bridge.testing import free_port

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / ".tools"
# Debian's package: Playwright's own browser builds cannot be downloaded here.
CHROMIUM = Path("/usr/bin/chromium")
OAUTH2_PROXY = TOOLS / "oauth2-proxy"
MOCKOIDC = TOOLS / "mockoidc"
AXE_JS = TOOLS / "npm" / "node_modules" / "axe-core" / "axe.min.js"

SERIOUS_IMPACTS = ("serious", "critical")


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `make test-suite` builds it (docs: Develop)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless chromium for the tests of one module; each test opens its own contexts (one per person)."""
    # Chromium's sandbox cannot start as root; the suite runs as root on CI.
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_require(CHROMIUM), args=args)
        try:
            yield launched
        finally:
            launched.close()


# Evaluated through the DevTools protocol rather than added as a <script>: a page's Content-Security-Policy
# (script-src 'self') blocks an injected script tag but not the protocol's own evaluation.
_AXE_RUN = """async () => {
    const result = await axe.run(document, {resultTypes: ["violations"]});
    return result.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
        targets: v.nodes.map(node => node.target.join(" ")),
    }));
}"""


def axe_violations(page: Page, impacts: Sequence[str] = SERIOUS_IMPACTS) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now, of the given impacts: id, impact, help, targets."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_require(AXE_JS).read_text() + "\n;undefined")
    violations: list[dict[str, Any]] = page.evaluate(_AXE_RUN)
    return [violation for violation in violations if violation["impact"] in impacts]


def describe_violations(violations: Sequence[dict[str, Any]]) -> str:
    """One line per violation and the elements it concerns, for an assertion's message."""
    return (
        "\n".join(f"{v['impact']}: {v['id']} ({v['help']}) at {', '.join(v['targets'])}" for v in violations)
        or "no violations"
    )


def _json_or_none(response: Response | None) -> Any:
    if response is None or not response.ok:
        return None
    try:
        return response.json()
    except ValueError:
        return None


class IdentityProxy:
    """oauth2-proxy in front of ``upstream``, logging people in at a test OpenID provider (mockoidc).

    Requests reach the upstream only with a login, carrying the person as ``X-Forwarded-Email`` and
    ``X-Forwarded-User`` (the name given at login); a request without one is sent to log in and never
    reaches the upstream. Both programs run as child processes, logs in ``workdir``, stopped on exit.
    """

    CLIENT_ID = "offload-bridge-inbox"

    def __init__(
        self,
        upstream: str,
        workdir: Path,
        extra_args: Sequence[str] = (),
        timeout_s: float = 30.0,
    ) -> None:
        self.upstream = upstream
        self.workdir = workdir
        self.extra_args = list(extra_args)
        self.timeout_s = timeout_s
        self.port = free_port()
        self.provider_port = free_port()
        self._client_secret = secrets.token_urlsafe(16)
        self._provider: ServiceProcess | None = None
        self._proxy: ServiceProcess | None = None
        # The provider hands out queued people in order: one login at a time keeps each with its person.
        self._login_lock = threading.Lock()

    @property
    def url(self) -> str:
        """Where the browser goes: the proxy, which forwards to the upstream."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.provider_port}/oidc"

    def __enter__(self) -> IdentityProxy:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._provider = ServiceProcess.program(
            [
                str(_require(MOCKOIDC)), "-port", str(self.provider_port),
                "-client-id", self.CLIENT_ID, "-client-secret", self._client_secret,
            ],
            log_path=self.workdir / "mockoidc.log",
        ).start()  # fmt: skip
        self._provider.wait_http(f"{self.issuer}/.well-known/openid-configuration", self.timeout_s)
        self._proxy = ServiceProcess.program(
            [str(_require(OAUTH2_PROXY)), *self._proxy_args()], log_path=self.workdir / "oauth2-proxy.log"
        ).start()
        self._proxy.wait_http(f"{self.url}/ping", self.timeout_s)

    def _proxy_args(self) -> list[str]:
        return [
            f"--http-address=127.0.0.1:{self.port}",
            f"--upstream={self.upstream}",
            "--provider=oidc",
            f"--oidc-issuer-url={self.issuer}",
            f"--client-id={self.CLIENT_ID}",
            f"--client-secret={self._client_secret}",
            f"--redirect-url={self.url}/oauth2/callback",
            "--code-challenge-method=S256",
            "--email-domain=*",
            f"--cookie-secret={secrets.token_urlsafe(24)}",  # 32 characters: an AES-256 key
            # Plain HTTP on loopback; the cookie's name carries the port, as cookies ignore ports and two
            # proxies on 127.0.0.1 would otherwise overwrite each other's session in one browser context.
            "--cookie-secure=false",
            f"--cookie-name=_oauth2_proxy_{self.port}",
            # Straight to the provider, no "Sign in with OpenID Connect" page in between.
            "--skip-provider-button",
            # The person as X-Forwarded-Email and X-Forwarded-User, and no Basic Authorization header.
            "--pass-user-headers=true",
            "--pass-basic-auth=false",
            "--silence-ping-logging",
            *self.extra_args,
        ]

    def close(self) -> None:
        for service in (self._proxy, self._provider):
            if service is not None:
                service.stop(grace_s=5.0)
        self._proxy = self._provider = None

    def log_tails(self) -> str:
        """The last lines of both programs' logs, for a failure's message."""
        return "\n".join(
            f"--- {service.label}:\n{service.log_tail()}"
            for service in (self._provider, self._proxy)
            if service is not None
        )

    def queue_user(self, email: str, name: str | None = None) -> None:
        """The person the NEXT login at the provider becomes (``name``: X-Forwarded-User, else the email).

        ``login`` calls it; call it yourself for a login the test drives through the pages.
        """
        query = urllib.parse.urlencode({"email": email, "name": name or email})
        response = httpx.post(f"http://127.0.0.1:{self.provider_port}/queue-user?{query}", timeout=5.0)
        response.raise_for_status()

    def login(self, target: BrowserContext | Page, email: str, name: str | None = None) -> None:
        """Log a browser context (or a page's context) in as this person, through the whole OIDC flow.

        The session cookie lands in the context: every page it opens afterwards is that person. Two contexts
        can be two people.
        """
        page = target if isinstance(target, Page) else target.new_page()
        try:
            with self._login_lock:
                self.queue_user(email, name)
                # Ends at the proxy's own userinfo route: the login is checked without touching the upstream.
                response = page.goto(f"{self.url}/oauth2/start?rd=%2Foauth2%2Fuserinfo")
            body = _json_or_none(response)
            if not isinstance(body, dict) or body.get("email") != email:
                status = response.status if response is not None else "no response"
                raise AssertionError(
                    f"login as {email} ended at {page.url} ({status}: {body!r})\n{self.log_tails()}"
                )
        finally:
            if page is not target:
                page.close()
