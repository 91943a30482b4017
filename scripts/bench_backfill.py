"""Backfill benchmark: `python -m app backfill` over a programme of N pending entries, into the embedded broker.

    python scripts/bench_backfill.py [--entries 100000] [--per-card 20] [--fold] [--out bench-out]

Starts the embedded broker and the stand-in Voucherify API (devtools/fake_voucherify.py, in this process) holding
N PENDING entries on N/per-card cards in two campaigns, runs the backfill command as a user would (its own
process, default settings: pages of 100, one flush per page), and reports entries/s, wall time, API requests and
the command's peak RSS. `--fold` also starts a worker and times until it has folded every backfilled entry.
Writes backfill.json to --out.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devtools import embedded_broker  # noqa: E402
from devtools.fake_voucherify import FakeVoucherify, Programme  # noqa: E402
from devtools.simulate import Entry, Event  # noqa: E402
from devtools.workers import Worker, metric_sum, scrape  # noqa: E402

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def programme(n: int, per_card: int) -> Programme:
    p = Programme()
    entries = []
    for i in range(n):
        card = i // per_card
        created = T0 + dt.timedelta(seconds=i)
        e = Entry(id=f"lopp_b{i:09d}", voucher_id=f"v_bench_{card:07d}", customer_id=f"cust_bench_{card:07d}",
                  campaign_id=f"camp_bench_{card % 2}", order_id=f"ord_b{i:09d}", created_at=created,
                  activates_at=(created + dt.timedelta(days=30)).date())
        e.events.append(Event("added", created, 1 + i % 500, {}))
        entries.append(e)
    p.add(entries)
    return p


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--per-card", type=int, default=20)
    parser.add_argument("--fold", action="store_true", help="also time a worker folding them")
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    broker = embedded_broker.start(log_path=work / "tansu.log")
    worker = None
    try:
        p = programme(args.entries, args.per_card)
        with FakeVoucherify(p) as api:
            env = {**os.environ, **api.env(), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "LOG_LEVEL": "warning"}
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "app", "backfill", "--state", str(work / "state.json")],
                                  env=env, capture_output=True, text=True, timeout=3600)
            wall = time.monotonic() - t0
            if proc.returncode != 0:
                raise SystemExit(proc.stdout + proc.stderr)
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KB on Linux
            result = json.loads(proc.stdout.strip().splitlines()[-1])
        res = {"command": " ".join(["scripts/bench_backfill.py", *sys.argv[1:]]), "entries": result["entries"],
               "cards": args.entries // args.per_card, "api_requests": result["requests"],
               "seconds_in_command": result["seconds"], "entries_per_s": result["entries_per_s"],
               "wall_seconds_with_start": round(wall, 2),
               "backfill_peak_rss_mb": round(rss_mb, 1) if rss_mb > before / 1024 else None}
        print(f"[backfill] {res['entries']:,} entries ({res['cards']:,} cards, {res['api_requests']:,} API calls) "
              f"in {res['seconds_in_command']:.1f} s = {res['entries_per_s']:,.0f} entries/s; "
              f"{wall:.1f} s with the process start; peak RSS {res['backfill_peak_rss_mb']} MB", flush=True)
        if args.fold:
            worker = Worker(broker.bootstrap, work / "w-data", work / "w.log", {})
            t0 = time.monotonic()
            worker.start().wait_ready(timeout=300)
            deadline = time.monotonic() + 3600
            while True:
                seen = metric_sum(scrape(worker), "pending_points_deliveries_total", outcome="processed")
                if seen >= res["entries"] or time.monotonic() > deadline:
                    break
                time.sleep(1)
            res["fold_seconds"] = round(time.monotonic() - t0, 1)
            res["fold_entries_per_s"] = round(seen / res["fold_seconds"], 1)
            print(f"[backfill] a worker folded them in {res['fold_seconds']:.0f} s "
                  f"({res['fold_entries_per_s']:,.0f}/s, worker start included)", flush=True)
        (out / "backfill.json").write_text(json.dumps(res, indent=2))
    finally:
        if worker is not None:
            worker.stop()
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
