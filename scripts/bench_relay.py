"""The embedded broker's own latency floor for a pipeline of N hops, with no processing at all.

Deliveries are offered at a fixed rate (like the latency phase of `./scripts/bench`, producer linger 5 ms) to the
first of N+1 topics (4 partitions each). A bare aiokafka relay copies each record to the next topic, keeping its
timestamp; a last consumer reads the final topic and measures now - timestamp. By default one consumer serves every
hop, as Faust's one consumer serves all the stages' topics (`--separate`: one consumer group per hop). Our pipeline
is three hops by this count (input -> events -> card updates -> customer point state), and it produces about eight
records per delivery where the relay produces one: what the relay needs is a lower bound for ours.

    .venv/bin/python scripts/bench_relay.py [--hops 3] [--rate 1000] [--seconds 15] [--separate]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.errors import TopicAlreadyExistsError  # noqa: E402

from devtools import embedded_broker  # noqa: E402
from devtools.workers import cpu_seconds  # noqa: E402

PARTITIONS = 4
VALUE = b"x" * 600  # about a delivery's size


def measure(bootstrap: str, broker_pid: int | None, *, hops: int = 3, rate: float = 1000.0, seconds: float = 15.0,
            separate: bool = False, fetch_wait_ms: int = 20, input_linger_ms: float = 5.0, prefix: str = "",
            phase: str = "") -> dict:
    """One relay run on a running broker: latency quantiles and CPU. Topics and consumer groups are named by
    `prefix`: a later call with the same prefix goes on where the last one stopped, on topics that keep its history
    (as the pipeline's topics keep the earlier phases'); `phase` tells this call's records apart."""
    args = argparse.Namespace(hops=hops, rate=rate, seconds=seconds, separate=separate, fetch_wait_ms=fetch_wait_ms,
                              input_linger_ms=input_linger_ms)
    return asyncio.run(_run(bootstrap, broker_pid, args, prefix, phase.encode()))


async def _run(bootstrap: str, broker_pid: int | None, args, prefix: str, phase: bytes) -> dict:
    names = [f"{prefix}hop{i}" for i in range(args.hops + 1)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names])
    except TopicAlreadyExistsError:  # an earlier phase's
        pass
    finally:
        await admin.close()

    def consumer(topics: list[str], group: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                fetch_max_wait_ms=args.fetch_wait_ms)

    relays = ([consumer(names[i:i + 1], f"{prefix}hop{i}") for i in range(args.hops)] if args.separate
              else [consumer(names[:-1], f"{prefix}relay")])
    final = consumer(names[-1:], f"{prefix}final")
    out = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    gen = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=args.input_linger_ms)
    total, latencies, done = int(args.rate * args.seconds), [], asyncio.Event()
    clients = [out, gen, *relays, final]
    for c in clients:
        await c.start()

    async def relay(c: AIOKafkaConsumer) -> None:
        while not done.is_set():
            for tp, records in (await c.getmany(timeout_ms=100)).items():
                nxt = names[names.index(tp.topic) + 1]
                for m in records:
                    await out.send(nxt, m.value, key=m.key, timestamp_ms=m.timestamp)

    async def sink() -> None:
        while len(latencies) < total:
            got = await final.getmany(timeout_ms=100)
            now = time.time() * 1000
            latencies.extend(now - m.timestamp for records in got.values() for m in records
                             if m.key.startswith(phase))
        done.set()

    tasks = [asyncio.create_task(relay(c)) for c in relays]
    sinking = asyncio.create_task(sink())
    try:
        deadline = time.monotonic() + 30
        while not all(c.assignment() for c in [*relays, final]):  # group joins take about 3 s on this broker
            if time.monotonic() > deadline:
                raise TimeoutError("consumers not assigned within 30 s")
            await asyncio.sleep(0.1)
        b0, p0, t0 = cpu_seconds(broker_pid) if broker_pid else 0.0, cpu_seconds(os.getpid()), time.monotonic()
        for i in range(total):
            if (delay := t0 + i / args.rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            await gen.send(names[0], VALUE, key=phase + f"k{i}".encode())
        await asyncio.wait_for(sinking, 120)
        wall = time.monotonic() - t0
    finally:
        done.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in clients:
            await c.stop()
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"hops": args.hops, "consumers": "one consumer per hop" if args.separate else "one consumer",
            "rate": args.rate, "seconds": args.seconds,
            "p50_ms": round(q[49]), "p99_ms": round(q[98]), "max_ms": round(latencies[-1]),
            "cpu_percent_of_one_core": {
                "broker": round(100 * (cpu_seconds(broker_pid) - b0) / wall) if broker_pid else None,
                "relay and load generator": round(100 * (cpu_seconds(os.getpid()) - p0) / wall)}}


def describe(r: dict) -> str:
    cpu = r["cpu_percent_of_one_core"]
    return (f"{r['hops']} hop(s), {r['consumers']}, {r['rate']:,.0f}/s for {r['seconds']:g} s: p50 "
            f"{r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms; CPU (% of one core) broker "
            f"{cpu['broker']}, relay and load generator {cpu['relay and load generator']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=3)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--separate", action="store_true", help="one consumer group per hop")
    parser.add_argument("--fetch-wait-ms", type=int, default=20, help="as KAFKA_FETCH_MAX_WAIT_MS")
    parser.add_argument("--input-linger-ms", type=float, default=5.0)
    args = parser.parse_args()
    broker = embedded_broker.start()
    try:
        print(describe(measure(broker.bootstrap, broker.process.pid, hops=args.hops, rate=args.rate,
                               seconds=args.seconds, separate=args.separate, fetch_wait_ms=args.fetch_wait_ms,
                               input_linger_ms=args.input_linger_ms)), flush=True)
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
