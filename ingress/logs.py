"""Logging of the ingress process: uvicorn's format for our loggers too, and a throttle for the Kafka
client (librdkafka), which logs every failed reconnect (about one a second) while a broker is away."""

from __future__ import annotations

import copy
import logging
import re
import time
from typing import Any

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


def log_config() -> dict[str, Any]:
    """Uvicorn's logging config extended to the ingress' loggers (applied in every worker)."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["throttle"] = {"()": "ingress.logs.Throttle"}
    config["handlers"]["throttled"] = {**config["handlers"]["default"], "filters": ["throttle"]}
    config["loggers"]["ingress"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    config["loggers"]["librdkafka"] = {"handlers": ["throttled"], "level": "WARNING", "propagate": False}
    return config
