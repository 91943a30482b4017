"""Benchmark: the pipeline against a bare aiokafka loop on the same broker and input; latency, recovery, RSS, growth.

    scripts/bench [--n 20000] [--quick] [--rate 500,1000] [--latency-s 15] [--peer] [--growth] [--profile]
                  [--repeat 3] [--variant NAME:K=V,...] [--phases ...] [--out bench-out]

Starts its own embedded broker and worker processes. Headline: `pipeline / bare loop` sustained events/s, a ratio,
because timings on shared machines are noisy; both run in the same invocation on the same broker and input.
- throughput: N generated deliveries (all lifecycle steps, envelope and raw forms, duplicates, foreign types,
  malformed ones) preloaded, then one worker from empty state: N / (worker ready -> last customer-point-state).
- peer (`--peer`): the same job in bytewax (scripts/bench_peer.py: our logic, bytewax's Kafka source and sink),
  on the same input, records/s and exactness like ours: one process with recovery off and on (against our one
  worker), and two processes with recovery on (against two of our workers, `pipeline_2_workers`: the machine's
  cores used by both). Ours and bytewax with recovery, one process each, run `--repeat` times in all (default 3),
  each further pair on a fresh broker, alternating which goes first; the ratio of the medians compares
  (`repeated`).
- variants (`--variant NAME:K=V,...`): the throughput (and latency) run again with other worker settings, on the
  same input in the same run (`WORKERS=N`: N workers in one group); how each lever is measured before/after.
- latency: afterwards, new deliveries offered at fixed rates, one after the other; per delivery, its customer-point-state record's
  timestamp minus its input record's timestamp (p50/p99/max). Then each rate again on a fresh broker of its own with
  a worker from empty state (`latency_fresh_broker_by_rate`): the embedded broker's fetches cost more the more
  batches a partition holds, which Apache Kafka's do not. Each with the broker's two-hop floor measured right after.
- recovery: a second worker with an empty state dir restores the changelogs (records/s; from its log: the bulk
  restore of app/startup/restore.py plus Faust's own recovery of anything written since).
- RSS: peak resident memory (VmHWM) of the worker.
- long card: one card collecting 10,000 entries through a worker, in chunks (ms per delivery by chunk: the end
  must cost no more than the start), the worker's peak RSS, and the largest record it wrote on any topic.
- card history (scripts/bench_card_history.py): per-event cost and record sizes on one card holding 10, 100,
  1,000 and 10,000 entries, one event per batch; writes card-history.json and card-history.png.
- `--growth`: the throughput run at 10k, 30k and 60k deliveries, and 10k deliveries on top of a cards table
  preloaded with 1M entries (100k cards); writes growth.txt and growth.png.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import topics  # noqa: E402
import bench_card_history  # noqa: E402  (scripts/, beside this file)
import bench_relay  # noqa: E402
from devtools import embedded_broker, simulate  # noqa: E402
from devtools.kafka import produce  # noqa: E402
from app.logic.decode import Accepted, decode  # noqa: E402
from app.models import codec  # noqa: E402
from devtools.workers import cpu_seconds, metric_sum, percentiles, scrape  # noqa: E402
from devtools import kafka  # noqa: E402
from devtools.workers import Worker  # noqa: E402

PARTITIONS = 4
APP_ID = "bench"
DELIVERIES = "pending_points_deliveries_total"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- Kafka helpers -------------------------------------------------------------------------------------------

def read_all(bootstrap: str, topic: str, idle_s: float = 2.0) -> list:
    """Every record of `topic` (stops after `idle_s` without new records; end offsets are not trusted)."""
    async def run() -> list:
        c = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             max_partition_fetch_bytes=8 << 20)
        await c.start()
        out: list = []
        try:
            while True:
                batch = await c.getmany(timeout_ms=int(idle_s * 1000))
                if not batch:
                    return out
                out += [m for ms in batch.values() for m in ms]
        finally:
            await c.stop()

    return asyncio.run(run())


# --- the reference -------------------------------------------------------------------------------------------

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


def faust_floor(bootstrap: str, src: str, dst: str, n: int, work: Path) -> float:
    """The bare loop's work as one batched Faust agent (scripts/bench_floor.py). Returns records/s from its first
    to its last output record."""
    env = {**os.environ, "FLOOR_BOOTSTRAP": bootstrap, "FLOOR_SRC": src, "FLOOR_DST": dst, "FLOOR_N": str(n),
           "FLOOR_APP_ID": f"floor-{src}", "FLOOR_DATADIR": str(work / f"floor-{src}-data")}
    log_path = work / f"floor-{src}.log"
    with open(log_path, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "faust", "-A", "bench_floor", "worker", "-l", "warn"],
                                cwd=Path(__file__).resolve().parent, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 600
        while "FLOOR DONE" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"faust floor did not finish: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(30)
    stamps = sorted(m.timestamp for m in read_all(bootstrap, dst))
    return len(stamps) / max((stamps[-1] - stamps[0]) / 1000, 1e-3)


def bytewax_peer(bootstrap: str, src: str, tag: str, sc, work: Path, recovery: bool, processes: int = 1) -> dict:
    """The same job in bytewax (scripts/bench_peer.py: our logic, bytewax's Kafka source and sink), recovery
    snapshots on (SQLite, every second) or off, in one process or several (bytewax's `-i/-a`: they share the
    partitions and exchange keyed data over TCP). Records/s from its first delivery read to its last output record,
    and whether its final customer records are exact."""
    name = f"peer{'-rec' if recovery else ''}{f'-p{processes}' if processes > 1 else ''}-{tag}"
    dst, dlq = f"{name}-out", f"{name}-dlq"
    for topic in (dst, dlq):
        kafka.create_topic(bootstrap, topic, PARTITIONS)
    env = {**os.environ, "PEER_BOOTSTRAP": bootstrap, "PEER_SRC": src, "PEER_DST": dst, "PEER_DLQ": dlq}
    cmd = [sys.executable, "-m", "bytewax.run", "bench_peer:flow"]
    if recovery:
        db = work / f"{name}-recovery"
        db.mkdir()
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(db), str(processes)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        cmd += ["-r", str(db), "-s", "1", "-b", "0"]
    cmds = [cmd]
    if processes > 1:
        ports: set[int] = set()
        while len(ports) < processes:
            ports.add(embedded_broker.free_port())
        addresses = ";".join(f"127.0.0.1:{port}" for port in ports)
        cmds = [cmd + ["-i", str(i), "-a", addresses] for i in range(processes)]
    log_paths = [work / f"{name}-{i}.log" for i in range(len(cmds))]
    procs = []
    try:
        for c, log_path in zip(cmds, log_paths):
            with open(log_path, "w") as out:
                procs.append(subprocess.Popen(c, cwd=Path(__file__).resolve().parent, env=env, stdout=out,
                                              stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 1200
        while any(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
            if any(proc.poll() for proc in procs):  # one failed: the others would wait for it for ever
                break
            time.sleep(0.1)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    codes = [proc.returncode for proc in procs]
    texts = [p.read_text(errors="replace") for p in log_paths]
    starts = [int(m.group(1)) for text in texts if (m := re.search(r"PEER START (\d+)", text))]
    if any(codes) or not starts:
        failed = next((i for i, code in enumerate(codes) if code), 0)
        raise RuntimeError(f"bytewax peer failed ({codes}): {texts[failed][-2000:]}")
    final = read_all(bootstrap, dst)
    secs = (max(m.timestamp for m in final) - min(starts)) / 1000
    res = {"events_per_s": round(len(sc.deliveries) / secs, 1), "dead_letters": len(read_all(bootstrap, dlq)),
           **exactness(sc, final)}
    log(f"[{tag}] bytewax peer, recovery {'on' if recovery else 'off'}, {processes} process"
        f"{'es' if processes > 1 else ''}: {len(sc.deliveries):,} in {secs:.2f}s = {res['events_per_s']:,.0f}/s; "
        f"exact: {res['exact']}; dead letters {res['dead_letters']}")
    return res


def profile_summary(path: Path, top: int = 15) -> str:
    """Top functions of py-spy's raw collapsed stacks, main thread only (the consumer thread mostly waits):
    by own time, and by time including callees for our modules (app/)."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not count.isdigit() or any("WorkerThread" in f or "ServiceThread" in f for f in frames):
            continue
        n = int(count)
        total += n
        funcs = [re.sub(r":\d+\)$", ")", f) for f in frames]  # per function, not per line
        own[funcs[-1]] = own.get(funcs[-1], 0) + n
        for f in set(funcs):
            if "(app/" in f and not f.startswith("<module>") and "app/__main__" not in f and "app/startup/worker" not in f:
                incl[f] = incl.get(f, 0) + n
    rows = ["own time:"] + [f"  {100 * n / total:5.1f}%  {f}" for f, n in sorted(own.items(), key=lambda x: -x[1])[:top]]
    rows += ["our code, including callees:"]
    rows += [f"  {100 * n / total:5.1f}%  {f}" for f, n in sorted(incl.items(), key=lambda x: -x[1])[:top]]
    return "\n".join(rows) + "\n"


# --- the worker ----------------------------------------------------------------------------------------------

def rss_peak_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+)", text).group(1)) / 1024


