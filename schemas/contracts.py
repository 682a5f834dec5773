"""Former home of the per-topic contracts, now declared in the topic registry (``offload_bridge.topics``).

Kept for ``ORIGIN_HEADER`` until every import names ``offload_bridge.schemas.headers``; a module under
``schemas`` must not import the registry, which imports the schemas.
"""

from __future__ import annotations

from offload_bridge.schemas.headers import ORIGIN_HEADER

__all__ = ["ORIGIN_HEADER"]
