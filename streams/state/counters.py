"""What the case-state agent did since this worker started (exposed by ``GET /stats``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from offload_bridge.streams.state.fold import FoldOutcome


@dataclass
class FoldCounters:
    applied: int = 0
    stale: int = 0
    ignored: int = 0
    duplicate: int = 0
    invalid: int = 0  # not a valid event: logged, copied to case-events.invalid, skipped
    failed: int = 0  # an unexpected error while folding: logged, skipped

    def count(self, outcome: FoldOutcome) -> None:
        name = outcome.value
        setattr(self, name, getattr(self, name) + 1)

    @property
    def folded(self) -> int:
        return self.applied + self.stale + self.ignored + self.duplicate

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "folded": self.folded}
