"""offload-bridge: simulator."""
