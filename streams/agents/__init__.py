"""One module per agent; each has ``register(streams)``."""
