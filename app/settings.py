"""The one Settings object: every environment variable the service reads is declared here."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


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

    # Application
    app_id: str = "pending-points"
    # Prepended to every topic name (for several deployments, or test runs, on one shared cluster).
    topic_prefix: str = ""
    partitions: int = Field(4, ge=1, description="Partitions of every topic this service creates")
    replication_factor: int = Field(1, ge=1)
    data_dir: Path = Path("./data")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)
    # URL other workers use to reach this one's views (routing to the key's owner).
    web_advertised_url: str | None = None
    log_level: str = "info"

    # Group membership. The embedded broker holds a join for about half the session timeout, and a dead
    # member keeps its partitions that long: lower is faster failover, higher tolerates longer pauses.
    session_timeout_s: float = Field(10.0, gt=0)
    heartbeat_interval_s: float = Field(2.0, gt=0)
    rebalance_timeout_s: float = Field(20.0, gt=0)
    commit_interval_s: float = Field(2.8, gt=0)
    # Warm copies of other workers' table partitions, for fast failover (0 = none).
    table_standby_replicas: int = Field(1, ge=0)

    # Domain
    # Voucherify activates pending points at 00:00 in the project's time zone; "early" is judged there.
    project_timezone: str = "UTC"
    max_delivery_bytes: int = Field(4 * 1024 * 1024, ge=1024)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [s.strip() for s in self.kafka_bootstrap_servers.split(",") if s.strip()]

    def kafka_client_kwargs(self) -> dict:
        """Connection settings for the plain aiokafka clients the service creates itself (not Faust's)."""
        return {"bootstrap_servers": self.bootstrap_servers}

    @property
    def advertised_url(self) -> str:
        if self.web_advertised_url:
            return self.web_advertised_url.rstrip("/")
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::", "") else self.web_host
        return f"http://{host}:{self.web_port}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
