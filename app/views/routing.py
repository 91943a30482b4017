"""Route a view to the worker that owns the key, answering 503 (not 500) while that cannot be known or reached.

Wraps Faust's `app.table_route`, adding three things it lacks:
- aiokafka only refreshes metadata for topics in its client's topic set, and a topic whose partitions were known
  from an earlier full refresh never joins that set. A later refresh forgets it, and Faust's router then fails
  with "'NoneType' object is not iterable" (seen on the embedded broker). We re-request the changelog topic's
  metadata before routing.
- While partitions are being assigned or tables recovered, the caller gets a 503 with a reason. Faust itself
  would answer from the half-restored local table (a 404 for a key not restored yet): short state served as truth.
- If the owning worker does not answer, 503 too.
"""
from __future__ import annotations

from functools import wraps

import aiohttp
import faust
from faust.web.exceptions import ServiceUnavailable

from app.compat import internals
from app.main import app
from app.ops.health import not_ready_reason



async def _ensure_metadata(topic: str) -> None:
    try:
        await internals.wait_on_metadata(internals.kafka_producer(app), topic)
    except Exception as exc:
        raise ServiceUnavailable(f"no partition metadata for {topic} yet: {exc!r}") from exc


def owner_routed(table: faust.TableT, match_info: str):
    def decorator(fun):
        routed = app.table_route(table=table, match_info=match_info)(fun)

        @wraps(fun)
        async def view(self, request, *args, **kwargs):
            reason = not_ready_reason()
            if reason:
                raise ServiceUnavailable(f"{reason}; retry shortly")
            await _ensure_metadata(table.changelog_topic.get_topic_name())
            try:
                return await routed(self, request, *args, **kwargs)
            except (aiohttp.ClientError, OSError) as exc:
                raise ServiceUnavailable(f"the worker owning this key did not answer: {exc!r}") from exc

        return view

    return decorator
