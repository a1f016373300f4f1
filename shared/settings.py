"""Process settings from `LOOPLINE_*` environment variables (nested with `__`).

Example: `LOOPLINE_KAFKA__BOOTSTRAP_SERVERS=broker:9092`, `LOOPLINE_ARGILLA__API_KEY=...`.
Secrets are `SecretStr`: they print as `**********` and never reach a log line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

# What Kafka allows in a topic name; a prefix leaves room for the longest topic name after it.
TOPIC_CHARACTERS = re.compile(r"[A-Za-z0-9._-]*")
MAX_TOPIC_PREFIX = 200


class KafkaSettings(BaseModel):
    """How to reach Kafka, and which topics and consumer groups are this flow set's.

    Code names topics by their logical names (`shared.events`: `records.judged`, ...).
    `topic(name)` is the one place that turns a logical name into the topic on the cluster:
    `topic_prefix` + name. Several flow sets share one cluster by each having its own
    `topic_prefix` (say `team-a.`) and `group_prefix`.
    """

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = "127.0.0.1:9092"
    client_id: str = "loopline"
    group_prefix: str = "loopline"
    # Put before every topic name this process reads, writes or creates (dead-letter topics,
    # the collector's state and `dlq.replays` included); "" leaves the names as they are.
    topic_prefix: str = ""
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1)
    session_timeout_ms: int = Field(default=10_000, ge=1000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    # How long one batch of slow work (LLM calls) may take before the group gives its partitions
    # to another member. Generous: a batch waits on endpoints that may be busy or rate-limited.
    max_poll_interval_ms: int = Field(default=3_600_000, ge=10_000)
    # The largest message any producer sends and any topic accepts, in bytes (Kafka's default):
    # the ingester refuses a record that would not fit (413).
    max_message_bytes: int = Field(default=1_048_576, ge=65_536)

    @field_validator("topic_prefix")
    @classmethod
    def _kafka_topic_characters(cls, value: str) -> str:
        if not TOPIC_CHARACTERS.fullmatch(value):
            allowed = TOPIC_CHARACTERS.fullmatch
            bad = ", ".join(repr(c) for c in sorted(set(value)) if not allowed(c))
            raise ValueError(
                f"LOOPLINE_KAFKA__TOPIC_PREFIX {value!r} has {bad}: Kafka topic names take "
                "only letters, digits, '.', '_' and '-' (e.g. 'team-a.')"
            )
        if len(value) > MAX_TOPIC_PREFIX:
            raise ValueError(
                f"LOOPLINE_KAFKA__TOPIC_PREFIX is {len(value)} characters long; at most "
                f"{MAX_TOPIC_PREFIX} leave room for the topic names after it (Kafka: 249)"
            )
        return value

    def topic(self, name: str) -> str:
        """The topic on the cluster for the logical topic `name` (`records.judged`,
        `records.judged.dlq`, ...): `name` behind `topic_prefix`."""
        return f"{self.topic_prefix}{name}"

    def logical_topic(self, topic: str) -> str:
        """The logical name of a topic on the cluster (what `topic` made it from); a topic
        without this set's prefix is returned as it is."""
        return topic.removeprefix(self.topic_prefix)

    def owns(self, topic: str) -> bool:
        """Whether a topic on the cluster carries this set's prefix (every topic does when
        the prefix is empty)."""
        return topic.startswith(self.topic_prefix)


class RetrySettings(BaseModel):
    """How often a failing handler is retried before its message goes to the dead-letter topic."""

    model_config = ConfigDict(frozen=True)

    max_attempts: int = Field(default=3, ge=1)
    backoff_initial_s: float = Field(default=0.5, ge=0)
    backoff_max_s: float = Field(default=10.0, ge=0)
    backoff_multiplier: float = Field(default=2.0, ge=1)


class MissingSettingError(ValueError):
    """A setting the code path needs was not given; the message names its variable."""


