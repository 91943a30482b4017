"""Local run: embedded broker (unless KAFKA_BOOTSTRAP_SERVERS is set) + one worker + sample deliveries.

    ./scripts/run [--port 6066] [--no-samples]

Everything it starts is stopped on Ctrl-C (SIGINT) or SIGTERM.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # devtools/: beside app/, not installed

from app.cli.feed import SAMPLE_TYPES, SAMPLES  # noqa: E402
from devtools import embedded_broker  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CUSTOMER = "cust_IdgAFZxYwwHctOk9pPuMu308"
EXAMPLE_VOUCHER = "v_hjQhSsitD6lAATASbRV1Ef7dUCjpy0iw"


def _wait_http(url: str, proc: subprocess.Popen, timeout: float, ok: tuple[int, ...] = (200, 404)) -> None:
    """Wait until `url` answers with a status in `ok` (404 from a table route means the worker is ready)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"worker exited with {proc.returncode}; see its log above")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status in ok:
                    return
        except urllib.error.HTTPError as err:
            if err.code in ok:
                return
        except OSError:
            pass
        time.sleep(0.3)
    sys.exit(f"worker did not answer on {url} within {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("WEB_PORT", 6066)))
    parser.add_argument("--no-samples", action="store_true")
    args = parser.parse_args()

    broker = None
    worker = None
    temp_state = None
    env = dict(os.environ, WEB_PORT=str(args.port))
    # The webhook endpoint needs a secret; a local run gets a fixed one (use your own for anything real).
    env.setdefault("WEBHOOK_SECRET", "local-dev-secret")
    try:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            print(f"==> using the broker at {os.environ['KAFKA_BOOTSTRAP_SERVERS']}")
            env.setdefault("DATA_DIR", str(ROOT / "data"))
        else:
            try:
                broker = embedded_broker.start(port=9092)
            except (OSError, embedded_broker.BrokerError):
                broker = embedded_broker.start()  # 9092 taken: any free port
            print(f"==> embedded broker (Tansu, in memory) on {broker.bootstrap}, pid {broker.process.pid}")
            env["KAFKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
            # The embedded broker forgets everything when it stops, so the worker's state must start empty too.
            temp_state = tempfile.mkdtemp(prefix="pending-points-state-")
            env["DATA_DIR"] = temp_state
        # Own session (as the broker's): Ctrl-C reaches only this script, which stops the worker, then the broker.
        worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env, cwd=ROOT, start_new_session=True)
        base = f"http://127.0.0.1:{args.port}"
        _wait_http(base + "/ready", worker, timeout=120, ok=(200,))
        if not args.no_samples:
            # Through the webhook endpoint, signed, as Voucherify would send them.
            files = [f"{SAMPLES / name}:{etype}" for name, etype in SAMPLE_TYPES.items()]
            subprocess.run([sys.executable, "-m", "app", "feed", "--http", base, *files], check=True, env=env)
            _wait_http(f"{base}/customers/{EXAMPLE_CUSTOMER}", worker, timeout=60, ok=(200,))
        print(
            "\n==> ready. Try:\n"
            f"   curl {base}/customers/{EXAMPLE_CUSTOMER}\n"
            f"   curl {base}/vouchers/{EXAMPLE_VOUCHER}\n"
            f"   curl {base}/metrics\n"
            f"   WEBHOOK_SECRET={env['WEBHOOK_SECRET']} .venv/bin/python -m app feed --http {base} FILE.json:EVENT_TYPE\n"
            f"   KAFKA_BOOTSTRAP_SERVERS={env['KAFKA_BOOTSTRAP_SERVERS']} .venv/bin/python -m app feed FILE.json:EVENT_TYPE\n"
            "   Ctrl-C stops the worker and the broker.\n",
            flush=True,
        )
        stop = {"now": False}

        def _stop(*_):
            stop["now"] = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):  # a closed terminal stops everything too
            signal.signal(sig, _stop)
        while not stop["now"] and worker.poll() is None:
            time.sleep(0.2)
    finally:
        print("\n==> stopping")
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if broker is not None:
            broker.stop()
        if temp_state:
            shutil.rmtree(temp_state, ignore_errors=True)


if __name__ == "__main__":
    main()
