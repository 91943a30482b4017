"""Which Kafka-protocol broker the tests talk to: external (env), Apache Kafka in Docker, or embedded Tansu."""
from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import embedded_broker

logger = logging.getLogger(__name__)

EXTERNAL_ENV = "KAFKA_BOOTSTRAP_SERVERS"


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    kind: str  # "external" | "docker-kafka" | "tansu"

    @property
    def exact_end_offsets(self) -> bool:
        return self.kind != "tansu"


def docker_available() -> bool:
    if os.environ.get("TESTS_NO_DOCKER"):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def tansu(log_dir: Path) -> Iterator[Broker]:
    with embedded_broker.start(log_path=log_dir / "tansu.log") as broker:
        yield Broker(broker.bootstrap, "tansu")


@contextlib.contextmanager
def session_broker(log_dir: Path) -> Iterator[Broker]:
    """The broker for the session: $KAFKA_BOOTSTRAP_SERVERS, else Kafka in Docker if reachable, else Tansu."""
    if os.environ.get(EXTERNAL_ENV):
        yield Broker(os.environ[EXTERNAL_ENV], "external")
    elif docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as kafka:
            yield Broker(kafka.get_bootstrap_server(), "docker-kafka")
    else:
        with tansu(log_dir) as broker:
            yield broker
