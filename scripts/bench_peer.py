"""The peer for `scripts/bench --peer`: the same job in bytewax (0.21), calling OUR logic (`decode`, `cards.apply`,
`customers.apply`), with bytewax's own Kafka source and sink.

    deliveries --decode--> key by voucher --cards.apply--> summaries --key by customer--> customers.apply --> records

bytewax re-keys inside the process (no intermediate topics) and keeps state in the worker's memory; with
recovery on, it snapshots that state to SQLite on local disk (here every second). It has no changelog topics, no
standbys, no views. Its KafkaSource assigns partitions itself (no consumer group), and `tail=False` ends the
dataflow at each partition's end, so the run finishes by itself.

Run by scripts/bench as `python -m bytewax.run bench_peer:flow [-r DIR -s 1 -b 0]` with PEER_* variables set.
It prints `PEER START <unix ms>` when the first delivery is read (the clock starts there, as the pipeline's starts
when the worker is ready); the run ends when every partition's end was read.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import bytewax.operators as op  # noqa: E402
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource  # noqa: E402
from bytewax.dataflow import Dataflow  # noqa: E402

from app.logic import cards, customers  # noqa: E402
from app.logic.decode import Accepted, Rejected, decode  # noqa: E402
from app.models import codec  # noqa: E402
from app.settings import get_settings  # noqa: E402

settings = get_settings()
TZ = ZoneInfo(settings.project_timezone)
RETIRE_AFTER = settings.retire_after
BROKERS = [os.environ["PEER_BOOTSTRAP"]]
_started = False


def decoded(msg):
    """A delivery: ("ok", event) or ("dlq", (key, value)); skipped types are dropped."""
    global _started
    if not _started:
        _started = True
        print(f"PEER START {int(time.time() * 1000)}", flush=True)
    out = decode(msg.value, dict(msg.headers or []), max_bytes=settings.max_delivery_bytes)
    if isinstance(out, Accepted):
        return ("ok", out.event)
    if isinstance(out, Rejected):
        return ("dlq", (msg.key, msg.value))
    return None


def fold_card(state, event):
    """State per card: (aggregate, entry rows, records folded). Our fold, one event at a time."""
    card, rows, n = state if state is not None else (None, {}, 0)
    res = cards.apply(card, event, n, rows.get, TZ, RETIRE_AFTER)
    rows.update(res.rows)
    return (res.card, rows, n + 1), res.outputs.summaries


def fold_customer(state, summary):
    prev, n = state if state is not None else (None, 0)
    new, record = customers.apply(prev, summary, n)
    return (new, n + 1), record


flow = Dataflow("pending-points-peer")
raw = op.input("in", flow, KafkaSource(BROKERS, [os.environ["PEER_SRC"]], tail=False))
outcomes = op.filter_map("decode", raw, decoded)
split = op.branch("valid", outcomes, lambda o: o[0] == "ok")
events = op.map("event", split.trues, lambda o: o[1])
by_card = op.key_on("by_card", events, lambda ev: ev.voucher_id)
summaries = op.flat_map_value("summaries", op.stateful_map("cards", by_card, fold_card), lambda s: s)
by_customer = op.key_on("by_customer", op.map("drop_card_key", summaries, lambda kv: kv[1]),
                        lambda s: s.customer_id)
records = op.filter_map_value("records", op.stateful_map("customers", by_customer, fold_customer), lambda r: r)
op.output("out", op.map("record", records, lambda kv: KafkaSinkMessage(kv[0].encode(), codec.dump(kv[1]))),
          KafkaSink(BROKERS, os.environ["PEER_DST"]))
op.output("dlq", op.map("dead_letter", split.falses, lambda o: KafkaSinkMessage(o[1][0], o[1][1])),
          KafkaSink(BROKERS, os.environ["PEER_DLQ"]))