class ArgillaSettings(BaseModel):
    """The Argilla the publisher and the collector talk to.

    `api_key` has no default: a service that needs it refuses to start without it, and
    outside this machine also with a well-known key (`shared.deployment_checks`). The
    `loopline` command fills in the local stack's key for an Argilla on loopback when none is
    set (`cli.options`).
    """

    model_config = ConfigDict(frozen=True)

    api_url: str = "http://127.0.0.1:6900"
    api_key: SecretStr | None = None
    workspace: str = "admin"

    def api_key_value(self) -> str:
        """The key itself, for a client; `MissingSettingError` when none is set."""
        if self.api_key is None:
            raise MissingSettingError(
                f"no Argilla API key for {self.api_url}: set LOOPLINE_ARGILLA__API_KEY"
            )
        return self.api_key.get_secret_value()


class LLMSettings(BaseModel):
    """The default OpenAI-compatible endpoint; a flow can name others."""

    model_config = ConfigDict(frozen=True)

    base_url: str = "http://127.0.0.1:8080/v1"
    api_key: SecretStr = SecretStr("no-key")
    model: str = "qwen2.5-coder-1.5b-instruct"
    timeout_s: float = Field(default=120.0, gt=0)
    # Who serves the endpoints, as LLM spans name it (`gen_ai.provider.name`): an
    # OpenAI-compatible server is "openai" unless named otherwise (a flow's `provider` option).
    provider: str = "openai"
    # Where each model a flow names is served, when not at `base_url` (the flow names the
    # model; the deployment says where it runs): LOOPLINE_LLM__ENDPOINTS='{"model": "url"}'.
    endpoints: dict[str, str] = Field(default_factory=dict)

    def base_url_for(self, model: str) -> str:
        """The endpoint that serves `model`: its entry in `endpoints`, else `base_url`."""
        return self.endpoints.get(model, self.base_url)


