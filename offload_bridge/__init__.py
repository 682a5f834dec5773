"""offload-bridge core: settings, the topic registry, the local broker and the CLI."""

__version__ = "0.1.0"
