"""Session fixtures: the broker (external, Docker Kafka or embedded Tansu) and worker process factories."""
from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import os

import pytest
from hypothesis import settings

from tests.support.brokers import Broker, session_broker
from devtools.workers import Worker

# Property tests: the same examples on every run by default, so a suite run (and CI) passes or fails on the code,
# not on which random examples it drew. `HYPOTHESIS_PROFILE=explore ./scripts/test tests/unit` searches new
# random examples (and keeps failures in .hypothesis/ to replay); run it when changing the logic.
settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))


@pytest.fixture(scope="session")
def artifacts_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pending-points-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def broker(artifacts_dir: Path) -> Iterator[Broker]:
    with session_broker(artifacts_dir) as b:
        yield b


@pytest.fixture
def topic_prefix() -> str:
    """A fresh topic namespace per test, so tests sharing one broker never see each other's records."""
    return f"t{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def worker_factory(broker: Broker, tmp_path: Path, topic_prefix: str) -> Iterator:
    """`worker_factory(name, **env)` starts a worker process for this test; every one is stopped at teardown.

    On the session's broker its topics carry the test's prefix; `bootstrap=` a broker of the test's own
    (`own_broker`) gives it the default names, as a user's worker has."""
    started: list[Worker] = []

    def make(name: str | None = None, *, bootstrap: str | None = None, **env: str) -> Worker:
        name = name or f"w{len(started)}"
        namespace = {} if bootstrap else {"TOPIC_PREFIX": topic_prefix, "APP_ID": f"pp-{topic_prefix.rstrip('-')}"}
        w = Worker(
            bootstrap=bootstrap or broker.bootstrap,
            data_dir=tmp_path / f"{name}-data",
            log_path=tmp_path / f"{name}.log",
            env={**namespace, **env},
        )
        started.append(w)
        return w.start()

    yield make
    for w in started:
        w.stop()