def wait_drained(workers: Worker | list[Worker], deliveries: int, timeout: float, label: str) -> None:
    """Until the workers accounted for every delivery (processed, skipped or dead-lettered) and no lag is left."""
    workers = workers if isinstance(workers, list) else [workers]
    deadline = time.monotonic() + timeout
    last_log = 0.0
    while True:
        ms = [scrape(w) for w in workers]
        seen = sum(metric_sum(m, DELIVERIES) for m in ms)
        max_lag = max((v for m in ms for (name, _), v in m.items() if name == "pending_points_consumer_lag"),
                      default=0.0)
        if seen >= deliveries and max_lag == 0:
            return
        if time.monotonic() - last_log > 3:
            log(f"  {label}: {int(seen):,}/{deliveries:,} deliveries read, max lag {int(max_lag):,}")
            last_log = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{label}: only {seen} of {deliveries} deliveries after {timeout}s")
        # Once a second: rendering /metrics took 2% of the worker at four a second. Throughput is timed from the
        # records' timestamps, not from this loop.
        time.sleep(1.0)


def wait_assigned(workers: list[Worker], timeout: float, label: str) -> None:
    """Until every worker holds input partitions (the group has settled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [sum(1 for (name, _), _v in scrape(w).items() if name == "pending_points_consumer_lag")
                for w in workers]
        if all(held):
            return
        time.sleep(0.5)
    raise TimeoutError(f"{label}: not every worker was assigned partitions in {timeout}s")


def exactness(sc, final: list) -> dict:
    """The last customer-point-state record of each customer against the generator's own expected totals."""
    latest = {}
    for m in final:
        latest[m.key.decode()] = json.loads(m.value) if m.value else None
    by_customer: dict[str, list] = {}
    for e in sc.entries:
        by_customer.setdefault(e.customer_id, []).append(e)
    expected = {c: simulate.entry_totals(es) for c, es in by_customer.items()}  # the generator's truth, not our code
    wrong = [c for c, exp in expected.items() if latest.get(c) is None
             or (latest[c]["pending_points"], latest[c]["activated_points"], latest[c]["canceled_points"]) != exp]
    return {"customers_expected": len(expected), "customers_exact": len(expected) - len(wrong),
            "exact": not wrong}


