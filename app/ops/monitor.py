"""Faust's Monitor sensor, without its per-record bookkeeping.

Faust's Monitor counts every record in and out, by topic, stream and task, and times each one (for its `/stats`
web page, which this service does not serve: its metrics are `/metrics`, app/ops/metrics.py). That is four
sensor calls per record per stage, about 2% of the worker. Kept: the time each partition's stream last took a
record, which Faust's consumer reads to warn about a stalled stream.
"""
from __future__ import annotations

from time import monotonic
from typing import Any

from faust.sensors import Monitor


class QuietMonitor(Monitor):
    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        pass

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = monotonic()  # read by Faust's stalled-stream warning

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        pass

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        pass
