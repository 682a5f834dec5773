"""Pydantic models: the single source of truth for every message and payload offload-bridge handles."""
