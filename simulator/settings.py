"""Settings of the simulator, a separate program: environment variables ``SIMULATOR_*``.

Command-line flags of ``offload-bridge simulator`` override them.
"""

from __future__ import annotations

import base64
import secrets

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from offload_bridge.simulator.faults import FaultConfig, parse_error_spec

SECRET_PREFIX = "whsec_"


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SIMULATOR_", case_sensitive=False, extra="ignore", frozen=True
    )

    host: str = Field(default="127.0.0.1", description="Address the simulator listens on (`--host`).")
    port: int = Field(default=8900, ge=0, le=65535, description="Port the simulator listens on (`--port`).")
    api_keys: str = Field(
        default="dev-key",
        description="Comma-separated API keys the simulator accepts in `x-api-key` (`--api-keys`).",
    )
    inactive_api_keys: str = Field(
        default="",
        description=(
            "Comma-separated API keys that are known but inactive: every call with one answers 403 "
            "`FORBIDDEN`, as Offload answers an inactive key."
        ),
    )
    step_ms: int = Field(
        default=200,
        ge=1,
        le=3_600_000,
        description="Real milliseconds one lifecycle step of a case takes (`--step-ms`).",
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "`whsec_<base64>` (padding optional): sign webhooks the Standard Webhooks way "
            "(`--webhook-secret`). Unset: webhooks go unsigned."
        ),
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="How long one webhook delivery may take, in seconds."
    )
    seed: int | None = Field(
        default=None,
        description="Seed of the fault randomness (`--seed`); unset: a random one (`GET /_sim/health`).",
    )

    # --- fault knobs (also settable at run time through PUT /_sim/faults) ---
    fault_webhook_drop_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of webhooks never sent."
    )
    fault_webhook_duplicate_rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="Share of webhooks sent twice."
    )
    fault_webhook_delay_rate: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="Share of webhooks held back, so that later ones overtake them.",
    )
    fault_webhook_delay_ms: int = Field(
        default=0, ge=0, le=600_000, description="How long a held-back webhook waits, in milliseconds."
    )
    fault_latency_ms: int = Field(
        default=0, ge=0, le=600_000, description="Milliseconds added to every API response."
    )
    fault_usage_limit: int | None = Field(
        default=None,
        ge=0,
        description="Cases one API key may create before 429 `USAGE_LIMIT_REACHED`. Unset: no limit.",
    )
    fault_errors: str = Field(
        default="",
        description=(
            "Errors injected per endpoint: `ENDPOINT=RATE[:KIND[:before|after]],...`, e.g. "
            "`provide_input=0.2:503,get_case=0.1:429-retry-after`. ENDPOINT is `create_case`, `get_case`, "
            "`provide_input`, `get_attachment` or `all`; KIND one of `500`, `500-bare`, `502-bare`, `503`, "
            "`429`, `429-retry-after` (default `500`); `after` processes the request and loses only the "
            "response."
        ),
    )

    @field_validator("webhook_secret")
    @classmethod
    def _check_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        secret_key(value.get_secret_value())
        return value

    @field_validator("fault_errors")
    @classmethod
    def _check_errors(cls, value: str) -> str:
        parse_error_spec(value)
        return value

    @property
    def api_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.api_keys.split(",") if key.strip())

    @property
    def inactive_api_key_set(self) -> frozenset[str]:
        return frozenset(key.strip() for key in self.inactive_api_keys.split(",") if key.strip())

    @property
    def signing_key(self) -> bytes | None:
        if self.webhook_secret is None:
            return None
        return secret_key(self.webhook_secret.get_secret_value())

    def effective_seed(self) -> int:
        return self.seed if self.seed is not None else secrets.randbelow(2**31)

    def fault_config(self) -> FaultConfig:
        return FaultConfig(
            webhook_drop_rate=self.fault_webhook_drop_rate,
            webhook_duplicate_rate=self.fault_webhook_duplicate_rate,
            webhook_delay_rate=self.fault_webhook_delay_rate,
            webhook_delay_ms=self.fault_webhook_delay_ms,
            latency_ms=self.fault_latency_ms,
            usage_limit=self.fault_usage_limit,
            endpoints=parse_error_spec(self.fault_errors),
        )


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. Raises ValueError."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"must start with {SECRET_PREFIX}")
    # Padding optional, as in the official standardwebhooks libraries (secrets are often copied without it).
    encoded = secret[len(SECRET_PREFIX) :].rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        raise ValueError(f"the part after {SECRET_PREFIX} must be base64") from None
    if not key:
        raise ValueError("the key is empty")
    return key