class ApiKey(BaseModel):
    """One client's key for the ingester's HTTP API, and the flows it may ingest into."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(min_length=1)
    key: SecretStr
    flows: list[str] = Field(default_factory=lambda: ["*"])  # "*": every flow

    def allows(self, flow: str) -> bool:
        return "*" in self.flows or flow in self.flows


class IngestSettings(BaseModel):
    """The ingester's HTTP API.

    Keys come as JSON, e.g. `LOOPLINE_INGEST__API_KEYS='[{"name": "support-bot",
    "key": "...", "flows": ["support"]}]'`. With no keys configured the API is open (and says so
    in its log at startup); `loopline run ingester` refuses that on a non-loopback host unless
    `allow_open` (LOOPLINE_INGEST__ALLOW_OPEN=true) says it is meant.
    """

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8100, ge=0, le=65535)
    api_keys: list[ApiKey] = Field(default_factory=list)
    allow_open: bool = False  # no keys on a non-loopback host: an open API, on purpose
    max_batch: int = Field(default=1000, ge=1)  # records per request
    max_spans: int = Field(default=8192, ge=1)  # spans per OTLP export request
    max_log_records: int = Field(default=8192, ge=1)  # log records per OTLP logs export request
    # OTLP: an LLM span whose message content comes as log-record events (/v1/logs) waits this
    # long for them, and they for it; at most this many entries and bytes wait at once (past
    # either bound the oldest stop waiting early).
    otlp_join_wait_s: float = Field(default=30.0, gt=0)
    otlp_join_max_entries: int = Field(default=10_000, ge=1)
    otlp_join_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Bytes of a request body, on the wire and after decompression (gzip, deflate).
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Nesting levels of one record (the record object is level 1): a deeper record is refused
    # (422); the bound keeps every record readable by every service (JSON parsers stop at 200).
    max_depth: int = Field(default=64, ge=4, le=128)
    default_flow: str = "default"
    idempotency_window_s: float = Field(default=24 * 3600, gt=0)
    # The answers remembered for Idempotency-Key replays, in bytes (the oldest forgotten first).
    idempotency_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # The topics' AsyncAPI document served at /asyncapi.yaml, .json and /asyncapi (the page),
    # and the folder of that page's viewer (`shared.asyncapi_viewer`; none: under install_dir).
    asyncapi_file: Path = Path("docs/asyncapi.yaml")
    asyncapi_viewer_dir: Path | None = None


class FeedbackSettings(BaseModel):
    """The feedback collector: where Argilla's webhooks reach it and how often it reconciles.

    `public_url` is the address Argilla's worker posts to (registered as a webhook at startup);
    behind a proxy or in containers it differs from `host:port`.
    """

    model_config = ConfigDict(frozen=True)

    host: str = "127.0.0.1"
    port: int = Field(default=8200, ge=0, le=65535)
    public_url: str = "http://127.0.0.1:8200/argilla/webhooks"
    reconcile_interval_s: float = Field(default=60.0, gt=0)
    # Each reconciliation pass looks this far behind its checkpoint again, so a response that
    # was written while a pass or a restart was under way is still caught (duplicates are fine).
    reconcile_overlap_s: float = Field(default=300.0, ge=0)
    page_size: int = Field(default=500, ge=1, le=1000)
    signature_tolerance_s: float = Field(default=300.0, gt=0)


class ExportSettings(BaseModel):
    """The exporter: where versions and its record store live, and how it writes them.

    `dir` defaults to `<stack_dir>/exports`: `<dir>/<flow>/<format>/` (Parquet shards in
    `shards/`, a version's manifest and report in `v<N>/`), and the store of accepted records
    per flow at `<dir>/<flow>/records.sqlite`. `dir` may also be an fsspec URL
    (`s3://bucket/prefix`, LOOPLINE_EXPORT__DIR): versions go there, and the stores, SQLite
    files that need a local disk, to `store_dir` (default `<stack_dir>/exports`). Credentials
    and endpoint come the filesystem's usual ways (for S3: AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, ...) or from `storage_options`, a JSON object of
    the filesystem's options (LOOPLINE_EXPORT__STORAGE_OPTIONS='{"key": ..., "secret": ...,
    "endpoint_url": ...}'), kept secret as a whole.

    A format's rows are sharded by a hash of the record id into `buckets` (a power of two; by
    default chosen when the format's first version is written, for about 16k records a bucket
    at `expected_records` or at the store's size then, if larger) and kept for good by that
    format. Retention: with `keep_versions` and/or `keep_for_s`, a version that is neither one
    of the newest `keep_versions` nor younger than `keep_for_s` is deleted (the latest never
    is), and the shards no remaining version uses are deleted `retention_grace_s` later (a
    reader that holds the deleted version's manifest can still read them meanwhile). It runs
    at each export and, in the exporter service, every `retention_check_s` between exports (a
    quiet flow's versions still age out).
    """

    model_config = ConfigDict(frozen=True)

    dir: Path | str | None = None  # a local directory, or an fsspec URL (a str)
    store_dir: Path | None = None  # the record stores: default `dir` when local
    storage_options: SecretStr | None = None  # JSON object, for a URL `dir`
    hf_token: SecretStr | None = None  # for flows with `export.push_to_hub`
    batch_rows: int = Field(default=2000, ge=1)  # rows held in memory before they go to disk
    shard_rows: int = Field(default=100_000, ge=1)  # at most, per Parquet file
    buckets: int | None = Field(default=None, ge=1, le=65_536)  # a new format's; power of two
    expected_records: int = Field(default=1_000_000, ge=1)  # what a flow grows to
    keep_versions: int | None = Field(default=None, ge=1)  # None: keep all (see keep_for_s)
    keep_for_s: float | None = Field(default=None, gt=0)  # None: age keeps no version
    retention_grace_s: float = Field(default=3600.0, ge=0)
    retention_check_s: float = Field(default=60.0, gt=0)  # retention between exports, this often
    check_interval_s: float = Field(default=10.0, gt=0)  # how often time triggers are checked
    # Processes that parse and aggregate records in exports of `parallel_from` records or more
    # (below that, starting them costs more than they save).
    workers: int = Field(default=2, ge=1)
    parallel_from: int = Field(default=20_000, ge=0)

    @field_validator("dir")
    @classmethod
    def _local_or_url(cls, value: Path | str | None) -> Path | str | None:
        """A URL stays text (`Path` would fold its `//`); a local path, `file://` too, is a
        Path."""
        if not isinstance(value, str):
            return value
        if value.startswith("file://"):
            return Path(value.removeprefix("file://"))
        return value if "://" in value else Path(value)

    @field_validator("buckets")
    @classmethod
    def _power_of_two(cls, value: int | None) -> int | None:
        if value is not None and value & (value - 1):
            raise ValueError(f"buckets must be a power of two, got {value}")
        return value

    def location(self, stack_dir: Path) -> Path | str:
        """Where versions go: a local directory or an fsspec URL."""
        return self.dir if self.dir is not None else stack_dir / "exports"

    def stores(self, stack_dir: Path) -> Path:
        """The local directory of the record stores (`<here>/<flow>/records.sqlite`)."""
        if self.store_dir is not None:
            return self.store_dir
        where = self.location(stack_dir)
        return where if isinstance(where, Path) else stack_dir / "exports"

    def options(self) -> dict[str, Any]:
        """`storage_options` as a dict (secrets included: for the filesystem only). Checked
        here, not when the settings load: a validation error would show the value."""
        if self.storage_options is None:
            return {}
        try:
            parsed = json.loads(self.storage_options.get_secret_value())
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ValueError("LOOPLINE_EXPORT__STORAGE_OPTIONS is not a JSON object")
        return parsed


class TelemetrySettings(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Off (LOOPLINE_TELEMETRY__ENABLED=false): no span is made or exported (OpenTelemetry's
    # no-op tracer provider; a message's trace context from upstream still passes on unchanged,
    # a record that brings none gets no trace), and the brokers have no metrics middlewares, so
    # /metrics lacks faststream_* (messages in and out, sizes, handler durations),
    # loopline_batch_size and loopline_dead_letters_total; the other loopline_* metrics stay.
    enabled: bool = True
    service_name_prefix: str = "loopline"
    otlp_endpoint: str | None = None  # e.g. http://127.0.0.1:4318 ; None disables export
    # LLM spans carry the messages sent and received (gen_ai.input.messages / output.messages)
    # only when this is on: they may hold personal data (LOOPLINE_TELEMETRY__CAPTURE_CONTENT).
    capture_content: bool = False
    # Where people look at traces: a Phoenix's base URL (`loopline trace` links a record's
    # trace there; LOOPLINE_TELEMETRY__VIEWER_URL). None: the local stack's Phoenix, if any.
    viewer_url: str | None = None
    viewer_project: str = "loopline"  # the Phoenix project the services' spans are filed under


class Settings(BaseSettings):
    """All settings of a Loopline process."""

    model_config = SettingsConfigDict(
        env_prefix="LOOPLINE_", env_nested_delimiter="__", frozen=True, extra="ignore"
    )

    flows_file: Path = Path("flows")  # a folder of flow files, or one file
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    argilla: ArgillaSettings = Field(default_factory=ArgillaSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    feedback: FeedbackSettings = Field(default_factory=FeedbackSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    # Log lines as text or one JSON object each (LOOPLINE_LOG_FORMAT); lines about a record
    # name it either way (`shared.logs`).
    log_format: Literal["text", "json"] = "text"
    health_host: str = "127.0.0.1"
    health_port: int | None = Field(default=None, ge=0, le=65535)
    shutdown_timeout_s: float = Field(default=15.0, gt=0)
    # How long records of a flow missing from this service's flow file are held (a rollout may
    # be adding it) before they are dead-lettered.
    unknown_flow_grace_s: float = Field(default=300.0, ge=0)
    # Records the generator and the judge work on at once (LLM calls are bounded per endpoint).
    max_concurrent_records: int = Field(default=32, ge=1)
    # What one running system owns (exports, the exporter's stores; the local stack's pid
    # files, logs and data), and where the local stack's servers and models are installed
    # (shared by every state dir).
    stack_dir: Path = Path(".loopline")
    install_dir: Path = Path(".loopline/install")

    @property
    def export_dir(self) -> Path | str:
        """Where versions go (`ExportSettings.location`)."""
        return self.export.location(self.stack_dir)


def secret_values(settings: BaseModel) -> list[str]:
    """Every secret in `settings` (its `SecretStr` values, nested ones too), to mask in logs."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(settings)
    return found
