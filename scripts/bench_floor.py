"""A second reference for `scripts/bench`: the bare loop's work (consume, validate with our models, produce one
record) as ONE Faust agent, batched like ours. What it costs above the bare loop is Faust's per-message machinery
(consumer thread, conductor, stream, acks, producer): the floor under any Faust stage on this machine. Our
pipeline runs three such stages in one process.

Run by scripts/bench as `python -m faust -A bench_floor worker` with FLOOR_* variables set.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import faust  # noqa: E402

from app.compat import fetch_wait  # noqa: E402
from app.logic.decode import Accepted, decode  # noqa: E402
from app.models import codec  # noqa: E402

fetch_wait.install(int(os.environ.get("KAFKA_FETCH_MAX_WAIT_MS", "20")))  # the same fetch wait as our worker
N = int(os.environ["FLOOR_N"])
DST = os.environ["FLOOR_DST"]
app = faust.App(os.environ["FLOOR_APP_ID"], broker="kafka://" + os.environ["FLOOR_BOOTSTRAP"], store="memory://",
                datadir=os.environ["FLOOR_DATADIR"],  # the benchmark's work dir, never the source tree
                key_serializer="raw", value_serializer="raw", web_enabled=False,
                consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
                broker_session_timeout=10, broker_heartbeat_interval=2, broker_rebalance_timeout=20)  # as ours
src = app.topic(os.environ["FLOOR_SRC"], key_type=bytes, value_type=bytes, key_serializer="raw",
                value_serializer="raw")
seen = 0


@app.agent(src)
async def floor(stream):
    global seen
    async for batch in stream.take_events(500, within=0.01):
        for event in batch:
            out = decode(event.value, dict(event.headers or {}), max_bytes=4 << 20)
            value = codec.dump(out.event) if isinstance(out, Accepted) else b"{}"
            await app.producer.send(DST, event.key or b"-", value, None, None, None)
        seen += len(batch)
        if seen >= N:
            print("FLOOR DONE", flush=True)
