"""``offload-bridge inbox``: serve the browser inbox with uvicorn (behind an identity-aware proxy)."""

from __future__ import annotations

import argparse

from offload_bridge.cli_support import Subcommands
from offload_bridge.settings import Settings, SettingsError


def register(commands: Subcommands) -> None:
    inbox = commands.add_parser(
        "inbox", help="serve the browser inbox: people answer Offload's questions (behind an identity proxy)"
    )
    inbox.add_argument("--host", help="interface to listen on (default OFFLOAD_INBOX_HOST, 127.0.0.1)")
    inbox.add_argument("--port", type=int, help="port to listen on (default OFFLOAD_INBOX_PORT, 8095)")
    inbox.set_defaults(handler=cmd_inbox)


def cmd_inbox(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from offload_bridge.ingress.logs import log_config

    host = args.host or settings.offload_inbox_host
    port = args.port if args.port is not None else settings.offload_inbox_port
    if not 1 <= port <= 65535:
        raise SettingsError("--port must be 1-65535")
    # The topics are not checked here: the inbox may not describe what it does not read, and until they
    # exist it answers /ready with 503 saying which one is missing (the worker's `topics create` makes them).
    uvicorn.run(
        "offload_bridge.inbox.app:create_app",
        host=host,
        port=port,
        factory=True,
        log_config=log_config(settings),
        access_log=False,
        # The proxy's X-Forwarded-For must not replace the peer address: the peer is what is trusted
        # (OFFLOAD_INBOX_TRUSTED_PROXIES), and the forwarded address is whatever the browser's side said.
        proxy_headers=False,
        # Server-sent event streams stay open: do not wait for them on shutdown.
        timeout_graceful_shutdown=5,
    )
    return 0