def start_worker(bootstrap: str, work: Path, name: str, prefix: str, **env: str) -> Worker:
    w = Worker(bootstrap, work / f"{name}-data", work / f"{name}.log", {"TOPIC_PREFIX": prefix, "APP_ID": APP_ID + prefix.rstrip("-"), **env})
    return w.start()


def _recovery_seconds(log_text: str) -> float | None:
    """Time the worker spent restoring its tables, from its log: the bulk restore (app/startup/restore.py) plus Faust's
    own recovery ('Restoring state from changelog topics' -> 'Done reading from changelog topics')."""
    total, found = 0.0, False
    bulk = re.search(r"bulk restore: \d+ changelog records into \d+ table partitions in ([\d.]+) s", log_text)
    if bulk:
        total, found = float(bulk.group(1)), True
    stamps = {}
    for line in log_text.splitlines():
        for key in ("Restoring state from changelog topics", "Done reading from changelog topics"):
            if key in line and key not in stamps:
                stamps[key] = time.mktime(time.strptime(line[1:20], "%Y-%m-%d %H:%M:%S")) + int(line[21:24]) / 1000
    if len(stamps) == 2:
        total += stamps["Done reading from changelog topics"] - stamps["Restoring state from changelog topics"]
        found = True
    return max(0.001, total) if found else None


# --- phases --------------------------------------------------------------------------------------------------

