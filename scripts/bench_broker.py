"""The embedded broker alone under the latency phase's input: `./scripts/bench --phases latency` reports the CPU the
worker, the broker and the load generator use while deliveries are offered at a fixed rate; this offers the same
deliveries (a new card and customer each) at the same rate to a fresh broker with nothing consuming them, three
phases in a row, and reports the broker's and the load generator's CPU (% of one core) in each. Together the two
tell how much of the broker's load is the input itself and how much the pipeline's own traffic.

    .venv/bin/python scripts/bench_broker.py [--rate 1000] [--seconds 10] [--phases 3] [--input-linger-ms 5]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import embedded_broker, simulate  # noqa: E402
from devtools.kafka import produce  # noqa: E402
from devtools.workers import cpu_seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--phases", type=int, default=3)
    parser.add_argument("--input-linger-ms", type=float, default=5.0, help=(
        "the load generator's producer linger, as in ./scripts/bench (0: one record per batch, the third stop's)"))
    args = parser.parse_args()
    broker = embedded_broker.start()
    try:
        for phase in range(args.phases):
            n = int(args.rate * args.seconds)
            batch = [(d.key, d.value, d.headers) for d in (simulate.fresh_added(f"b{phase}", i) for i in range(n))]
            b0, g0, t0 = cpu_seconds(broker.process.pid), cpu_seconds(os.getpid()), time.monotonic()
            produce(broker.bootstrap, "broker-only-webhooks", batch, rate=args.rate, linger_ms=args.input_linger_ms)
            wall = time.monotonic() - t0
            print(f"phase {phase + 1}: {n / wall:,.0f}/s offered for {wall:.1f} s, nothing consuming: broker "
                  f"{100 * (cpu_seconds(broker.process.pid) - b0) / wall:.0f}% of a core, load generator "
                  f"{100 * (cpu_seconds(os.getpid()) - g0) / wall:.0f}%", flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
