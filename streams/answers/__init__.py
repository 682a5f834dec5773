"""Forwarding answers from the answers topic to Offload."""
