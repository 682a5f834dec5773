"""What one simulator process holds, and how a route finds it: the leaf the app and its routers share.

``app.py`` builds a ``Simulator`` in its lifespan and puts it on ``app.state.sim``; the routers of ``api.py``
and ``control.py`` reach it through ``simulator_of(request)``.
"""

from __future__ import annotations

from collections import Counter

from fastapi import Request

from offload_bridge.simulator.engine import Engine
from offload_bridge.simulator.faults import Endpoint, Faults
from offload_bridge.simulator.settings import SimulatorSettings
from offload_bridge.simulator.store import CaseStore
from offload_bridge.simulator.webhooks import WebhookSender


class Simulator:
    """Everything one simulator process holds."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.store = CaseStore()
        self.initial_faults = settings.fault_config()
        self.initial_seed = settings.effective_seed()
        self.faults = Faults(self.initial_faults, self.initial_seed)
        self.sender = WebhookSender(self.faults, settings.signing_key, settings.webhook_timeout_s)
        self.engine = Engine(self.sender)
        # Calls of each API endpoint under way (latency included): lets a test see that a call has reached
        # Offload and not yet been answered, instead of guessing how long the caller takes to send it.
        self.in_flight: Counter[Endpoint] = Counter()

    def reset(self) -> None:
        """Forget every case, stop every pending step and webhook, restore the startup faults and seed."""
        self.engine.cancel_all()
        self.sender.cancel_all()
        self.store.clear()
        self.faults.replace(self.initial_faults, self.initial_seed)

    async def close(self) -> None:
        await self.engine.close()
        await self.sender.close()


def simulator_of(request: Request) -> Simulator:
    """The simulator of the app serving ``request``."""
    sim: Simulator = request.app.state.sim
    return sim
