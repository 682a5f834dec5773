"""HTML from the templates, escaped: nothing a counterparty or a case wrote can become markup or script.

Jinja2 escapes every value (``autoescape``); the pages load no inline script or style, so the strict
Content-Security-Policy ``app`` sends forbids everything not served by the inbox itself.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

ENVIRONMENT = Environment(
    loader=PackageLoader("offload_bridge.inbox", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    # The templates ship with the package and never change under a running inbox: no stat per render.
    auto_reload=False,
)


def age(seconds: int | float) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``12 min``, ``40 s``."""
    seconds = int(seconds)
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def at(unix_ms: int | None) -> str:
    """A time in UTC, to the second: people in other time zones read the same text."""
    if unix_ms is None:
        return "unknown time"
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(unix_ms: int | None) -> str:
    if unix_ms is None:
        return ""
    return datetime.fromtimestamp(unix_ms / 1000, tz=UTC).isoformat(timespec="seconds")


def since(unix_ms: int | None) -> str:
    if unix_ms is None:
        return ""
    return age(max(0, time.time() - unix_ms / 1000))


ENVIRONMENT.filters.update(age=age, at=at, iso=iso, since=since)


def render(template: str, **values: Any) -> str:
    return ENVIRONMENT.get_template(template).render(**values)
