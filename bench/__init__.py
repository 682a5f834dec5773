"""Benchmarks: each script measures against an anchor taken in the same run."""

from __future__ import annotations

from offload_bridge.settings import get_settings
from offload_bridge.worker_client import bearer_headers


def worker_headers() -> dict[str, str]:
    """What a bench sends to the workers it starts: the token of OFFLOAD_WORKER_API_TOKENS, which they get
    from the same environment (none when it is unset and their API is open)."""
    return bearer_headers(get_settings().worker_client_token)
