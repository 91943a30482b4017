"""The one Settings object: every environment variable the service reads is declared here."""
from __future__ import annotations

import ssl
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
# Room left under KAFKA_MAX_RECORD_BYTES for a delivery's key and headers: the input record's, and the dead-letter
# copy's (original headers + dlq-* headers, the reason capped at 1,000 characters).
DELIVERY_HEADROOM_BYTES = 16 * 1024


class Settings(BaseSettings):
    """Service settings, read once from the environment (and an optional `.env`)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    # Broker
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="Comma-separated host:port list")
    # How long a starting worker waits for the broker to answer (0 = forever).
    broker_wait_s: float = Field(0.0, ge=0)
    # How long the producer waits to fill a batch (ms). Larger batches are faster on Apache Kafka.
    kafka_producer_linger_ms: float = Field(0.0, ge=0)
    # Before changelog recovery, read past each reported end offset to find the true one (see app/end_offsets.py).
    # The embedded broker under-reports end offsets after multi-record batches; this replaces forcing one record
    # per batch, which cost two thirds of the produce rate and stalled aiokafka's producer with several workers.
    kafka_verify_end_offsets: bool = True
    # Longest a consumer fetch waits on the broker for data (see app/fetch_wait.py): each pipeline stage's latency
    # on brokers that hold fetches for the whole wait; on Apache Kafka only the idle polling rate.
    kafka_fetch_max_wait_ms: int = Field(20, ge=1, le=5000)
    # Largest record the producer sends (its max request size): Apache Kafka's default (1 MiB), so a run on the
    # embedded broker (which takes any size) refuses what Kafka would. Topics this service creates get a matching
    # `max.message.bytes`. Raise both here and on the cluster together.
    kafka_max_record_bytes: int = Field(1024 * 1024, ge=64 * 1024)
    # Security for managed Kafka: TLS (SSL), SASL (PLAIN or SCRAM) or both (SASL_SSL).
    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_sasl_mechanism: SaslMechanism = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # TLS: CA bundle to trust (default: the system's), and a client certificate for mutual TLS.
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # Application
    app_id: str = "pending-points"
    # Prepended to every topic name (for several deployments, or test runs, on one shared cluster).
    topic_prefix: str = ""
    # Per-topic name overrides, JSON: {"voucherify-webhooks": "prod.voucherify.webhooks", ...} (registry names
    # as keys). An override is used as given, without the prefix.
    topic_names: dict[str, str] = Field(default_factory=dict)
    partitions: int = Field(4, ge=1, description="Partitions of every topic this service creates")
    replication_factor: int = Field(1, ge=1)
    data_dir: Path = Path("./data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    # URL other workers use to reach this one's views (routing to the key's owner).
    web_advertised_url: str | None = None
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    # "json": one JSON object per log line (for log shippers); "text": Faust's human-readable format.
    log_format: Literal["text", "json"] = "text"

    # Webhook endpoint (POST /webhooks/voucherify). The secret is the one in Voucherify's project settings.
    webhook_secret: SecretStr | None = None
    # Without a secret the endpoint stays off (answers 503) unless this is set: for local trials only.
    webhook_allow_unsigned: bool = False
    # How long a POST waits for the broker to acknowledge the delivery before answering 503 (Voucherify gives
    # up on a request after 10 s and retries it later).
    webhook_ack_timeout_s: float = Field(7.0, gt=0, le=9.5)

    # Group membership. The embedded broker holds a join for about half the session timeout, and a dead
    # member keeps its partitions that long: lower is faster failover, higher tolerates longer pauses.
    session_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(2.0, gt=0)
    rebalance_timeout_s: float = Field(20.0, gt=0)
    commit_interval_s: float = Field(2.8, gt=0)
    # Each agent takes its input in batches: up to this many records, or what arrived within the window. Events
    # of one key in a batch are folded into one table write and one output record. Larger batches: more
    # throughput under load; the window adds at most that much latency per stage when the input is sparse.
    stream_batch_max: int = Field(500, ge=1)
    stream_batch_within_ms: float = Field(10.0, gt=0)
    # Before Faust starts, bring the local tables up to their changelogs with a plain consumer (app/restore.py):
    # several times faster than Faust's own recovery, which then only reads what was written since.
    bulk_restore: bool = True
    # Warm copies of other workers' table partitions, for fast failover (0 = none).
    table_standby_replicas: int = Field(1, ge=0)
    # RocksDB memory per table partition (Faust's defaults are 3 x 64 MB write buffers and a 2 GB block cache per
    # partition, so RSS grew with the data: 120 MB at 10k deliveries, 260 MB at 50k). State lives on disk either way.
    rocksdb_write_buffer_mb: int = Field(4, ge=1)
    rocksdb_max_write_buffers: int = Field(2, ge=2)
    rocksdb_block_cache_mb: int = Field(8, ge=1)

    # Domain
    # Voucherify activates pending points at 00:00 in the project's time zone; "early" is judged there.
    project_timezone: str = "UTC"
    # Largest delivery accepted (HTTP body or input record); larger POSTs get 413, larger records are dead-lettered.
    # It must leave DELIVERY_HEADROOM_BYTES under KAFKA_MAX_RECORD_BYTES for the record's headers (and a dead-letter
    # copy's), so that anything accepted can be stored and dead-lettered on a Kafka with the same limit.
    max_delivery_bytes: int = Field(1024 * 1024 - DELIVERY_HEADROOM_BYTES, ge=1024)
    # Finished (ACTIVATED/CANCELED) entries leave the card aggregate this long (event time) after they finished:
    # Voucherify retries a delivery for 24 h, so 72 h covers every retry of a finished entry's events plus a
    # two-day outage of ours, while the aggregate stays the size of what is pending or recent. A delivery that
    # arrives later (a re-send by hand) is still applied exactly once: the entry's row says it was counted.
    entry_retire_after_h: float = Field(72.0, ge=0)

    @model_validator(mode="after")
    def _check_security(self) -> "Settings":
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        if self.max_delivery_bytes + DELIVERY_HEADROOM_BYTES > self.kafka_max_record_bytes:
            raise ValueError(
                f"MAX_DELIVERY_BYTES={self.max_delivery_bytes} leaves less than {DELIVERY_HEADROOM_BYTES} bytes for "
                f"headers under KAFKA_MAX_RECORD_BYTES={self.kafka_max_record_bytes}: a delivery accepted could not "
                "be stored or dead-lettered"
            )
        if bool(self.kafka_ssl_certfile) != bool(self.kafka_ssl_keyfile):
            raise ValueError("KAFKA_SSL_CERTFILE and KAFKA_SSL_KEYFILE go together (mutual TLS)")
        return self

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    def rocksdb_options(self) -> dict:
        """Options for Faust's RocksDB store, per table partition."""
        mb = 1024 * 1024
        return {
            "write_buffer_size": self.rocksdb_write_buffer_mb * mb,
            "max_write_buffer_number": self.rocksdb_max_write_buffers,
            "block_cache_size": self.rocksdb_block_cache_mb * mb,
            "target_file_size_base": 16 * mb,
        }

    @property
    def retire_after(self):
        import datetime as dt

        return dt.timedelta(hours=self.entry_retire_after_h)

    def topic_config(self, compacted: bool) -> dict[str, str]:
        """Configs of every topic this service creates (Kafka's broker default is 1 MiB + 12 bytes of batch
        overhead over the producer's 1 MiB; the same margin here)."""
        config = {"max.message.bytes": str(self.kafka_max_record_bytes + 12)}
        if compacted:
            config["cleanup.policy"] = "compact"
        return config

    def topic_name(self, registry_name: str) -> str:
        """The Kafka name of a registry topic in this deployment."""
        return self.topic_names.get(registry_name) or self.topic_prefix + registry_name

    @property
    def webhook_enabled(self) -> bool:
        return self.webhook_secret is not None or self.webhook_allow_unsigned

    def ssl_context(self) -> ssl.SSLContext | None:
        if "SSL" not in self.kafka_security_protocol:
            return None
        context = ssl.create_default_context(cafile=str(self.kafka_ssl_cafile) if self.kafka_ssl_cafile else None)
        if self.kafka_ssl_certfile:
            context.load_cert_chain(str(self.kafka_ssl_certfile), str(self.kafka_ssl_keyfile))
        return context

    def kafka_client_kwargs(self) -> dict:
        """Connection settings for the plain aiokafka clients the service creates itself (Faust's: see
        `faust_credentials`)."""
        kwargs: dict = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.kafka_security_protocol}
        if "SSL" in self.kafka_security_protocol:
            kwargs["ssl_context"] = self.ssl_context()
        if self.kafka_security_protocol.startswith("SASL"):
            kwargs["sasl_mechanism"] = self.kafka_sasl_mechanism
            kwargs["sasl_plain_username"] = self.kafka_sasl_username
            kwargs["sasl_plain_password"] = self.kafka_sasl_password.get_secret_value()
        return kwargs

    def faust_credentials(self):
        """The same security settings as Faust broker credentials (None for PLAINTEXT)."""
        import faust  # local: settings must stay importable without Faust's import cost

        if self.kafka_security_protocol.startswith("SASL"):
            return faust.SASLCredentials(
                username=self.kafka_sasl_username,
                password=self.kafka_sasl_password.get_secret_value(),
                mechanism=self.kafka_sasl_mechanism,
                ssl_context=self.ssl_context(),
            )
        if self.kafka_security_protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return None

    @property
    def advertised_url(self) -> str:
        if self.web_advertised_url:
            return self.web_advertised_url.rstrip("/")
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        return f"http://{host}:{self.web_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
