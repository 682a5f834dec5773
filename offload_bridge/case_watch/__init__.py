"""For the teams that create cases directly with Offload: tell the worker about them (``case-watch``)."""

from offload_bridge.case_watch.client import CaseWatcher, Tracked

__all__ = ["CaseWatcher", "Tracked"]
