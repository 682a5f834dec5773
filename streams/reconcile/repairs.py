"""How long the bridge was behind Offload on the cases the reconciler repaired: a histogram of seconds
from Offload's ``updatedAt`` to the repairing event on the broker, exported as a Prometheus histogram."""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from prometheus_client.core import HistogramMetricFamily, Metric

# From "caught at the first hinted check" to "caught by the slowest backoff" (8 h by default) and beyond.
BUCKETS_S = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    86400.0,
)


class RepairLatency:
    def __init__(self, buckets_s: tuple[float, ...] = BUCKETS_S) -> None:
        self.buckets_s = buckets_s
        self._counts = [0] * (len(buckets_s) + 1)  # the last one: above every bound
        self.count = 0
        self.sum_s = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(self.buckets_s, seconds)] += 1
        self.count += 1
        self.sum_s += seconds

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, observations at or below it), ``+Inf`` last, as Prometheus wants them."""
        running = 0
        out: list[tuple[str, int]] = []
        for bound, count in zip((*map(str, self.buckets_s), "+Inf"), self._counts, strict=True):
            running += count
            out.append((bound, running))
        return out

    def families(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            "offload_worker_reconcile_repair_seconds",
            "seconds from Offload's update of a case to the reconciler's repairing event on the broker",
        )
        family.add_metric([], self.cumulative(), sum_value=self.sum_s)
        yield family