def throughput(bootstrap: str, work: Path, n: int, tag: str, profile: Path | None = None,
               preseed_entries: int = 0, floor: bool = False, env: dict[str, str] | None = None,
               bare: bool = True, workers: int = 1, peer: bool = False) -> tuple[dict, list[Worker]]:
    """Bare loop and pipeline on the same N-delivery input. Returns the results and the (running) workers.
    `env`: the workers' settings for this run (a variant); `bare=False` skips the bare loop.

    One worker: the input is preloaded, the clock runs from the worker being ready to the last customer-point-state
    record. Several workers (one consumer group): they are started and ready first (no rebalance inside the
    measurement), then the input is written; the clock runs from the first input record to the last output."""
    sc = simulate.build(seed=99, customers=max(5, n // 30))
    deliveries = [(d.key, d.value, d.headers) for d in sc.deliveries]
    res: dict = {"deliveries": len(deliveries), "state_entries_preloaded": preseed_entries, "workers": workers}
    prefix = f"{tag}-"
    bare_src = "bare-" + prefix + topics.WEBHOOKS.name  # the references' input (bare loop, floor, peer)
    if bare:
        produce(bootstrap, bare_src, deliveries)
        count, secs = asyncio.run(bare_loop(bootstrap, bare_src, "bare-" + prefix + "out", len(deliveries)))
        res["bare_events_per_s"] = round(count / secs, 1)
        log(f"[{tag}] bare loop: {count:,} in {secs:.2f}s = {count / secs:,.0f}/s")
    if floor:
        rate = faust_floor(bootstrap, bare_src, "floor-" + prefix + "out", len(deliveries), work)
        res["faust_one_stage_events_per_s"] = round(rate, 1)
        res["ratio_faust_one_stage_over_bare"] = round(rate / res["bare_events_per_s"], 3)
        log(f"[{tag}] the same work as one Faust agent: {rate:,.0f}/s "
            f"(ratio {res['ratio_faust_one_stage_over_bare']})")
    if peer:
        # one process, recovery off and on; and two processes with recovery on, to compare with two workers
        for recovery_on, processes in ((False, 1), (True, 1), (True, 2)):
            r = bytewax_peer(bootstrap, bare_src, tag, sc, work, recovery_on, processes)
            key = ("bytewax_recovery" if recovery_on else "bytewax") + ("_2_processes" if processes > 1 else "")
            res[f"{key}_events_per_s"] = r["events_per_s"]
            res[f"ratio_{key}_over_bare"] = round(r["events_per_s"] / res["bare_events_per_s"], 3)
            res[f"{key}_exact"] = r["exact"]
            res[f"{key}_dead_letters"] = r["dead_letters"]

    if workers == 1:
        log(f"[{tag}] preloading {len(deliveries):,} deliveries")
        produce(bootstrap, prefix + topics.WEBHOOKS.name, deliveries)
    if preseed_entries:
        recs = preseed(bootstrap, prefix, preseed_entries)
        res["preseed_changelog_records"] = recs
    ws: list[Worker] = []
    try:  # the workers are the caller's once returned; stopped here if the run fails before
        for i in range(workers):
            ws.append(start_worker(bootstrap, work, f"{tag}-w{i or ''}", prefix, **(env or {})))
        w = ws[0]
        spy = None
        if profile is not None:
            spy = subprocess.Popen(["py-spy", "record", "--format", "raw", "-r", "200", "-o", str(profile),
                                    "--pid", str(w.process.pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for each in ws:
            each.wait_ready(timeout=1800)
        if preseed_entries:
            rec = _recovery_seconds(w.log_tail(200_000_000))
            res["preseed_recovery_records_per_s"] = round(res["preseed_changelog_records"] / rec, 1) if rec else None
            log(f"[{tag}] restored {res['preseed_changelog_records']:,} preloaded card records: "
                f"{res['preseed_recovery_records_per_s']}/s")
        start_ms = time.time() * 1000
        cpu0 = sum(cpu_seconds(each.process.pid) for each in ws)
        if workers > 1:
            wait_assigned(ws, timeout=120, label=tag)
            cpu0 = sum(cpu_seconds(each.process.pid) for each in ws)  # from when every worker holds partitions
            log(f"[{tag}] {workers} workers ready; writing {len(deliveries):,} deliveries")
            produce(bootstrap, prefix + topics.WEBHOOKS.name, deliveries)
            start_ms = min(m.timestamp for m in read_all(bootstrap, prefix + topics.WEBHOOKS.name))
        wait_drained(ws, len(deliveries), timeout=3600, label=tag)
        # The workers' CPU per delivery (both threads, user + system; the once-a-second /metrics scrape included):
        # steadier than the rate when the machine is shared, since time waiting for a core is not counted.
        cpu_us = 1e6 * (sum(cpu_seconds(each.process.pid) for each in ws) - cpu0) / len(deliveries)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
            summary = profile_summary(profile)
            profile.with_name("profile-top.txt").write_text(summary)
            log(f"[{tag}] profile (worker main thread):\n{summary}")
        final = read_all(bootstrap, prefix + topics.CUSTOMER_POINT_STATE.name)
        last_ms = max(m.timestamp for m in final)
        res.update(exactness(sc, final))
        res["mean_batch_records"] = mean_batches(scrape(w))
        secs = (last_ms - start_ms) / 1000
        res["pipeline_events_per_s"] = round(len(deliveries) / secs, 1)
        if bare:
            res["ratio_pipeline_over_bare"] = round(res["pipeline_events_per_s"] / res["bare_events_per_s"], 3)
        res["worker_peak_rss_mb"] = round(max(rss_peak_mb(each.process.pid) for each in ws), 1)
        res["worker_cpu_us_per_delivery"] = round(cpu_us, 1)
        log(f"[{tag}] pipeline ({workers} worker{'s' if workers > 1 else ''}): {len(deliveries):,} in {secs:.2f}s = "
            f"{len(deliveries) / secs:,.0f}/s; ratio {res.get('ratio_pipeline_over_bare')}; CPU {cpu_us:.0f} us per "
            f"delivery; peak RSS "
            f"{res['worker_peak_rss_mb']} MB; mean batch {res['mean_batch_records']}; exact: {res['exact']}")
        return res, ws
    except BaseException:
        for each in ws:
            each.stop()
        raise


def repeated(work: Path, n: int, times: int, main_res: dict) -> dict:
    """Our pipeline (one worker) and bytewax with recovery (one process) `times` times in all: the main run's pair,
    then each further pair on a fresh broker of its own with the same input, alternating which goes first. This
    machine's speed moves by a third within minutes, so one pair is not a comparison; and a pair on the main
    broker would run after the history our runs leave there (ours writes about 100,000 records a run, bytewax
    2,000), which the embedded broker slows with. The medians are the figures."""
    sc = simulate.build(seed=99, customers=max(5, n // 30))
    deliveries = [(d.key, d.value, d.headers) for d in sc.deliveries]
    ours, peer = [main_res["pipeline_events_per_s"]], [main_res["bytewax_recovery_events_per_s"]]
    exact = [main_res["exact"], main_res["bytewax_recovery_exact"]]
    for k in range(1, times):
        with embedded_broker.start(log_path=work / f"tansu-r{k}.log") as broker:
            src = f"bare-r{k}-" + topics.WEBHOOKS.name
            produce(broker.bootstrap, src, deliveries)
            for step in (("peer", "ours") if k % 2 == 0 else ("ours", "peer")):
                if step == "peer":
                    r = bytewax_peer(broker.bootstrap, src, f"r{k}", sc, work, True)
                    peer.append(r["events_per_s"])
                    exact.append(r["exact"])
                else:
                    res, ws = throughput(broker.bootstrap, work, n, f"r{k}", bare=False)
                    for each in ws:
                        each.stop()
                    ours.append(res["pipeline_events_per_s"])
                    exact.append(res["exact"])
    out = {"exact": all(exact), "pipeline_events_per_s": ours, "bytewax_recovery_events_per_s": peer,
           "ratios": [round(a / b, 3) for a, b in zip(ours, peer)],
           "median_pipeline_events_per_s": statistics.median(ours),
           "median_bytewax_recovery_events_per_s": statistics.median(peer)}
    out["ratio_of_medians"] = round(out["median_pipeline_events_per_s"] / out["median_bytewax_recovery_events_per_s"],
                                    3)
    log(f"repeated {times} times: ours {ours}, bytewax with recovery {peer}; ratios {out['ratios']}; ratio of the "
        f"medians {out['ratio_of_medians']}")
    return out


def mean_batches(samples: dict) -> dict[str, float]:
    """Mean records per batch each stage took (from the worker's batch histogram)."""
    out = {}
    for stage in ("cards", "customers"):
        n = metric_sum(samples, "pending_points_batch_records_count", stage=stage)
        out[stage] = round(metric_sum(samples, "pending_points_batch_records_sum", stage=stage) / n, 1) if n else None
    return out


def preseed(bootstrap: str, prefix: str, entries: int, per_card: int = 10) -> int:
    """Write a cards changelog holding `entries` pending entries (10 per card), as the worker itself would."""
    n_cards = entries // per_card
    log(f"preloading the cards changelog: {entries:,} entries on {n_cards:,} cards")
    changelog = f"{APP_ID}{prefix.rstrip('-')}-cards-changelog"
    kafka.create_topic(bootstrap, changelog, PARTITIONS, compacted=True)
    records = ((key, value, []) for key, value in simulate.preloaded_cards(n_cards, per_card))
    produce(bootstrap, changelog, records)
    return n_cards


def latency(bootstrap: str, w: Worker, tag: str, rate: float, seconds: float, broker_pid: int | None = None,
            phase: int = 0, input_linger_ms: float = 5) -> dict:
    """Offer new deliveries at `rate`/s; end-to-end latency from input record to customer-point-state record. Also
    the CPU the worker and the broker used meanwhile (% of one core): on these 2 shared cores it tells whether the
    worker or the machine is the limit."""
    n = int(rate * seconds)
    prefix = f"{tag}-"
    # new cards and customers per phase: outputs are matched to deliveries by customer
    lat_tag = f"lat{int(rate)}" + (f"p{phase}" if phase else "")
    log(f"[{tag}] latency: offering {n:,} deliveries at {rate:,.0f}/s")
    batch = [(d.key, d.value, d.headers) for d in (simulate.fresh_added(lat_tag, i) for i in range(n))]
    before = scrape(w)
    pids = {"worker": w.process.pid, **({"broker": broker_pid} if broker_pid else {}), "load generator": os.getpid()}
    cpu0 = {k: cpu_seconds(pid) for k, pid in pids.items()}
    t0 = time.monotonic()
    produce(bootstrap, prefix + topics.WEBHOOKS.name, batch, rate=rate, linger_ms=input_linger_ms)
    offered = n / (time.monotonic() - t0)
    # every delivery offered processed (each is folded where it sits: counted once), not only read
    wait_drained(w, int(metric_sum(before, DELIVERIES)) + n, timeout=600, label=f"{tag} latency")
    wall = time.monotonic() - t0
    cpu = {k: round(100 * (cpu_seconds(pid) - cpu0[k]) / wall) for k, pid in pids.items()}
    after = scrape(w)
    stage_ms = {}  # mean time from the delivery being written until each stage finished it, during this phase
    for stage in ("cards", "customers"):
        d = {k: metric_sum(after, f"pending_points_processing_latency_seconds_{k}", stage=stage)
             - metric_sum(before, f"pending_points_processing_latency_seconds_{k}", stage=stage)
             for k in ("sum", "count")}
        stage_ms[stage] = round(1000 * d["sum"] / d["count"], 1) if d["count"] else None
    sent = {json.loads(m.value)["data"]["pending_points"]["customer_id"]: m.timestamp
            for m in read_all(bootstrap, prefix + topics.WEBHOOKS.name) if m.key and m.key.startswith(f"v_{lat_tag}_".encode())}
    lat = []
    for m in read_all(bootstrap, prefix + topics.CUSTOMER_POINT_STATE.name):
        key = m.key.decode()
        if key in sent:
            lat.append(m.timestamp - sent.pop(key))
    lat.sort()
    q = percentiles(lat)
    res = {"offered": n, "offered_per_s": round(offered, 1), "latency_samples": len(lat), "missing": len(sent),
           "mean_ms_until_stage_done": stage_ms, "cpu_percent_of_one_core": cpu, "latency_p50_ms": round(q[49], 1), "latency_p99_ms": round(q[98], 1), "latency_max_ms": lat[-1] if lat else None}
    log(f"[{tag}] latency at {offered:,.0f}/s offered: p50 {res['latency_p50_ms']} ms, p99 {res['latency_p99_ms']} ms, "
        f"max {res['latency_max_ms']} ms ({len(lat):,} samples, {len(sent)} missing); mean until each stage done: "
        f"{stage_ms}; CPU (% of one core) {cpu}")
    # The broker's own floor right after, on the same broker: two bare hops, no processing (scripts/bench_relay.py),
    # on topics that keep the earlier phases' history as the pipeline's do
    try:
        floor = bench_relay.measure(bootstrap, broker_pid, hops=2, rate=rate, seconds=seconds,
                                    input_linger_ms=input_linger_ms, prefix=f"{prefix}floor-", phase=f"p{phase}-")
        log(f"[{tag}] the broker's floor right after: {bench_relay.describe(floor)}")
    except Exception as exc:  # the pipeline's figures stand without it
        floor = {"error": repr(exc)}
        log(f"[{tag}] the broker's floor could not be measured: {exc!r}")
    res["broker_floor_2_bare_hops"] = floor
    return res


def rate_keys(rates: str) -> list[tuple[int, float, str]]:
    """(phase, rate, result key) for each of the comma-separated rates; a repeated rate's key names its phase."""
    out: list[tuple[int, float, str]] = []
    for phase, rate in enumerate(float(r) for r in rates.split(",")):
        key = f"{rate:g}" if all(k != f"{rate:g}" for _p, _r, k in out) else f"{rate:g} (phase {phase + 1})"
        out.append((phase, rate, key))
    return out


def latencies(bootstrap: str, w: Worker, tag: str, rates: str, seconds: float, broker_pid: int | None = None,
              input_linger_ms: float = 5) -> dict:
    """`latency` at each of the comma-separated rates in turn; the last one's figures at the top level."""
    by_rate = {}
    for phase, rate, key in rate_keys(rates):
        by_rate[key] = latency(bootstrap, w, tag, rate, seconds, broker_pid, phase, input_linger_ms)
    return {**by_rate[key], "latency_by_rate": by_rate}


def fresh_latencies(work: Path, rates: str, seconds: float, input_linger_ms: float = 5) -> dict:
    """`latency` at each rate on a broker of its own, started for it, with a new worker (warmed with 200 deliveries
    first: its first records pay one-off costs, each output topic's metadata and first table reads, which the main
    run's worker paid in its throughput phase): what the pipeline gives where a fetch does not cost more as a
    topic's history grows. Apache Kafka finds a fetch offset through a segment index; the embedded broker lists
    every batch a partition ever stored on each fetch that finds data (docs/benchmark.md, fourth stop), so after the
    throughput phase's and the earlier rates' records its own two-hop floor at 1,000/s doubles. The floor is
    measured the same way, right after, on the same fresh broker. A rate that fails is reported as its error: the
    run's other figures stand."""
    by_rate: dict = {}
    for i, rate, key in rate_keys(rates):
        tag = f"fresh{i}"
        try:
            with embedded_broker.start(log_path=work / f"tansu-{tag}.log") as broker, \
                    start_worker(broker.bootstrap, work, f"{tag}-w", f"{tag}-") as w:
                w.wait_ready(timeout=300)
                warm = [(d.key, d.value, d.headers) for d in (simulate.fresh_added("warm", j) for j in range(200))]
                produce(broker.bootstrap, f"{tag}-" + topics.WEBHOOKS.name, warm)
                wait_drained(w, len(warm), timeout=120, label=f"{tag} warm-up")
                by_rate[key] = latency(broker.bootstrap, w, tag, rate, seconds, broker.process.pid, 0,
                                       input_linger_ms)
        except Exception as exc:
            by_rate[key] = {"error": repr(exc)}
            log(f"[{tag}] latency on a fresh broker failed: {exc!r}")
    return by_rate


def recovery(bootstrap: str, work: Path, tag: str) -> dict:
    prefix = f"{tag}-"
    changelog = sum(len(read_all(bootstrap, f"{APP_ID}{tag}-{t}-changelog")) for t in ("cards", "entries",
                                                                                        "customers"))
    r = start_worker(bootstrap, work, f"{tag}-r", prefix)
    try:
        t0 = time.monotonic()
        r.wait_ready(timeout=1800)
        secs = _recovery_seconds(r.log_tail(200_000_000)) or (time.monotonic() - t0)
    finally:
        r.stop()
    res = {"changelog_records": changelog, "recovery_records_per_s": round(changelog / secs, 1)}
    log(f"[{tag}] recovery: {changelog:,} changelog records in {secs:.2f}s = {changelog / secs:,.0f}/s")
    return res


def long_card(bootstrap: str, work: Path, n: int, chunk: int = 1000) -> dict:
    """One card collecting `n` entries through the worker (an order an hour, each activated or canceled later; its
    deliveries fed in event-time order, `chunk` at a time): ms per delivery by chunk, the worker's peak RSS, and
    the largest record written on any topic."""
    prefix = "card-"
    entries = simulate.long_card(n, tag="bench")
    w = start_worker(bootstrap, work, "card-w", prefix)
    try:
        w.wait_ready(timeout=300)
        per_chunk, total = [], 0
        timeline = simulate.timeline(entries)  # in event-time order: ~170 entries pending or recent at a time
        for start in range(0, len(timeline), chunk):
            batch = [simulate.envelope(e, ev) for e, ev in timeline[start:start + chunk]]
            t0 = time.monotonic()
            produce(bootstrap, prefix + topics.WEBHOOKS.name, [(d.key, d.value, d.headers) for d in batch])
            total += len(batch)
            wait_drained(w, total, timeout=900, label=f"long card, {total:,} of {len(timeline):,} deliveries")
            per_chunk.append(round((time.monotonic() - t0) * 1000 / len(batch), 3))
        # "drained" means every record was read; the last batch may still be in the agents' hands
        deadline = time.monotonic() + 30
        while True:
            status, card = w.get("/vouchers/v_bench_card?limit=1")
            if (status == 200 and card.get("entries_count") == n) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        rss = round(rss_peak_mb(w.process.pid), 1)
    finally:
        w.stop()
    written = [prefix + s.name for s in topics.ALL if s is not topics.WEBHOOKS]
    written += [f"{APP_ID}card-{t}-changelog" for t in ("cards", "entries", "customers")]
    largest = max(max((len(m.value or b"") for m in read_all(bootstrap, t, idle_s=1.0)), default=0) for t in written)
    res = {"long_card_entries": card.get("entries_count") if status == 200 else None,
           "long_card_ms_per_delivery_by_chunk": per_chunk, "long_card_worker_peak_rss_mb": rss,
           "long_card_largest_record_bytes": largest}
    log(f"[card] {n:,} entries on one card: ms per delivery by chunk of {chunk:,} deliveries {per_chunk}; "
        f"peak RSS {rss} MB; largest record written {largest:,} B")
    return res


# --- growth report -------------------------------------------------------------------------------------------

def write_growth(out: Path, rows: list[dict]) -> None:
    header = f"{'run':<22}{'deliveries':>11}{'state entries':>15}{'bare/s':>10}{'pipeline/s':>12}{'ratio':>8}{'RSS MB':>9}"
    lines = [header] + [
        f"{r['run']:<22}{r['deliveries']:>11,}{r['state_entries_preloaded']:>15,}{r['bare_events_per_s']:>10,.0f}"
        f"{r['pipeline_events_per_s']:>12,.0f}{r['ratio_pipeline_over_bare']:>8.3f}{r['worker_peak_rss_mb']:>9.0f}"
        for r in rows
    ]
    (out / "growth.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: growth.png skipped (pip install '.[bench]')")
        return
    sized = [r for r in rows if not r["state_entries_preloaded"]]
    stated = [r for r in rows if r["deliveries"] == sized[0]["deliveries"] or r["state_entries_preloaded"]]
    fig, ax = plt.subplots(2, 2, figsize=(11, 8))
    xs = [r["deliveries"] for r in sized]
    ax[0][0].plot(xs, [r["pipeline_events_per_s"] for r in sized], "o-", label="pipeline")
    ax[0][0].plot(xs, [r["bare_events_per_s"] for r in sized], "s--", label="bare aiokafka loop")
    ax[0][0].set(xscale="log", yscale="log", xlabel="deliveries", ylabel="events/s", title="Throughput vs input size")
    ax[0][0].legend()
    ax[0][1].plot(xs, [r["worker_peak_rss_mb"] for r in sized], "o-")
    ax[0][1].set(xscale="log", xlabel="deliveries", ylabel="peak RSS (MB)", title="Worker memory vs input size")
    labels = [f"{r['state_entries_preloaded']:,} entries" for r in stated]
    ax[1][0].bar(labels, [r["pipeline_events_per_s"] for r in stated])
    ax[1][0].set(ylabel="events/s", title=f"Throughput, {stated[0]['deliveries']:,} deliveries, vs state held")
    ax[1][1].bar(labels, [r["worker_peak_rss_mb"] for r in stated])
    ax[1][1].set(ylabel="peak RSS (MB)", title="Worker memory vs state held")
    fig.tight_layout()
    fig.savefig(out / "growth.png", dpi=90)
    log(f"wrote {out / 'growth.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000, help="deliveries for the throughput run")
    parser.add_argument("--quick", action="store_true", help="small sizes: proves the benchmark runs (CI)")
    parser.add_argument("--rate", default="500,1000", help="offered deliveries/s for the latency runs, one after "
                                                           "the other (the last one's figures are the headline)")
    parser.add_argument("--latency-s", type=float, default=15.0)
    parser.add_argument("--input-linger-ms", type=float, default=5.0, help=(
        "the latency load generator's producer linger (5: Apache Kafka 4.0's default; 0: one record per batch)"))
    parser.add_argument("--growth", action="store_true", help="also 10k/30k/60k deliveries and 1M state entries")
    parser.add_argument("--state-entries", type=int, default=1_000_000)
    parser.add_argument("--profile", action="store_true", help="py-spy the worker during the throughput run")
    parser.add_argument("--out", default="bench-out")
    parser.add_argument("--card-sizes", default="10,100,1000,10000", help="entries per card, card-history phase")
    parser.add_argument("--peer", action="store_true",
                        help="also run the job in bytewax (scripts/bench_peer.py): one process with recovery off and "
                             "on, two processes with recovery on (and our pipeline with two workers)")
    parser.add_argument("--repeat", type=int, default=3, help=(
        "with --peer: our pipeline and bytewax with recovery this many times in all, alternating, on the same "
        "input; the medians compare (1: once)"))
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:K=V,K=V",
                        help="also run throughput (and latency) with these worker settings, same run, same input")
    parser.add_argument("--phases", default="throughput,latency,recovery,long,history",
                        help="comma-separated subset of: throughput,latency,recovery,long,history")
    args = parser.parse_args()
    if args.quick:
        args.n, args.rate, args.latency_s, args.state_entries = 2_000, "100,200", 3.0, 20_000
        args.card_sizes = "10,100,1000"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        _run(args, out, work)
    except BaseException:
        log(f"the run failed: its brokers' and workers' logs and state are in {work}")
        raise
    shutil.rmtree(work, ignore_errors=True)  # a finished run leaves nothing behind (results are in --out)


def parse_variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = text.partition(":")
    return name, dict(pair.split("=", 1) for pair in pairs.split(",") if pair)


def _run(args, out: Path, work: Path) -> None:
    results: dict = {"command": " ".join(["scripts/bench", *sys.argv[1:]])}
    phases = set(args.phases.split(","))
    broker = embedded_broker.start(log_path=work / "tansu.log")
    workers: list[Worker] = []
    try:
        main_res, ws = throughput(broker.bootstrap, work, args.n, "main",
                                  profile=out / "profile.txt" if args.profile else None, floor=True,
                                  peer=args.peer)
        w = ws[0]
        workers += ws
        results.update(main_res)
        if "latency" in phases:
            results.update(latencies(broker.bootstrap, w, "main", args.rate, args.latency_s, broker.process.pid,
                                     args.input_linger_ms))
        w.stop()
        if args.peer:  # the peer in two processes has its counterpart: two workers, one group, same input
            res, tws = throughput(broker.bootstrap, work, args.n, "two", bare=False, workers=2)
            workers += tws
            for each in tws:
                each.stop()
            res["ratio_pipeline_over_bare"] = round(res["pipeline_events_per_s"] / main_res["bare_events_per_s"], 3)
            results["pipeline_2_workers"] = {**res, "ratio_over_bytewax_recovery_2_processes": round(
                res["pipeline_events_per_s"] / main_res["bytewax_recovery_2_processes_events_per_s"], 3)}
        for i, text in enumerate(args.variant):  # the same input, the worker with other settings
            name, env = parse_variant(text)
            count = int(env.pop("WORKERS", "1"))
            res, vws = throughput(broker.bootstrap, work, args.n, f"v{i}", env=env, bare=False, workers=count)
            workers += vws
            vw = vws[0]
            res["ratio_pipeline_over_bare"] = round(res["pipeline_events_per_s"] / main_res["bare_events_per_s"], 3)
            if "latency" in phases:
                res.update(latencies(broker.bootstrap, vw, f"v{i}", args.rate, args.latency_s, broker.process.pid,
                                     args.input_linger_ms))
            for each in vws:
                each.stop()
            results.setdefault("variants", {})[name] = {"env": env, **res}
        if "recovery" in phases:
            results.update(recovery(broker.bootstrap, work, "main"))
        if "long" in phases:
            results.update(long_card(broker.bootstrap, work, 2_000 if args.quick else 10_000,
                                     chunk=1000 if args.quick else 2000))
    finally:
        for w in workers:
            w.stop()
        broker.stop()
    if args.peer and args.repeat > 1:
        results["repeated"] = repeated(work, args.n, args.repeat, main_res)
    if "latency" in phases:
        results["latency_fresh_broker_by_rate"] = fresh_latencies(work, args.rate, args.latency_s,
                                                                  args.input_linger_ms)
    if "history" in phases:
        log("card history: one card with 10 to 10,000 entries, one event per batch")
        history = bench_card_history.run([int(x) for x in args.card_sizes.split(",")], 50 if args.quick else 300,
                                         out)
        results["card_history"] = [{k: r[k] for k in ("entries", "mean_ms", "p99_ms", "cost_vs_smallest",
                                                      "card_aggregate_bytes", "largest_record_bytes")}
                                   for r in history]
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    _growth(args, main_res, work, out)


def _growth(args, main_res: dict, work: Path, out: Path) -> None:
    if args.growth:
        # Sizes stop at 60k: past ~100k deliveries the embedded broker itself saturates (one CPU, 1.5 GB for
        # ~1M records in memory; measured at 200k: the broker at 94% CPU, the worker at 6%, lag stuck at 46k).
        sizes = (2_000, 5_000) if args.quick else (10_000, 30_000, 60_000)
        rows = [dict(main_res, run=f"{args.n:,} deliveries (main)")]
        runs = [(n, 0) for n in sizes] + [(sizes[0], args.state_entries)]
        for i, (n, state) in enumerate(runs):
            with embedded_broker.start(log_path=work / f"tansu-g{i}.log") as broker:  # a fresh broker per run
                res, ws = throughput(broker.bootstrap, work, n, f"g{i}", preseed_entries=state)
                ws[0].stop()
            rows.append(dict(res, run=f"{n:,} deliveries" + (f", {state:,} entries" if state else "")))
        rows = rows[1:]
        (out / "growth.json").write_text(json.dumps(rows, indent=2))
        write_growth(out, rows)


if __name__ == "__main__":
    main()
