"""Benchmark: the pipeline against a bare aiokafka loop on the same broker and input, plus RSS and recovery rate.

    scripts/bench [--n DELIVERIES] [--quick] [--out DIR]

Starts its own embedded broker. Headline: `pipeline / bare loop` sustained events/s (a ratio, because shared 2-core
machines are noisy). Durations come from Kafka record timestamps: first record the stage produced -> last output.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import topics  # noqa: E402
from app import embedded_broker  # noqa: E402
from app.logic.decode import Accepted, decode  # noqa: E402
from app.models import codec  # noqa: E402
from tests.support import kafka, scenario  # noqa: E402
from tests.support.workers import Worker  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_input(n: int) -> tuple[list, dict]:
    """About n deliveries: whole lifecycles (the generator makes ~27 per customer), so the expectation is exact."""
    sc = scenario.build(seed=99, customers=max(5, n // 27))
    return sc.deliveries, scenario.expected_customers(sc)


async def bare_loop(bootstrap: str, src: str, dst: str, n: int) -> tuple[int, float]:
    """Consume, validate with the same models, produce one record per delivery. Returns (records, seconds)."""
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 << 20)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await consumer.start()
    await producer.start()
    seen, start = 0, None
    try:
        while seen < n:
            batch = await consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for m in records:
                    start = start or time.monotonic()
                    headers = {k: v for k, v in (m.headers or [])}
                    out = decode(m.value, headers, max_bytes=4 << 20)
                    value = codec.dump(out.event) if isinstance(out, Accepted) else b"{}"
                    await producer.send(dst, value, key=m.key or b"-")
                    seen += 1
        await producer.flush()
    finally:
        await producer.stop()
        await consumer.stop()
    return seen, time.monotonic() - start


def rss_peak_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="2,000 deliveries: proves the benchmark runs")
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the pipeline phase")
    args = parser.parse_args()
    n = 2_000 if args.quick else args.n
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    broker = embedded_broker.start(log_path=work / "tansu.log")
    results: dict = {}
    workers: list[Worker] = []
    try:
        deliveries, expected = build_input(n)
        results["deliveries"] = len(deliveries)
        log(f"preloading {len(deliveries)} deliveries ({len(expected)} customers) on {broker.bootstrap}")
        for prefix in ("bare-", "pipe-"):
            kafka.produce(broker.bootstrap, prefix + topics.WEBHOOKS.name,
                          [(d.key, d.value, d.headers) for d in deliveries])

        log("reference: bare aiokafka loop (consume + same pydantic validation + produce)")
        count, secs = asyncio.run(bare_loop(broker.bootstrap, "bare-" + topics.WEBHOOKS.name, "bare-out", len(deliveries)))
        results["bare_events_per_s"] = round(count / secs, 1)
        log(f"bare loop: {count} in {secs:.2f}s = {count / secs:.0f}/s")

        log("pipeline: one worker, empty state, backlog already on the input topic")
        w = Worker(broker.bootstrap, work / "w-data", work / "w.log", {"TOPIC_PREFIX": "pipe-", "APP_ID": "bench"})
        workers.append(w)
        w.start()
        spy = None
        if args.profile:
            import subprocess

            spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "-r", "200", "-o", str(out / "profile.txt"),
                                    "--pid", str(w.process.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        w.wait_ready(timeout=120)
        got = {}
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            recs = kafka.read_until(broker.bootstrap, "pipe-" + topics.CUSTOMER_POINT_STATE.name,
                                    lambda rs: False, timeout=2)
            got = {r.key.decode(): json.loads(r.value) for r in kafka.latest_by_key(recs).values()}
            done = sum(scenario.normalize_customer(got.get(c, {})) == e for c, e in expected.items())
            log(f"  {done}/{len(expected)} customers final")
            if done == len(expected):
                break
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
        events = kafka.read_until(broker.bootstrap, "pipe-" + topics.EVENTS.name, lambda rs: False, timeout=3)
        first_ms = min(r_ts for r_ts in _timestamps(broker.bootstrap, "pipe-" + topics.EVENTS.name))
        last_ms = max(_timestamps(broker.bootstrap, "pipe-" + topics.CUSTOMER_POINT_STATE.name))
        secs = (last_ms - first_ms) / 1000
        results["pipeline_events_per_s"] = round(len(deliveries) / secs, 1)
        results["accepted_events"] = len(events)
        results["ratio_pipeline_over_bare"] = round(results["pipeline_events_per_s"] / results["bare_events_per_s"], 3)
        results["worker_peak_rss_mb"] = round(rss_peak_mb(w.process.pid), 1)
        log(f"pipeline: {len(deliveries)} in {secs:.2f}s = {len(deliveries) / secs:.0f}/s; "
            f"ratio {results['ratio_pipeline_over_bare']}; peak RSS {results['worker_peak_rss_mb']} MB")
        w.stop()

        log("recovery: a second worker with an empty state dir restores the changelogs")
        r = Worker(broker.bootstrap, work / "r-data", work / "r.log", {"TOPIC_PREFIX": "pipe-", "APP_ID": "bench"})
        workers.append(r)
        t0 = time.monotonic()
        r.start().wait_ready(timeout=600)
        rec_secs = _recovery_seconds(r.log_tail(50_000_000)) or (time.monotonic() - t0)
        changelog = sum(len(kafka.read_until(broker.bootstrap, f"bench-{t}-changelog", lambda rs: False, timeout=3))
                        for t in ("cards", "customers"))
        results["changelog_records"] = changelog
        results["recovery_records_per_s"] = round(changelog / rec_secs, 1)
        log(f"recovery: {changelog} records in {rec_secs:.2f}s = {changelog / rec_secs:.0f}/s")
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def _timestamps(bootstrap: str, topic: str) -> list[int]:
    async def run() -> list[int]:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest")
        await c.start()
        out: list[int] = []
        try:
            while True:
                batch = await c.getmany(timeout_ms=1500)
                if not batch:
                    return out
                out += [m.timestamp for ms in batch.values() for m in ms]
        finally:
            await c.stop()

    return asyncio.run(run())


def _recovery_seconds(log_text: str) -> float | None:
    """From Faust's log: 'Restoring state from changelog topics' -> 'Done reading from changelog topics'."""
    stamps = {}
    for line in log_text.splitlines():
        for key in ("Restoring state from changelog topics", "Done reading from changelog topics"):
            if key in line and key not in stamps:
                stamps[key] = time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + int(line[21:24]) / 1000
    if len(stamps) == 2:
        return max(0.001, stamps["Done reading from changelog topics"] - stamps["Restoring state from changelog topics"])
    return None


if __name__ == "__main__":
    main()
