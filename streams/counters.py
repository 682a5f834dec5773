"""The one counter type of the worker: named counts of what a feature did since this worker started.

A feature declares its names up front, counts with ``inc`` on the hot path (a dict increment), and its
``/stats...`` view and its Prometheus family (``streams.metrics``) both read ``as_dict()``; so the two
always agree. An undeclared name is a KeyError, not a silently new count.
"""

from __future__ import annotations

from collections.abc import Iterable


class Counters:
    __slots__ = ("_counts",)

    def __init__(self, names: Iterable[str]) -> None:
        self._counts: dict[str, int] = dict.fromkeys(names, 0)

    def inc(self, name: str, by: int = 1) -> None:
        self._counts[name] += by

    def __getitem__(self, name: str) -> int:
        return self._counts[name]

    def as_dict(self) -> dict[str, int]:
        """A copy, in the order the names were declared."""
        return dict(self._counts)

    def __repr__(self) -> str:
        return f"Counters({self._counts!r})"
