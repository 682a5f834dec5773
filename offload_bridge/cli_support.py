"""What every ``offload-bridge`` subcommand shares: the handler type, the one-line error, the server check.

A leaf module: the feature CLIs (answers, case requests, DLQ, ingress, streams, reconcile) import it and
``offload_bridge.cli`` composes them, so no feature CLI imports the command line it is part of.
"""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from offload_bridge.settings import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

# Top-level modules of the server install (`offload-bridge[server]`): the ingress, the worker, the
# simulator and the exporter (pyarrow and DuckDB come with it through the analytics extra). The client
# commands (answer, create-case, dlq, tail, topics, kafka) never import them.
SERVER_MODULES = (
    "faust", "aiokafka", "confluent_kafka", "fastapi", "uvicorn", "httpx", "prometheus_client",
    "pyarrow", "duckdb",
)  # fmt: skip
# What those bring in besides: a failed import of one of them also means the server install is missing.
_SERVER_DEPENDENCIES = ("mode", "starlette", "httpcore")


class CommandError(RuntimeError):
    """A failure to report in one line."""


class ServerInstallMissing(CommandError):
    """A server command ran in a client install."""

    def __init__(self, command: str) -> None:
        self.command = command
        super().__init__(
            f"offload-bridge {command} needs the server install: pip install 'offload-bridge[server]'"
        )


def missing_server_module() -> str | None:
    """The first module of the server install that cannot be imported here, or None."""
    for name in SERVER_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ImportError:
            return name
    return None


def is_server_module(name: str | None) -> bool:
    """``name`` (of a failed import) belongs to the server install."""
    return name is not None and name.split(".")[0] in (*SERVER_MODULES, *_SERVER_DEPENDENCIES)


def server_command(handler: Handler) -> Handler:
    """The handler of a command that runs part of the server: it fails in one line in a client install."""

    def checked(args: argparse.Namespace, settings: Settings) -> int:
        if missing_server_module() is not None:
            raise ServerInstallMissing(args.command)
        return handler(args, settings)

    checked.__doc__ = handler.__doc__
    return checked


def outcome_line(head: list[str], fields: list[tuple[str, object]], message: str | None) -> str:
    """One line for an outcome on a terminal: its head, then ``label=value`` for each field that has a
    value, then the message quoted."""
    parts = [*head, *(f"{label}={value}" for label, value in fields if value is not None)]
    if message:
        parts.append(f"message={message!r}")
    return " ".join(parts)
