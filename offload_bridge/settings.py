"""Every setting of offload-bridge, read from the environment in one place.

Each field's environment variable is its name in upper case (``kafka_bootstrap_servers`` is
``KAFKA_BOOTSTRAP_SERVERS``). Each field says what it does in its ``description``: the settings reference
of the docs is generated from them, and a test fails on a field without one.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    HttpUrl,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

LOCAL_HOST = "127.0.0.1"
DEFAULT_KAFKA_PORT = 9092

DAY_MS = 86_400_000
FOREVER_MS = -1  # Kafka's retention.ms for "never delete"
# The longest worker outage the bridge promises to survive with nothing lost: a week, Kafka's own default
# retention (log.retention.hours=168), so a stopped worker finds every record it has not read yet when it
# comes back. The retry topics keep twice as long (``offload_bridge.topics``), and the history topics,
# which the worker reads too, may be bounded to no less.
WORKER_OUTAGE_SURVIVED_MS = 7 * DAY_MS


def webhook_secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>``. Raises ValueError.

    The padding is optional, as in the official ``standardwebhooks`` libraries: secrets are often shown
    and copied without their trailing ``=``, and refusing them would refuse a secret every verifier takes.
    """
    encoded = secret.strip().removeprefix("whsec_").rstrip("=")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("expected whsec_<base64>") from None
    if not key:
        raise ValueError("expected whsec_<base64>")
    return key


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the environment variable."""


# What a token copied from an example or a manifest template looks like; a real one is random.
PLACEHOLDERS = ("set-me", "set_me", "setme", "change-me", "change_me", "changeme", "replace-me", "example",
                "placeholder")  # fmt: skip
MIN_TOKEN_LENGTH = 16
INSECURE_FLAG = "OFFLOAD_ALLOW_INSECURE_DEFAULTS=1"
# The environment variable naming the directory of secret files (see Settings.offload_secrets_dir).
SECRETS_DIR_VARIABLE = "OFFLOAD_SECRETS_DIR"


def weak_token(token: str) -> str | None:
    """Why ``token`` is no secret (too short, or a placeholder), or None when it may be one."""
    if len(token) < MIN_TOKEN_LENGTH:
        return f"shorter than {MIN_TOKEN_LENGTH} characters"
    lowered = token.lower()
    placeholder = next((word for word in PLACEHOLDERS if word in lowered), None)
    return f"a placeholder (contains {placeholder!r})" if placeholder else None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(case_sensitive=False, extra="ignore", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the environment, then the files of OFFLOAD_SECRETS_DIR (when it is a directory)."""
        directory = os.environ.get(SECRETS_DIR_VARIABLE, "").strip()
        if not directory or not Path(directory).is_dir():
            return init_settings, env_settings  # a missing directory is reported by its field's check
        files = SecretsSettingsSource(settings_cls, secrets_dir=directory, case_sensitive=False)
        return init_settings, env_settings, files

    # --- Secrets from files ---------------------------------------------------------------------
    # How the shipped stacks hand over secrets without putting them in the environment or in a manifest: a
    # Kubernetes Secret mounted as a volume, or a directory bind-mounted by compose.
    offload_secrets_dir: Path | None = Field(
        default=None,
        description="A directory holding one file per setting, named after its variable"
        " (`KAFKA_SASL_PASSWORD`, `OFFLOAD_WEBHOOK_TOKENS`, ...; the content is the value,"
        " surrounding whitespace dropped)."
        " The environment wins over a file. Unset: no files are read. Taken from the environment "
        "only (it says where the other values come from).",
    )

    @field_validator("offload_secrets_dir")
    @classmethod
    def _check_secrets_dir(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError(f"no such directory: {value}")
        return value

    # --- Local development ----------------------------------------------------------------------
    offload_allow_insecure_defaults: bool = Field(
        default=False,
        description="`true`: this is a developer's machine, not a deployment. Webhook and worker tokens may "
        "then be short or placeholders, and the ingress may listen beyond 127.0.0.1 with neither a "
        "webhook token nor a signing secret. Never set it where Offload, or anyone else, reaches "
        "the ingress. `make run` sets it.",
    )

    # --- Kafka connection -------------------------------------------------------------------
    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description=(
            "Comma-separated `host:port` list of the Kafka cluster. Unset: the local broker "
            "(`127.0.0.1:OFFLOAD_KAFKA_PORT`)."
        ),
    )

    # --- Logs --------------------------------------------------------------------------------------
    offload_log_format: Literal["text", "json"] = Field(
        default="text",
        description=(
            "`json`: one JSON object per log line, with `caseId` / `eventId` / `answerId` / `requestId` "
            "fields where they apply. Secrets (API key, tokens, passwords) are replaced by `***` in every "
            "log line."
        ),
    )

    # --- Kafka security (applied to every Kafka client the project makes) ----------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description=(
            "How every Kafka client of the project (ingress, worker, admin, CLI, the Python APIs) talks to "
            "the brokers."
        ),
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="PLAIN", description="The SASL mechanism of a `SASL_*` protocol."
    )
    kafka_sasl_username: str | None = Field(
        default=None, description="SASL user name; required with a `SASL_*` protocol."
    )
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password; required with a `SASL_*` protocol. Never logged."
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None, description="CA bundle (PEM) to verify the brokers. Unset: the system's."
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None,
        description="Client certificate (PEM) for mutual TLS; goes with `KAFKA_SSL_KEYFILE`.",
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None,
        description="Private key (PEM) of the client certificate; goes with `KAFKA_SSL_CERTFILE`.",
    )
    kafka_ssl_key_password: SecretStr | None = Field(
        default=None, description="Password of `KAFKA_SSL_KEYFILE`, when it is encrypted."
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Verify the broker's host name against its certificate."
    )

    @field_validator(
        "kafka_sasl_username", "kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # docker-compose.yml passes `${KAFKA_SSL_CAFILE:-}`: an empty value means "not set", not the path "".
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL") and (not self.kafka_sasl_username or self.kafka_sasl_password is None):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
            )
        for path in (self.kafka_ssl_cafile, self.kafka_ssl_certfile, self.kafka_ssl_keyfile):
            if path is not None and not path.is_file():
                raise ValueError(f"no such file: {path}")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (client certificate)")
        return self

    # --- Topics -----------------------------------------------------------------------------
    offload_topic_prefix: str = Field(
        default="offload.",
        pattern=r"^[A-Za-z0-9._-]*$",
        max_length=200,
        description="Prefix of every topic name (and of the default consumer groups).",
    )
    offload_topic_partitions: int = Field(
        default=6,
        ge=1,
        le=10_000,
        description=(
            "Partitions of every topic `topics create` makes. The caseId-keyed topics must all have this "
            "many (the worker's table is co-partitioned with them)."
        ),
    )
    offload_topic_replication: int = Field(
        default=1, ge=1, le=32, description="Replication factor of every topic `topics create` makes."
    )
    offload_history_retention_ms: int = Field(
        default=FOREVER_MS,
        le=2**63 - 1,  # retention.ms is a long
        description=(
            "`retention.ms` of the history topics (case-events, case-events.invalid, answers, "
            "answer-outcomes, case-requests, case-request-outcomes, case-watch): -1, the default, keeps the "
            "record of what happened forever; a number of milliseconds bounds it, for those who must (a "
            "data-protection rule, a disk budget). At least 604800000 (7 days, the worker outage the bridge "
            "survives): the worker reads these topics too, and a shorter bound would delete what a stopped "
            "worker has not read yet. `topics create` sets it on new topics; `topics apply` aligns existing "
            "ones (a shorter value only with `--allow-shorter-retention`)."
        ),
    )

    @field_validator("offload_history_retention_ms")
    @classmethod
    def _check_history_retention(cls, value: int) -> int:
        if value != FOREVER_MS and value < WORKER_OUTAGE_SURVIVED_MS:
            raise ValueError(
                f"expected -1 (forever) or at least {WORKER_OUTAGE_SURVIVED_MS} ms (7 days, the worker "
                "outage the bridge survives)"
            )
        return value

    # --- Offload API --------------------------------------------------------------------------
    offload_base_url: HttpUrl = Field(
        default=HttpUrl(f"http://{LOCAL_HOST}:8900"),
        description=(
            "Base URL of the Offload API. The default is the local simulator (`offload-bridge simulator`); "
            "set it to Offload's API base URL together with `OFFLOAD_API_KEY` to talk to the real service."
        ),
    )
    offload_api_key: SecretStr | None = Field(
        default=None,
        description=(
            "Offload API key, sent as `x-api-key`; never logged. Unset: calls carry no key and are refused "
            "with 401 (the worker warns at start); a simulator started on its own takes `dev-key`."
        ),
    )

    # --- Calls to Offload and their retries (answers, case requests, reconciliation) ------------
    offload_http_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Timeout of a call to Offload, in seconds."
    )
    offload_http_connect_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="Timeout of connecting to Offload, in seconds."
    )
    offload_http_max_connections: int = Field(
        default=20,
        ge=1,
        le=1000,
        description=(
            "Connections to Offload per worker; the pool holds max(this, `OFFLOAD_API_IN_FLIGHT`), never "
            "fewer than the calls the worker lets through at once, so no call waits inside the pool."
        ),
    )
    offload_answer_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Calls to Offload per answer before it is `dead_lettered`."
    )
    offload_answer_not_waiting_retries: int = Field(
        default=3,
        ge=0,
        le=20,
        description=(
            "Retries of `CASE_NOT_WAITING_FOR_INPUT` while our state shows the question pending: the webhook "
            "that moved the case on may be in flight, so try again a few times before calling it a conflict."
        ),
    )
    offload_retry_base_s: float = Field(
        default=1.0,
        gt=0,
        le=600,
        description="Backoff base of retried calls, in seconds (doubles per attempt, equal jitter).",
    )
    offload_retry_max_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Backoff cap of retried calls, in seconds (a longer `Retry-After` still wins).",
    )

    # --- How many calls the worker makes to Offload at once, and how fast --------------------------
    offload_api_in_flight: int = Field(
        default=128, ge=1, le=4096,
        description=(
            "Calls to Offload in flight at once from one worker, every feature together (answers, case "
            "requests, reconciler, case contexts); the HTTP pool holds at least this many connections. "
            "The features' own bounds (OFFLOAD_ANSWER_IN_FLIGHT, OFFLOAD_CASE_REQUEST_IN_FLIGHT, "
            "OFFLOAD_RECONCILE_CONCURRENCY) sit inside it; when their sum is larger, they share it first "
            "come, first served. Default 128."
        ),
    )  # fmt: skip
    offload_api_rps: float | None = Field(
        default=None, gt=0, le=100_000,
        description=(
            "Calls to Offload started per second on average, per worker, every feature together. Unset "
            "(the default): no rate cap; the calls in flight and the pause on pushback govern. Set it to "
            "the rate Offload grants the API key, divided by the number of workers."
        ),
    )  # fmt: skip
    offload_api_pause_max_s: float = Field(
        default=30.0, gt=0, le=3600,
        description=(
            "The longest pause of every call of a worker after Offload pushed back (429, 5xx, timeout, "
            "failed connection). The pause starts at OFFLOAD_RETRY_BASE_S and doubles while the pushbacks "
            "go on. Default 30 s."
        ),
    )  # fmt: skip
    offload_answer_in_flight: int = Field(
        default=64, ge=1, le=4096,
        description=(
            "Calls to Offload for answers under way at once, per worker, across its partitions (answers and "
            "their retries together), never two at once for the same case; each case's answers go in the "
            "order they were published. Each partition reads up to twice as many answers ahead. Default "
            "64: at Offload's latency of a few hundred ms, about 64 / latency answers a second per worker."
        ),
    )  # fmt: skip
    offload_case_request_in_flight: int = Field(
        default=64, ge=1, le=4096,
        description=(
            "Calls to POST /cases under way at once, per worker, across its partitions (first attempts and "
            "retries together), never two at once for the same requestId. Each partition reads up to twice "
            "as many requests ahead. Default 64."
        ),
    )  # fmt: skip

    @property
    def http_pool_connections(self) -> int:
        """Connections of the HTTP pool to Offload: OFFLOAD_HTTP_MAX_CONNECTIONS, at least
        OFFLOAD_API_IN_FLIGHT."""
        return max(self.offload_http_max_connections, self.offload_api_in_flight)

    # --- Streams worker (the Faust app in streams/) -----------------------------------------------
    offload_worker_app_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=200,
        description=(
            "Faust app id: the workers' consumer group and the names of their changelog topics. Unset: "
            '"<OFFLOAD_TOPIC_PREFIX>streams", so each prefix gets its own consumer group and changelogs.'
        ),
    )
    offload_worker_store: str = Field(
        default="rocksdb://",
        pattern=r"^(memory|rocksdb)://.*$",
        description=(
            "Table store. `rocksdb://` keeps the tables on disk under `OFFLOAD_WORKER_DATA_DIR`: a restart "
            "reads them back and replays only the changelog written since, and RAM stays flat as cases "
            "accumulate (measured at 50k cases: ready in 2.4 s). `memory://` holds every record in RAM "
            "(about 6 KB a case) and replays each table's whole changelog at every start (15.7 s at 50k "
            "cases): fine for tests and small tables only."
        ),
    )
    offload_worker_data_dir: Path = Field(
        default=Path("worker-data"),
        description=(
            "Where the worker keeps its tables, in `<app id>/<instance id>/` below it, so workers sharing "
            "the directory never share a table. Put it on persistent storage and keep it, with the instance "
            "id, across restarts (a relative path is taken from where the worker runs)."
        ),
    )
    offload_worker_rocksdb_write_buffer_mb: int = Field(
        default=4,
        ge=1,
        le=1024,
        description=(
            "`rocksdb://`: the size of each table partition database's memtables (up to two of them), where "
            "writes gather until they are flushed to disk."
        ),
    )
    offload_worker_rocksdb_block_cache_mb: int = Field(
        default=8,
        ge=1,
        le=8192,
        description=(
            "`rocksdb://`: each table partition database's read cache. A worker's RSS grows by at most "
            "about partitions x (2 x write buffer + cache) for the case table."
        ),
    )
    offload_worker_web_host: str = Field(
        default=LOCAL_HOST, min_length=1, description="Address the worker's web server listens on."
    )
    offload_worker_web_port: int = Field(
        default=6066, ge=1, le=65535, description="Port of the worker's web server."
    )
    offload_worker_url: HttpUrl | None = Field(
        default=None,
        description=(
            "How other workers (query routing) and the CLI (`case`, `answer CASE_ID TEXT`, `questions`) "
            "reach this worker. Unset: `http://OFFLOAD_WORKER_WEB_HOST:OFFLOAD_WORKER_WEB_PORT`."
        ),
    )

    offload_worker_api_tokens: SecretStr | None = Field(
        default=None,
        description=(
            "Comma-separated bearer tokens of the worker's HTTP API, which serves case data (what Offload "
            "collected, questions, answers) and internals. When set, every route but liveness and readiness "
            "needs `Authorization: Bearer <one of them>`; list several to rotate one. Each is at least 16 "
            "printable ASCII characters. Clients (the CLI, QuestionReader) send the first. Unset: the API is "
            "open to whoever reaches the port (a warning is logged at start), which is why the worker binds "
            "to 127.0.0.1 unless told otherwise."
        ),
    )
    offload_worker_metrics_auth: bool = Field(
        default=True,
        description=(
            "`GET /metrics` needs the token too (Prometheus sends it with "
            "`authorization: {credentials: ...}` in its scrape config): its labels name topics and "
            "partitions. `false` leaves /metrics open, for a scrape network that reaches nothing else of the "
            "worker's port."
        ),
    )

    @field_validator("offload_worker_api_tokens")
    @classmethod
    def _check_worker_api_tokens(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not any(t.strip() for t in value.get_secret_value().split(",")):
            return None
        for token in value.get_secret_value().split(","):
            # An HTTP header value carries printable ASCII only, and a token shorter than this is a guess.
            if token.strip() and not re.fullmatch(r"[\x21-\x7e]{16,}", token.strip()):
                raise ValueError("each token must be at least 16 printable ASCII characters, no spaces")
        _refuse_placeholders(value, info)
        return value

    @property
    def worker_api_tokens(self) -> tuple[str, ...]:
        """The bearer tokens the worker accepts; empty when its API is open."""
        if self.offload_worker_api_tokens is None:
            return ()
        tokens = (token.strip() for token in self.offload_worker_api_tokens.get_secret_value().split(","))
        return tuple(token for token in tokens if token)

    @property
    def worker_client_token(self) -> str | None:
        """The token a client sends to a worker: the first of OFFLOAD_WORKER_API_TOKENS."""
        tokens = self.worker_api_tokens
        return tokens[0] if tokens else None

    offload_worker_urls: str | None = Field(
        default=None,
        description=(
            "Workers that `offload-bridge questions` and QuestionReader ask first (comma-separated URLs). "
            "Unset: `OFFLOAD_WORKER_URL`'s. The others are found through the group's assignment that any "
            "worker knows (`GET /workers`); list them here when the addresses workers give each other are "
            "not reachable from where the command runs."
        ),
    )

    @field_validator("offload_worker_urls")
    @classmethod
    def _check_worker_urls(cls, value: str | None) -> str | None:
        urls = [url.strip().rstrip("/") for url in (value or "").split(",") if url.strip()]
        for url in urls:
            if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", url):
                raise ValueError(f"expected http(s)://host:port[,...], got {url!r}")
        return ",".join(urls) or None

    @property
    def worker_urls(self) -> tuple[str, ...]:
        """The workers a client asks first: OFFLOAD_WORKER_URLS, else this machine's worker URL."""
        if self.offload_worker_urls is None:
            return (self.worker_url,)
        return tuple(self.offload_worker_urls.split(","))

    offload_worker_log_level: str = Field(
        default="info",
        pattern=r"^(?i:debug|info|warning|error)$",
        description="Log level of the worker: debug, info, warning or error.",
    )
    offload_worker_instance_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=249,
        description=(
            "Static group membership id (Kafka's `group.instance.id`): a worker restarted with the same id "
            "takes its partitions straight back instead of waiting for the dead member's session to expire. "
            "Ids must differ between the workers of one app id (the broker fences the older of two equal "
            "ids). Unset: `worker-<host>-<port>`, derived from the worker URL, which already has to be "
            "unique for query routing. Letters, digits, '.', '_' and '-', at most 249 characters."
        ),
    )
    offload_worker_session_timeout_s: float = Field(
        default=15.0,
        ge=6,
        le=90,
        description=(
            "How long the broker waits for a silent worker before moving its partitions to the others, in "
            "seconds. With static membership a stopped or crashed worker that does not come back holds its "
            "partitions this long (it does not leave the group on stop), so keep it short; too short and a "
            "stalled event loop gets the worker evicted. 6 s is the broker's lower bound "
            "(`group.min.session.timeout.ms`) and Faust refuses more than its 90 s request timeout."
        ),
    )
    offload_worker_standby_replicas: int = Field(
        default=1,
        ge=0,
        le=10,
        description=(
            "Standby copies of each table partition kept on other workers: a worker taking over a partition "
            "from a dead one then serves at once instead of replaying the changelog. Costs one more copy of "
            "the table (memory or disk) and changelog reads per replica; no effect with a single worker."
        ),
    )
    offload_state_batch_events: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description=(
            "The fold writes each changed case once per batch, to case-state and to the table's changelog: "
            "once this many events are held, or `OFFLOAD_STATE_BATCH_MS` after the first of them. Larger "
            "batches fold faster when events come in bursts and cost memory and replay time after a crash."
        ),
    )
    offload_state_batch_ms: float = Field(
        default=50.0,
        gt=0,
        le=60_000,
        description=(
            "...or this long (ms) after the batch's first event. Queries see a change at once; the topics "
            "and the committed offsets move per batch."
        ),
    )
    offload_worker_commit_interval_s: float = Field(
        default=2.8,
        gt=0,
        le=300,
        description=(
            "How often the worker commits the offsets of what it has handled, in seconds (Faust's "
            "`broker_commit_interval`). A restart replays at most about this much; shorter costs a commit "
            "request per interval."
        ),
    )

    # --- A case's context from Offload (the worker's GET /cases/{caseId}/context) ----------------------
    # The conversation so far and the case's objective are Offload's alone: a page showing a question asks
    # the worker, the only holder of the API key, which fetches it through the worker's one limit of calls.
    offload_case_context_cache_s: float = Field(
        default=30.0, ge=0, le=3600,
        description=(
            "How long a worker reuses a case's context (`GET /cases/{caseId}/context`: Offload's case with "
            "its transcript) before asking Offload again, in seconds; requests for the same case meanwhile "
            "share one call. 0: every request asks Offload (concurrent ones still share a call). Only "
            "successful answers are kept. Default 30."
        ),
    )  # fmt: skip
    offload_case_context_cache_entries: int = Field(
        default=256, ge=1, le=100_000,
        description=(
            "Cases whose context one worker keeps at most (the least recently used goes first): a "
            "transcript can be long, so this bounds the memory the cache takes. Default 256."
        ),
    )  # fmt: skip

    # --- Reconciler ---------------------------------------------------------------------------------
    # Each open case carries its next check time (GET /cases/{id}), kept in the case table. Any event of
    # the case puts it OFFLOAD_RECONCILE_STALE_S ahead; every check that finds nothing new multiplies the
    # wait by OFFLOAD_RECONCILE_BACKOFF_FACTOR, up to OFFLOAD_RECONCILE_MAX_INTERVAL_S, each wait varied
    # by +-OFFLOAD_RECONCILE_JITTER of itself so that cases created together spread out. Defaults: about 3
    # calls per open case a day once it is quiet (docs: "Sizing the reconcile budget").
    offload_reconcile_stale_s: float = Field(
        default=600.0,
        ge=0,
        le=30 * 86_400,
        description=(
            "Seconds from any event of an open case to its first check (`GET /cases/{id}`); the backoff "
            "starts here."
        ),
    )
    offload_reconcile_backoff_factor: float = Field(
        default=3.0,
        ge=1,
        le=100,
        description="Each check that finds nothing new waits this many times longer (`1`: a fixed interval).",
    )
    offload_reconcile_max_interval_s: float = Field(
        default=8 * 3600.0,
        gt=0,
        le=30 * 86_400,
        description="The longest wait between two checks of an open case, in seconds.",
    )
    offload_reconcile_jitter: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description=(
            "Each wait varies by up to this share of itself, so that cases created together spread out."
        ),
    )
    offload_reconcile_hints: bool = Field(
        default=True,
        description=(
            "Also check a case soon after what makes it move: an answer we delivered, its creation through "
            "case-requests, and the `nextActionAt` Offload gave at the last check."
        ),
    )
    offload_reconcile_after_answer_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="With the hints on: check a case this many seconds after an answer was accepted.",
    )
    offload_reconcile_after_create_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="With the hints on: check a case this many seconds after case-requests created it.",
    )
    offload_reconcile_after_next_action_s: float = Field(
        default=30.0,
        ge=0,
        le=86_400,
        description="With the hints on: check a case this many seconds after Offload's `nextActionAt`.",
    )
    offload_reconcile_safety_interval_s: float = Field(
        default=8 * 3600.0,
        gt=0,
        le=30 * 86_400,
        description="With the hints on, a case whose next move a hint covers (it waits for an answer to"
        " its question, or for the nextActionAt Offload gave) gets no backoff checks, only the hint's check"
        " and one every this many seconds, for the moves no hint foresees (an answer given outside the"
        " bridge, a counterparty replying before the next follow-up). Default 28800 (8 h).",
    )
    offload_reconcile_interval_s: float = Field(
        default=2.0,
        gt=0,
        le=86_400,
        description=(
            "How often (seconds) the worker looks for due cases (a lookup in an index of due times: cheap)."
        ),
    )
    # Calls in flight at once, at most OFFLOAD_RECONCILE_RPS started a second, and never more than
    # OFFLOAD_RECONCILE_BUDGET_CALLS in any OFFLOAD_RECONCILE_BUDGET_WINDOW_S, per worker (tracked cases
    # fetched at once count too). A 429, 5xx, timeout or refused connection pauses all of a worker's
    # calls, backing off with OFFLOAD_RETRY_BASE_S/MAX_S (Retry-After honoured).
    offload_reconcile_concurrency: int = Field(
        default=8, ge=1, le=256, description="Reconcile checks in flight at once, per worker."
    )
    offload_reconcile_rps: float = Field(
        default=5.0,
        gt=0,
        le=10_000,
        description="At most this many `GET /cases/{id}` started a second (per worker or command).",
    )
    offload_reconcile_budget_calls: int = Field(
        default=3600,
        ge=1,
        le=10_000_000,
        description=(
            "At most this many `GET /cases/{id}` per budget window, per worker (tracked cases fetched at "
            "once count too)."
        ),
    )
    offload_reconcile_budget_window_s: float = Field(
        default=3600.0,
        gt=0,
        le=86_400,
        description="The budget's window, in seconds (any window of this length, not clock hours).",
    )

    # --- Case requests -----------------------------------------------------------------------------
    offload_case_request_max_attempts: int = Field(
        default=5,
        ge=1,
        le=100,
        description=(
            "Calls to `POST /cases` per request before it is dead-lettered (429 other than the usage limit, "
            "and connections refused before sending, are retried with `OFFLOAD_RETRY_BASE_S`/`MAX_S` "
            "backoff)."
        ),
    )
    offload_public_webhook_url: HttpUrl | None = Field(
        default=None,
        description=(
            "`clientWebhookUrl` of a case request that names none: where Offload reaches our ingress "
            "(its public URL, with the path token)."
        ),
    )

    # --- Export to Parquet (``offload-bridge export``) ----------------------------------------------
    offload_export_to: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Where the tables go when `export` is run without `--to`: a directory or a URL pyarrow's "
            "filesystem layer takes (`s3://bucket/prefix`, `gs://bucket/prefix`, `file:///abs/path`). "
            "Unset: `--to` is required."
        ),
    )
    offload_export_group: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=200,
        description=(
            "The exporter's consumer group; its committed offsets are the export's progress (a file is "
            'written before its offsets are committed). Unset: "<OFFLOAD_TOPIC_PREFIX>export". Instances '
            "sharing it split the partitions; a second target needs a group of its own."
        ),
    )
    offload_export_roll_rows: int = Field(
        default=100_000,
        ge=1,
        le=10_000_000,
        description=(
            "A partition's buffered rows are written as files once they reach this many rows: larger files "
            "read faster and cost more memory while buffered (about 0.7 KB a row for events, measured by "
            "`bench/export.py`)."
        ),
    )
    offload_export_roll_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description=(
            "...or once its oldest buffered record has waited this long (seconds): the most a row of "
            "`export --follow` lags behind Kafka, and how often the questions and cases snapshots are "
            "refreshed."
        ),
    )
    offload_export_metrics_host: str = Field(
        default=LOCAL_HOST,
        min_length=1,
        description="`export --follow` serves Prometheus metrics on this address (`GET /metrics`).",
    )
    offload_export_metrics_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Port of `export --follow`'s Prometheus metrics; `0` turns them off.",
    )

    # --- Browser inbox (``offload-bridge inbox``) ----------------------------------------------------
    offload_inbox_host: str = Field(
        default=LOCAL_HOST,
        min_length=1,
        description="Address the inbox listens on (`--host`). Its identity-aware proxy is what people reach.",
    )
    offload_inbox_port: int = Field(
        default=8095, ge=1, le=65535, description="Port the inbox listens on (`--port`)."
    )
    offload_inbox_trusted_proxies: str = Field(
        default="127.0.0.1/32,::1/128",
        description=(
            "Comma-separated addresses or networks (CIDR) of the identity-aware proxies in front of the "
            "inbox. `X-Forwarded-Email` / `X-Forwarded-User` are believed only on connections from these; "
            "every other request is refused (401), but liveness, readiness and metrics. The default trusts "
            "a proxy on the same host or in the same pod."
        ),
    )
    offload_inbox_csrf_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The key of the forms' CSRF tokens (at least 16 characters). Every replica of the inbox must "
            "share it: a form served by one is posted to any. Unset: a random key per process (a warning is "
            "logged), fine for a single replica; a restart then asks people to send an open form again."
        ),
    )
    offload_inbox_form_max_age_s: int = Field(
        default=12 * 3600,
        ge=60,
        description="How long an answer form stays valid after its page was served, in seconds.",
    )
    offload_inbox_history_days: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How far back the inbox reads case-events, answers and answer-outcomes at start, and how long it "
            "keeps the history of a case no longer waiting. The waiting questions come from case-state and "
            "are complete whatever this is; earlier questions and answers of a case older than this are not "
            "shown. The inbox holds about 1 KB per question and answer of the window in memory."
        ),
    )
    offload_inbox_dev_person: str | None = Field(
        default=None,
        max_length=320,
        description=(
            "A development machine only (needs `OFFLOAD_ALLOW_INSECURE_DEFAULTS=1`): a request from this "
            "machine's loopback that carries no identity is this person, so the inbox opens in a browser "
            "without a proxy. `make run` sets it to `you@localhost`. Never set it where others reach the "
            "inbox."
        ),
    )
    offload_inbox_page_size: int = Field(
        default=50, ge=1, le=500, description="Waiting questions on one page of the inbox's list."
    )

    @model_validator(mode="after")
    def _check_inbox_dev_person(self) -> Settings:
        if self.offload_inbox_dev_person and not self.offload_allow_insecure_defaults:
            raise ValueError(
                "OFFLOAD_INBOX_DEV_PERSON lets anyone on this machine answer as that person: it needs "
                f"{INSECURE_FLAG} (a development machine)"
            )
        return self

    @field_validator("offload_inbox_trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        import ipaddress

        for part in value.split(","):
            if part.strip():
                try:
                    ipaddress.ip_network(part.strip(), strict=False)
                except ValueError:
                    raise ValueError(f"expected addresses or networks (CIDR), got {part.strip()!r}") from None
        return value

    @field_validator("offload_inbox_csrf_secret")
    @classmethod
    def _check_csrf_secret(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        reason = weak_token(value.get_secret_value().strip())
        if reason and not info.data.get("offload_allow_insecure_defaults"):
            raise ValueError(f"the secret is {reason}: use a long random one (`openssl rand -hex 24`)")
        return SecretStr(value.get_secret_value().strip())

    # --- Kafka permissions (``offload-bridge acls``) -------------------------------------------------
    offload_reader_group_prefix: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        max_length=200,
        description="Downstream services and analytics (the `reader` role) read in consumer groups"
        " of their own whose ids start with this prefix; `acls` grants the role every group under it and no "
        "other. Unset: `<OFFLOAD_TOPIC_PREFIX>reader.` (e.g. `offload.reader.billing`).",
    )

    # --- Local broker (dev and tests; never used when KAFKA_BOOTSTRAP_SERVERS names a cluster) ---
    offload_kafka_dir: Path = Field(
        default=Path(".kafka"), description="Home of the local broker: jars, data, logs, pid file."
    )
    offload_kafka_port: int = Field(
        default=DEFAULT_KAFKA_PORT, ge=1, le=65535, description="Port of the local broker's client listener."
    )
    offload_kafka_controller_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the local broker's KRaft controller listener. Unset: `OFFLOAD_KAFKA_PORT` + 1.",
    )
    offload_kafka_heap: str = Field(
        default="512m", pattern=r"^[0-9]+[kKmMgG]$", description="JVM heap of the local broker."
    )
    offload_kafka_start_timeout_s: float = Field(
        default=90.0, gt=0, description="How long `kafka start` waits for the broker to answer, in seconds."
    )

    # --- Ingress (``offload-bridge ingress``) ------------------------------------------------------
    offload_webhook_tokens: SecretStr | None = Field(
        default=None,
        description=(
            "Comma-separated secret path tokens (`/webhooks/offload/{token}`); several at once let a token "
            "rotate. Unset: the bare path `/webhooks/offload` is open (a warning is logged at start)."
        ),
    )
    offload_webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Standard Webhooks signing secret (`whsec_<base64>`, base64 padding optional, as in the official "
            "libraries); when set, every webhook must carry a valid signature."
        ),
    )
    offload_webhook_max_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=2 * 1024 * 1024,
        description=(
            "The largest webhook body accepted, in bytes; the case-events topics accept records up to 2 MiB "
            "plus headers."
        ),
    )
    offload_publish_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=120,
        description="Seconds a webhook waits for the broker's acknowledgement before answering 503.",
    )
    offload_ingress_host: str = Field(
        default=LOCAL_HOST, min_length=1, description="Address the ingress listens on (`--host`)."
    )
    offload_ingress_port: int = Field(
        default=8080, ge=1, le=65535, description="Port the ingress listens on (`--port`)."
    )
    offload_ingress_workers: int = Field(
        default=1, ge=1, le=64, description="Ingress worker processes (`--workers`)."
    )
    offload_ingress_shutdown_grace_s: float = Field(
        default=30.0,
        gt=0,
        description="On SIGTERM, in-flight webhooks get this long (seconds) to finish before the exit.",
    )
    offload_ingress_keepalive_s: float = Field(
        default=75.0,
        gt=0,
        le=3600,
        description=(
            "How long an idle keep-alive connection stays open, in seconds. Longer than a client's or a load "
            "balancer's own idle timeout (httpx 5 s, AWS ALB 60 s), so the client always closes first: a "
            "server that closes first races a request already on its way, which the sender sees as a reset."
        ),
    )
    offload_ingress_linger_ms: float = Field(
        default=5.0,
        ge=0,
        le=1000,
        description=(
            "How long the ingress producer gathers records into one batch (librdkafka `linger.ms`). Fewer, "
            "larger produce requests cost the broker and the client less CPU; 5 ms measured best at 32 "
            "connections, 0 gives the lowest latency for a lone webhook."
        ),
    )

    @field_validator("offload_webhook_secret")
    @classmethod
    def _check_webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        webhook_secret_key(value.get_secret_value())
        return SecretStr(value.get_secret_value().strip())

    @field_validator("offload_webhook_tokens")
    @classmethod
    def _check_webhook_tokens(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not any(t.strip() for t in value.get_secret_value().split(",")):
            return None
        for token in value.get_secret_value().split(","):
            # One segment of a URL path: nothing that would end it or need escaping.
            if token.strip() and not re.fullmatch(r"[A-Za-z0-9._~!$&'()*+=:@-]+", token.strip()):
                raise ValueError("a token may hold letters, digits and ._~!$&'()*+=:@- only")
        _refuse_placeholders(value, info)
        return value

    @property
    def webhook_tokens(self) -> tuple[str, ...]:
        """The accepted path tokens; empty when the bare path is open."""
        if self.offload_webhook_tokens is None:
            return ()
        tokens = (token.strip() for token in self.offload_webhook_tokens.get_secret_value().split(","))
        return tuple(token for token in tokens if token)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        servers = [server.strip() for server in value.split(",") if server.strip()]
        for server in servers:
            host, sep, port = server.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return ",".join(servers)

    def as_env(self) -> dict[str, str]:
        """The environment variables that reproduce these settings in a child process."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[name.upper()] = str(value)
        env["KAFKA_BOOTSTRAP_SERVERS"] = self.bootstrap_servers
        return env

    @property
    def local_bootstrap(self) -> str:
        return f"{LOCAL_HOST}:{self.offload_kafka_port}"

    @property
    def bootstrap_servers(self) -> str:
        """Where every Kafka client connects: the configured cluster, else the local broker."""
        return self.kafka_bootstrap_servers or self.local_bootstrap

    @property
    def export_group(self) -> str:
        return self.offload_export_group or f"{self.offload_topic_prefix}export"

    @property
    def reader_group_prefix(self) -> str:
        return self.offload_reader_group_prefix or f"{self.offload_topic_prefix}reader."

    @property
    def worker_app_id(self) -> str:
        return self.offload_worker_app_id or f"{self.offload_topic_prefix}streams"

    @property
    def worker_data_path(self) -> Path:
        """This worker's Faust data directory: one per app id and worker instance id.

        A RocksDB database is locked by the process that opened it, so two workers of one machine that
        share OFFLOAD_WORKER_DATA_DIR (the default, relative to where they run) must not share the
        directory below it: the second would wait on the first's lock for every partition they both
        hold, active or standby. The instance id already names one worker and stays the same across its
        restarts, which is when the data must be found again.
        """
        return self.offload_worker_data_dir / self.worker_app_id / self.worker_instance_id

    @property
    def worker_url(self) -> str:
        """The worker's own web address as other workers and the CLI reach it (no trailing slash)."""
        if self.offload_worker_url is not None:
            return str(self.offload_worker_url).rstrip("/")
        return f"http://{self.offload_worker_web_host}:{self.offload_worker_web_port}"

    @property
    def worker_instance_id(self) -> str:
        """This worker's static group membership id: the configured one, else one from the worker URL.

        The URL is the natural default: other workers route queries to it, so it already names exactly
        one worker, and it stays the same when that worker restarts on the same host and port.
        """
        if self.offload_worker_instance_id is not None:
            return self.offload_worker_instance_id
        address = self.worker_url.split("://", 1)[-1]
        return "worker-" + re.sub(r"[^A-Za-z0-9._-]+", "-", address).strip("-")[:240]

    @property
    def uses_external_kafka(self) -> bool:
        """True when KAFKA_BOOTSTRAP_SERVERS names a cluster other than the local broker."""
        configured = self.kafka_bootstrap_servers
        if configured is None:
            return False
        local_names = {self.local_bootstrap, f"localhost:{self.offload_kafka_port}"}
        return set(configured.split(",")) - local_names != set()


def _refuse_placeholders(tokens: SecretStr, info: ValidationInfo) -> None:
    """Outside local development, every token of a comma-separated list must be long and no placeholder."""
    if info.data.get("offload_allow_insecure_defaults"):
        return
    for token in (token.strip() for token in tokens.get_secret_value().split(",")):
        reason = token and weak_token(token)
        if reason:
            raise ValueError(
                f"a token is {reason}: use a long random one (`openssl rand -hex 24`); {INSECURE_FLAG} "
                "accepts it on a development machine"
            )


def load_settings() -> Settings:
    """Read the environment; a bad value raises SettingsError naming the variable."""
    try:
        return Settings()
    except ValidationError as error:
        problems = []
        for issue in error.errors():
            variable = "_".join(str(part) for part in issue["loc"]).upper() or "settings"
            value = issue.get("input")
            # Never echo a secret back, and never dump the whole environment.
            secret = any(word in variable for word in ("KEY", "SECRET", "TOKEN", "PASSWORD"))
            shown = "" if secret or isinstance(value, dict) else f" (got {value!r})"
            problems.append(f"{variable}: {issue['msg']}{shown}")
        raise SettingsError("invalid setting: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
