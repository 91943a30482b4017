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

    # Each field's description is its documentation: `python -m app admin settings` writes docs/settings.md from
    # them (a test fails when that file is stale). Comments here say why a default is what it is.

    # --- broker
    kafka_bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated `host:port` list")
    kafka_security_protocol: SecurityProtocol = Field(
        "PLAINTEXT", description="`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT` or `SASL_SSL` (managed Kafka)")
    kafka_sasl_mechanism: SaslMechanism = Field("PLAIN", description="`PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`")
    kafka_sasl_username: str | None = Field(None, description="required with `SASL_*`")
    kafka_sasl_password: SecretStr | None = Field(None, description="required with `SASL_*`; never logged")
    kafka_ssl_cafile: Path | None = Field(None, description="CA bundle to trust for `SSL` / `SASL_SSL` "
                                                            "(default: the system's)")
    kafka_ssl_certfile: Path | None = Field(None, description="client certificate for mutual TLS (with the key)")
    kafka_ssl_keyfile: Path | None = Field(None, description="client key for mutual TLS (with the certificate)")
    broker_wait_s: float = Field(0.0, ge=0, description="how long a starting worker waits for the broker "
                                                        "(0 = forever)")
    # 5: Apache Kafka 4.0's client default. Fewer, larger batches on the input: the embedded broker lists every
    # stored batch of a partition on each fetch that finds data (docs/benchmark.md, fourth stop).
    kafka_producer_linger_ms: float = Field(5.0, ge=0, description=(
        "how long the producer waits to fill a batch of single records (dead letters, the webhook endpoint's "
        "writes, whose answer waits for the broker's acknowledgement: up to this much longer; with "
        "TABLE_WRITES=faust, changelog records too); the stages send each batch's records as whole producer "
        "batches"))
    # The embedded broker polls a waiting fetch, sleeping half the remaining wait between passes, so a record that
    # arrives meanwhile waits for the next pass; on Apache Kafka this only bounds the idle polling rate
    # (app/compat/fetch_wait.py).
    kafka_fetch_max_wait_ms: int = Field(20, ge=1, le=5000, description=(
        "longest a consumer fetch waits on the broker for data (Faust hard-codes 1,500 ms)"))
    # The embedded broker under-reports end offsets after multi-record batches (app/compat/end_offsets.py).
    kafka_verify_end_offsets: bool = Field(True, description=(
        "before changelog recovery, read past each reported end offset to find the true one"))
    kafka_max_record_bytes: int = Field(1024 * 1024, ge=64 * 1024, description=(
        "largest record the producer sends: Apache Kafka's default, so the embedded broker (which takes any "
        "size) refuses what Kafka would; topics the service creates get a matching `max.message.bytes`. Raise "
        "it here and on the cluster together"))

    # --- application
    app_id: str = Field("pending-points", description="Faust app id: consumer group and changelog topic prefix")
    topic_prefix: str = Field("", description="prepended to every topic name, to share a cluster")
    topic_names: dict[str, str] = Field(default_factory=dict, description=(
        "per-topic name overrides, JSON keyed by registry name: `{\"voucherify-webhooks\": \"prod.vfy.hooks\"}` "
        "(used as given, without the prefix)"))
    # One count keeps voucher- and customer-keyed topics co-partitioned with their tables.
    partitions: int = Field(4, ge=1, description="partitions of every topic the service creates")
    replication_factor: int = Field(1, ge=1, description="replication factor of the topics it creates")
    data_dir: Path = Field(Path("./data"), description="RocksDB state directory")
    web_host: str = Field("127.0.0.1", description="web server bind address (views, webhook endpoint, metrics)")
    web_port: int = Field(6066, ge=1, le=65535, description="web server port")
    web_advertised_url: str | None = Field(None, description=(
        "how other workers reach this one's views (default `http://<host>:<port>`)"))
    log_level: Literal["debug", "info", "warning", "error", "critical"] = Field(
        "info", description="`debug`, `info`, `warning`, `error` or `critical`")
    log_format: Literal["text", "json"] = Field("text", description=(
        "`json`: one JSON object per line (`ts`, `level`, `logger`, `pid`, `message`, `exc`); `text`: Faust's"))

    # --- webhook endpoint (POST /webhooks/voucherify)
    webhook_secret: SecretStr | None = Field(None, description=(
        "Voucherify's webhook secret (project settings); without it the endpoint is off (503); never logged"))
    webhook_allow_unsigned: bool = Field(False, description=(
        "accept unsigned POSTs when no secret is set (local trials only)"))
    # Voucherify gives up on a request after 10 s and retries it later.
    webhook_ack_timeout_s: float = Field(7.0, gt=0, le=9.5, description=(
        "how long a POST waits for the broker's acknowledgement before answering 503"))

    # --- processing
    # The embedded broker holds a join for about half the session timeout, and a dead member keeps its partitions
    # that long: lower is faster failover, higher tolerates longer pauses.
    session_timeout_s: float = Field(10.0, gt=0, description="consumer group session timeout")
    heartbeat_interval_s: float = Field(2.0, gt=0, description="consumer group heartbeat interval")
    rebalance_timeout_s: float = Field(20.0, gt=0, description="consumer group rebalance timeout")
    commit_interval_s: float = Field(2.8, gt=0, description="how often processed offsets are committed")
    # Larger batches: more throughput under load; the window adds at most that much latency per stage.
    stream_batch_max: int = Field(500, ge=1, description=(
        "each stage takes up to this many records at a time, and folds them per key (one table write and one "
        "output per key per batch)"))
    # 2 ms, not 10: a record waited about 12 ms per stage for its batch with 10 and 4 ms with 2; p99 at 1,000/s
    # 183-185 ms against 223 (docs/benchmark.md, fourth stop). Under a backlog batches fill to the max anyway.
    stream_batch_within_ms: float = Field(2.0, gt=0, description=(
        "...or what arrived within this window after the first record"))
    table_writes: Literal["direct", "faust"] = Field("direct", description=(
        "how the agents write tables: `direct` writes the local store and sends the changelog record straight to "
        "the producer (one persisted-offset write per changelog partition per batch); `faust` goes through "
        "Faust's per-record changelog path (kept to measure the difference: docs/benchmark.md)"))
    fast_drain: bool = Field(True, description=(
        "hand each fetched record to the agents inline instead of through four tasks per record "
        "(app/compat/fast_drain.py; false = Faust's own loop, kept to measure the difference)"))
    stream_feed: Literal["direct", "faust"] = Field("direct", description=(
        "how records reach the stages: `direct` hands each source topic's records to its agent in batches "
        "(app/compat/direct_feed.py); `faust` goes through Faust's per-record event, channel queue and stream "
        "(kept to measure the difference: docs/benchmark.md)"))
    # Every batch allocates tens of thousands of short-lived models: with Python's default (700) the young
    # collection ran every few deliveries and the older ones rescanned the whole start-up heap (Faust, aiokafka,
    # pydantic schemas) again and again (docs/benchmark.md, sixth stop).
    gc_gen0_threshold: int = Field(50_000, ge=0, description=(
        "allocations between young garbage collections; the heap built at start-up is frozen out of collections "
        "(gc.freeze). 0 leaves Python's collector as it is"))
    # Several times faster than Faust's own recovery, which then only reads what was written since.
    bulk_restore: bool = Field(True, description=(
        "before Faust starts, bring local tables up to their changelogs with a plain consumer "
        "(`app/startup/restore.py`)"))
    table_standby_replicas: int = Field(1, ge=0, description=(
        "warm copies of other workers' table partitions, for fast failover (0 = none)"))
    # Faust's defaults are 3 x 64 MB write buffers and a 2 GB block cache per partition, so RSS grew with the data
    # (120 MB at 10k deliveries, 260 MB at 50k). State lives on disk either way.
    rocksdb_write_buffer_mb: int = Field(4, ge=1, description="RocksDB write buffer per table partition (MB)")
    rocksdb_max_write_buffers: int = Field(2, ge=2, description="RocksDB write buffers per table partition")
    rocksdb_block_cache_mb: int = Field(8, ge=1, description="RocksDB block cache per table partition (MB)")

    # --- domain
    # Voucherify activates pending points at 00:00 in the project's time zone; "early" is judged there.
    project_timezone: str = Field("UTC", description="Voucherify project time zone, for \"activated early\"")
    max_delivery_bytes: int = Field(1024 * 1024 - DELIVERY_HEADROOM_BYTES, ge=1024, description=(
        "largest delivery accepted: larger POSTs get 413, larger input records are dead-lettered. Must leave "
        "16 KiB under `KAFKA_MAX_RECORD_BYTES` for headers (checked at start), so anything accepted can be "
        "stored and dead-lettered"))
    # Voucherify retries a delivery for 24 h: 72 h of event time covers every retry of a finished entry's events
    # with two days to spare, while the aggregate stays the size of what is pending or recent (docs/design.md).
    entry_retire_after_h: float = Field(72.0, ge=0, description=(
        "finished entries leave the card aggregate this long (event time) after they finished; a later change "
        "to one updates its row and outputs, not the totals"))

    # --- Voucherify's REST API (the operator commands backfill and reconcile)
    voucherify_app_id: SecretStr | None = Field(None, description="`X-App-Id` for Voucherify's API; never logged")
    voucherify_app_token: SecretStr | None = Field(None, description=(
        "`X-App-Token` (secret key) for Voucherify's API; never logged"))
    voucherify_cluster: Literal["api", "us1.api", "as1.api"] = Field("api", description=(
        "Voucherify's cluster: `api` (Europe), `us1.api`, `as1.api`"))
    voucherify_api_url: str | None = Field(None, description=(
        "the API's base URL, overriding the cluster (a dedicated region; tests)"))
    voucherify_max_retries: int = Field(8, ge=0, description=(
        "retries of one API call on 429 (after `Retry-After`), 5xx and network errors, with back-off"))
    # An activation runs at 00:00 project time; its webhook should follow within minutes, retries within 24 h.
    overdue_grace_h: float = Field(26.0, ge=0, description=(
        "an entry still PENDING this long after its `activates_at` (00:00 project time) is overdue: its "
        "activation delivery was most likely lost"))
    state_scan_interval_s: float = Field(300.0, gt=0, description=(
        "how often a worker scans its cards for the overdue and drift gauges"))

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
    def overdue_grace(self):
        import datetime as dt

        return dt.timedelta(hours=self.overdue_grace_h)

    @property
    def voucherify_base_url(self) -> str:
        return (self.voucherify_api_url or f"https://{self.voucherify_cluster}.voucherify.io").rstrip("/")

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
