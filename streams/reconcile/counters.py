"""What the reconciler did since this worker started (``GET /stats/reconcile``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class ReconcileCounters:
    sweeps: int = 0
    checked: int = 0  # GET /cases/{id} answered 2xx
    published: int = 0  # synthesized events sent to case-events
    level: int = 0
    behind: int = 0
    diverged: int = 0
    incomplete: int = 0
    not_found: int = 0  # 404: logged, counted
    forbidden: int = 0  # 401/403: logged, counted
    throttled: int = 0  # 429, 5xx, timeouts and refused connections: backed off
    invalid: int = 0  # a 2xx whose body is no case, or another 4xx
    failed: int = 0  # an unexpected error (logged)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
