"""``offload-bridge simulator``: run the Offload API simulator (flags override ``SIMULATOR_*`` settings)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

_FIELDS = (
    "port", "host", "seed", "step_ms", "api_keys", "webhook_secret",
    "fault_webhook_drop_rate", "fault_webhook_duplicate_rate", "fault_webhook_delay_rate",
    "fault_webhook_delay_ms", "fault_latency_ms", "fault_usage_limit",
)  # fmt: skip


def cmd_simulator(args: argparse.Namespace, _settings: Any) -> int:
    import uvicorn
    from pydantic import ValidationError

    from offload_bridge.schemas.validation import describe_validation_error
    from offload_bridge.simulator.app import create_app
    from offload_bridge.simulator.settings import SimulatorSettings

    overrides = {field: getattr(args, field) for field in _FIELDS if getattr(args, field) is not None}
    if args.fault_error:
        overrides["fault_errors"] = ",".join(args.fault_error)
    try:
        settings = SimulatorSettings(**overrides)
    except ValidationError as invalid:
        problems = describe_validation_error(
            invalid, location=lambda where: "SIMULATOR_" + "_".join(str(part) for part in where).upper()
        )
        print(f"offload-bridge simulator: invalid setting: {problems}", file=sys.stderr)
        return 2
    app = create_app(settings)
    print(
        f"Offload simulator on http://{settings.host}:{settings.port} (step {settings.step_ms} ms)",
        flush=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


def register(commands: Any) -> None:
    sim = commands.add_parser("simulator", help="run the Offload API simulator (local runs and tests)")
    sim.add_argument("--port", type=int, help="listen port (SIMULATOR_PORT, default 8900)")
    sim.add_argument("--host", help="listen address (SIMULATOR_HOST, default 127.0.0.1)")
    sim.add_argument("--seed", type=int, help="seed of the fault randomness (SIMULATOR_SEED)")
    sim.add_argument(
        "--step-ms", type=int, help="real ms per lifecycle step (SIMULATOR_STEP_MS, default 200)"
    )
    sim.add_argument("--api-keys", help="comma-separated accepted keys (SIMULATOR_API_KEYS, default dev-key)")
    sim.add_argument("--webhook-secret", help="whsec_<base64>: sign webhooks (SIMULATOR_WEBHOOK_SECRET)")
    faults = sim.add_argument_group("faults (also settable at run time: PUT /_sim/faults)")
    for name, kind, text in (
        ("webhook-drop-rate", float, "share of webhooks never sent"),
        ("webhook-duplicate-rate", float, "share of webhooks sent twice"),
        ("webhook-delay-rate", float, "share of webhooks held back (later ones overtake them)"),
        ("webhook-delay-ms", int, "how long a held-back webhook waits"),
        ("latency-ms", int, "added to every API response"),
        ("usage-limit", int, "cases per API key before 429 USAGE_LIMIT_REACHED"),
    ):
        faults.add_argument(f"--fault-{name}", type=kind, help=text)
    faults.add_argument(
        "--fault-error",
        action="append",
        metavar="ENDPOINT=RATE[:KIND[:before|after]]",
        help="inject errors into create_case, get_case, provide_input, get_attachment or all; KIND one of "
        "500, 500-bare, 502-bare, 503, 429, 429-retry-after (default 500); repeatable",
    )
    sim.set_defaults(handler=cmd_simulator)
