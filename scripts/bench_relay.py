"""The embedded broker's own latency floor for a pipeline of N hops, with no processing at all.

Deliveries are offered at a fixed rate (like the latency phase of `./scripts/bench`, producer linger 5 ms) to the
first of N+1 topics (4 partitions each). A bare aiokafka relay copies each record to the next topic, keeping its
timestamp. A record's latency is taken when the last hop writes it to the last topic: now - its input timestamp,
which is how the benchmark times our pipeline (the customers stage's record is stamped when it is appended). So N
hops are N fetches and N - 1 intermediate writes, and our pipeline is two hops for a delivery keyed by its voucher
id (input -> card updates -> customer point state), three for any other (forwarded once on the input topic). By default one consumer serves every hop, as Faust's one consumer serves all the stages'
topics (`--separate`: one consumer group per hop). Our pipeline produces about eight records per delivery where
the relay produces one: what the relay needs is a lower bound for ours.

    .venv/bin/python scripts/bench_relay.py [--hops 2] [--rate 1000] [--seconds 15] [--separate]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402

from devtools import embedded_broker  # noqa: E402
from devtools.workers import cpu_seconds, percentiles  # noqa: E402

PARTITIONS = 4
_TOPIC_EXISTS = 36  # Kafka's TOPIC_ALREADY_EXISTS error code
VALUE = b"x" * 600  # about a delivery's size


def measure(bootstrap: str, broker_pid: int | None, *, hops: int = 2, rate: float = 1000.0, seconds: float = 15.0,
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
        response = await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in names])
    finally:
        await admin.close()
    failed = [(topic, code) for topic, code, *_ in response.topic_errors if code not in (0, _TOPIC_EXISTS)]
    if failed:  # an earlier phase's topics exist already: that is the point
        raise RuntimeError(f"could not create relay topics: {failed}")

    def consumer(topics: list[str], group: str) -> AIOKafkaConsumer:
        # committed by hand at the end, so the next phase with this prefix starts where this one stopped
        return AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=args.fetch_wait_ms)

    relays = ([consumer(names[i:i + 1], f"{prefix}hop{i}") for i in range(args.hops)] if args.separate
              else [consumer(names[:-1], f"{prefix}relay")])
    out = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    gen = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=args.input_linger_ms)
    total, latencies = int(args.rate * args.seconds), []
    finished = asyncio.get_running_loop().create_future()
    last = names[-1]

    async def relay(c: AIOKafkaConsumer) -> None:
        while not finished.done():
            for tp, records in (await c.getmany(timeout_ms=100)).items():
                nxt = names[names.index(tp.topic) + 1]
                for m in records:
                    if nxt == last and m.key.startswith(phase):
                        # the last stage's output is stamped now, as the pipeline's customer-point-state record
                        # gets its timestamp when the customers stage appends it
                        latencies.append(time.time() * 1000 - m.timestamp)
                    await out.send(nxt, m.value, key=m.key, timestamp_ms=m.timestamp)
            if len(latencies) >= total and not finished.done():
                finished.set_result(None)

    started: list = []
    tasks: list[asyncio.Task] = []
    try:
        for c in [out, gen, *relays]:
            await c.start()
            started.append(c)
        tasks = [asyncio.create_task(relay(c)) for c in relays]
        deadline = time.monotonic() + 30
        while not all(c.assignment() for c in relays):  # group joins take about 3 s on this broker
            if time.monotonic() > deadline:
                raise TimeoutError("relay consumers not assigned within 30 s")
            await asyncio.sleep(0.1)
        b0, p0, t0 = cpu_seconds(broker_pid) if broker_pid else 0.0, cpu_seconds(os.getpid()), time.monotonic()
        for i in range(total):
            if (delay := t0 + i / args.rate - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            await gen.send(names[0], VALUE, key=phase + f"k{i}".encode())
        await asyncio.wait([finished, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            if t.done() and t.exception() is not None:
                raise t.exception()  # a relay died: say why, not that the run timed out
        if not finished.done():
            raise TimeoutError(f"{len(latencies)} of {total} records relayed within 120 s")
        wall = time.monotonic() - t0
        for c in relays:
            await c.commit()  # raises if it fails: the next phase must not relay this one's records again
    finally:
        if not finished.done():
            finished.set_result(None)
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in started:
            await c.stop()
    latencies.sort()
    q = percentiles(latencies)
    return {"hops": args.hops, "consumers": "one consumer per hop" if args.separate else "one consumer",
            "rate": args.rate, "seconds": args.seconds, "offered": total, "samples": len(latencies),
            "p50_ms": round(q[49], 1), "p99_ms": round(q[98], 1), "max_ms": round(latencies[-1]) if latencies else None,
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
    parser.add_argument("--hops", type=int, default=2)
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
