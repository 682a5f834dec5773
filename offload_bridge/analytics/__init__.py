"""The analytics tables: what ``offload-bridge export`` writes and ``offload-bridge analytics`` reads."""
