"""``offload-bridge ingress``: make sure the topics exist, then serve the webhook endpoint with uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os
import tempfile
from typing import Any

from offload_bridge.cli_support import CommandError, Subcommands
from offload_bridge.settings import INSECURE_FLAG, Settings, SettingsError


def register(commands: Subcommands) -> None:
    ingress = commands.add_parser("ingress", help="receive Offload webhooks and publish them to Kafka")
    ingress.add_argument("--host", help="interface to listen on (default OFFLOAD_INGRESS_HOST, 127.0.0.1)")
    ingress.add_argument("--port", type=int, help="port to listen on (default OFFLOAD_INGRESS_PORT, 8080)")
    ingress.add_argument("--workers", type=int, help="worker processes (default OFFLOAD_INGRESS_WORKERS, 1)")
    ingress.set_defaults(handler=cmd_ingress)


def cmd_ingress(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from offload_bridge.ingress.logs import log_config
    from offload_bridge.kafka.admin import TopicCreationFailed, ensure_topics
    from offload_bridge.kafka.connection import KafkaUnreachable
    from offload_bridge.topics import CASE_EVENTS, CASE_EVENTS_INVALID

    host = args.host or settings.offload_ingress_host
    port = args.port if args.port is not None else settings.offload_ingress_port
    workers = args.workers if args.workers is not None else settings.offload_ingress_workers
    if not 1 <= port <= 65535 or workers < 1:
        raise SettingsError("--port must be 1-65535 and --workers at least 1")
    refuse_an_open_door(settings, host)
    try:
        ensure_topics(settings, (CASE_EVENTS, CASE_EVENTS_INVALID))
    except (KafkaUnreachable, TopicCreationFailed) as error:
        raise CommandError(f"ingress: cannot make sure its topics exist: {error}") from None
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "workers": workers,
        "factory": True,
        "log_config": log_config(settings),
        # The access log would print the secret path token.
        "access_log": False,
        "timeout_graceful_shutdown": settings.offload_ingress_shutdown_grace_s,
        "timeout_keep_alive": settings.offload_ingress_keepalive_s,
        # httptools' parser, answering a request it cannot parse in Offload's envelope (by name: each
        # worker process imports it).
        "http": "offload_bridge.ingress.protocol:EnvelopeHttpToolsProtocol",
    }
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Each worker writes its metric values here so /metrics can sum them over all workers.
        with tempfile.TemporaryDirectory(prefix="offload-ingress-metrics-") as directory:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
            uvicorn.run("offload_bridge.ingress.app:create_app", **options)
        return 0
    uvicorn.run("offload_bridge.ingress.app:create_app", **options)
    return 0


def refuse_an_open_door(settings: Settings, host: str) -> None:
    """An ingress that others can reach must authenticate webhooks: a path token or a signing secret.

    Without either, anyone who reaches it publishes forged case events into the source of truth. On this
    machine's loopback only, or with OFFLOAD_ALLOW_INSECURE_DEFAULTS=1 (a development machine), it starts
    with a warning instead.
    """
    authenticated = settings.webhook_tokens or settings.offload_webhook_secret is not None
    if authenticated or settings.offload_allow_insecure_defaults or _loopback(host):
        return
    raise SettingsError(
        f"OFFLOAD_WEBHOOK_TOKENS is not set and the ingress would listen on {host}: anyone reaching it could "
        "publish forged case events. Set OFFLOAD_WEBHOOK_TOKENS (`openssl rand -hex 24`) or "
        f"OFFLOAD_WEBHOOK_SECRET; {INSECURE_FLAG} allows it on a development machine"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything
