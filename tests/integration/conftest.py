"""Fixtures of the integration tests that need a broker of their own (to stop, freeze or start late)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from devtools import embedded_broker


@pytest.fixture
def own_broker(tmp_path: Path):
    """A broker this test may stop, freeze or start late (never the session's shared one)."""
    brokers = []

    def start(port: int | None = None):
        b = embedded_broker.start(port=port, log_path=tmp_path / "own-broker.log")
        brokers.append(b)
        return b

    yield start
    for b in brokers:
        if b.process.poll() is None:
            os.kill(b.process.pid, signal.SIGCONT)
        b.stop()
