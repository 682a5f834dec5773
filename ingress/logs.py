"""Logging of the ingress process: uvicorn's format for our loggers too, and a throttle for the Kafka
client (librdkafka), which logs every failed reconnect (about one a second) while a broker is away."""

from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any

from offload_bridge.logs import logging_dict
from offload_bridge.settings import Settings

THROTTLE_INTERVAL_S = 30.0


class Throttle(logging.Filter):
    """Lets each distinct message through at most once per interval; numbers (ports, counts, durations)
    do not make a message distinct."""

    def __init__(self, interval_s: float = THROTTLE_INTERVAL_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._last: dict[tuple[str, object], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, re.sub(r"\d+", "#", record.getMessage()))
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[key] = now
        return True


def log_config(settings: Settings) -> dict[str, Any]:
    """Uvicorn's logging config in the project's format (OFFLOAD_LOG_FORMAT), secrets redacted, extended
    to the ingress' loggers (applied in every worker)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    shared = logging_dict(settings)
    config["formatters"]["default"] = config["formatters"]["access"] = shared["formatters"]["bridge"]
    config.setdefault("filters", {}).update(shared["filters"])
    config["filters"]["throttle"] = {"()": "offload_bridge.ingress.logs.Throttle"}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["handlers"]["throttled"] = {**config["handlers"]["default"], "filters": ["redact", "throttle"]}
    config["loggers"]["ingress"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["librdkafka"] = {"handlers": ["throttled"], "level": "WARNING", "propagate": False}
    return config
