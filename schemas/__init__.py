"""offload-bridge: schemas."""
