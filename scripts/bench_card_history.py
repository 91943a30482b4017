"""Card history: per-event cost and record sizes on cards holding 10 / 100 / 1,000 / 10,000 entries.

    python scripts/bench_card_history.py [--sizes 10,100,1000,10000] [--events 300] [--out bench-out]

(also run by `scripts/bench --card-history`). A loyalty card collects one entry per order for years, so the cost
of one event must not grow with the card's history. For each size, one card's history is built through the
service's own card logic (one order a day: added, then activated seven days later; the last week still
PENDING) with its state in RocksDB (rocksdict, the store Faust uses), then `--events` new deliveries (a new
entry's added and, later, its activation) are applied one per batch, the worst case: each one reads the card
aggregate and the entry row, folds, and writes the row and the aggregate back. Reported per size: mean and p99
time per event, the card aggregate's size, the largest entry row, and the largest record the service would
write for it (changelog values and output records).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import rocksdict

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.logic import cards  # noqa: E402
from app.models import codec  # noqa: E402
from app.models.records import CardAgg, CardSnapshot, EntryRecord, NormalizedEvent, Observation, Step  # noqa: E402

UTC = dt.timezone.utc
T0 = dt.datetime(2000, 1, 1, tzinfo=UTC)
RETIRE_AFTER = dt.timedelta(hours=72)
VOUCHER = "v_history_card"


def _event(step: Step, i: int, at: dt.datetime) -> NormalizedEvent:
    created = T0 + dt.timedelta(days=i)
    return NormalizedEvent(
        step=step, entry_id=f"lopp_{i:024d}", voucher_id=VOUCHER, customer_id="cust_history", campaign_id="camp_1",
        event_id=f"evcus_{step.value}_{i}",
        observation=Observation(points=10 + i % 90, activates_at=(created + dt.timedelta(days=7)).date(),
                                created_at=created, updated_at=None if step is Step.ADDED else at,
                                order_id=f"ord_{i:020d}", campaign_id="camp_1", customer_id="cust_history",
                                occurred_at=at, activated_at=at if step is Step.ACTIVATED else None),
        card=CardSnapshot(points=1000 + i, balance=500 + i, pending_points=70, as_of=at, occurred_at=at),
    )


def _history(n: int) -> list[NormalizedEvent]:
    """Entry i added on day i, activated on day i + 7 (the last seven still pending), in event-time order."""
    evs = []
    for day in range(n):
        evs.append(_event(Step.ADDED, day, T0 + dt.timedelta(days=day)))
        if day >= 7:
            evs.append(_event(Step.ACTIVATED, day - 7, T0 + dt.timedelta(days=day, hours=1)))
    return evs


class Store:
    """The two tables of one partition in RocksDB, as the agent uses them."""

    def __init__(self, path: Path):
        self.db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
        self.largest: dict[str, int] = {}

    def _note(self, what: str, value: bytes) -> None:
        self.largest[what] = max(self.largest.get(what, 0), len(value))

    def apply(self, ev: NormalizedEvent, offset: int) -> None:
        raw = self.db.get(VOUCHER.encode())
        card = codec.load(CardAgg, raw) if raw is not None else None

        def row(eid: str) -> EntryRecord | None:
            value = self.db.get(cards.entry_key(VOUCHER, eid))
            return codec.load(EntryRecord, value) if value is not None else None

        res = cards.apply_batch(card, [(ev, offset)], row, UTC, RETIRE_AFTER)
        for out in (*res.outputs.summaries, *res.outputs.activations, *res.outputs.entries):
            self._note(type(out).__name__, codec.dump(out))
        wb = rocksdict.WriteBatch(raw_mode=True)
        for eid, rec in res.rows.items():
            value = codec.dump(rec)
            self._note("EntryRecord (entries changelog)", value)
            wb.put(cards.entry_key(VOUCHER, eid), value)
            if eid in res.indexed:
                wb.put(cards.index_key(VOUCHER, rec.seq, eid), b"")
        if res.changed:
            value = codec.dump(res.card)
            self._note("CardAgg (cards changelog)", value)
            wb.put(VOUCHER.encode(), value)
        self.db.write(wb)

    def close(self) -> None:
        self.db.close()


def measure(n: int, events: int, work: Path) -> dict:
    path = work / f"card-{n}"
    store = Store(path)
    offset = 0
    for ev in _history(n):
        store.apply(ev, offset)
        offset += 1
    store.largest.clear()
    agg_bytes = len(store.db.get(VOUCHER.encode()))
    # New traffic on the old card: a new order a day, its activation a week later, one delivery per batch.
    new = []
    for k in range(events // 2):
        day = n + k
        new.append(_event(Step.ADDED, day, T0 + dt.timedelta(days=day)))
        new.append(_event(Step.ACTIVATED, day - 7, T0 + dt.timedelta(days=day, hours=1)))
    times = []
    for ev in new:
        t = time.perf_counter()
        store.apply(ev, offset)
        times.append(time.perf_counter() - t)
        offset += 1
    agg = codec.load(CardAgg, store.db.get(VOUCHER.encode()))
    largest = dict(store.largest)
    store.close()
    shutil.rmtree(path, ignore_errors=True)
    times.sort()
    return {
        "entries": n, "events": len(times),
        "mean_ms": round(statistics.mean(times) * 1000, 3),
        "p99_ms": round(times[int(len(times) * 0.99) - 1] * 1000, 3),
        "card_aggregate_bytes": agg_bytes, "live_entries": len(agg.live),
        "largest_record_bytes": max(largest.values()), "largest_by_kind": largest,
    }


def run(sizes: list[int], events: int, out: Path | None) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="bench-card-history-"))
    try:
        rows = []
        for n in sizes:
            row = measure(n, events, work)
            rows.append(row)
            print(f"[card history] {n:>6,} entries: {row['mean_ms']:.3f} ms/event (p99 {row['p99_ms']:.3f}), "
                  f"aggregate {row['card_aggregate_bytes']:,} B ({row['live_entries']} live), "
                  f"largest record {row['largest_record_bytes']:,} B", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = rows[0]["mean_ms"]
    for row in rows:
        row["cost_vs_smallest"] = round(row["mean_ms"] / base, 2)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "card-history.json").write_text(json.dumps(rows, indent=2))
        _plot(out / "card-history.png", rows)
    return rows


def _plot(path: Path, rows: list[dict]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("[card history] matplotlib not installed (the bench extra): no plot", flush=True)
        return
    xs = [r["entries"] for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(xs, [r["mean_ms"] for r in rows], "o-", label="mean")
    a.plot(xs, [r["p99_ms"] for r in rows], "s--", label="p99")
    a.set_xscale("log")
    a.set_ylim(bottom=0)
    a.set_xlabel("entries on the card")
    a.set_ylabel("ms per event (read + fold + write)")
    a.set_title("One event on an old card")
    a.legend()
    b.plot(xs, [r["card_aggregate_bytes"] / 1024 for r in rows], "o-", label="card aggregate")
    b.plot(xs, [r["largest_record_bytes"] / 1024 for r in rows], "s--", label="largest record written")
    b.axhline(64, color="grey", lw=0.8, ls=":")
    b.set_xscale("log")
    b.set_ylim(bottom=0)
    b.set_xlabel("entries on the card")
    b.set_ylabel("KiB")
    b.set_title("Record sizes (64 KiB target dotted)")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--out", default="bench-out")
    args = parser.parse_args()
    run([int(s) for s in args.sizes.split(",")], args.events, Path(args.out))


if __name__ == "__main__":
    main()
