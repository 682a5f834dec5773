"""offload-bridge: ingress."""
