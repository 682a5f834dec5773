"""offload-bridge: streams."""
