"""Agent `ingest`: validate raw webhook deliveries and re-key them by voucher (or dead-letter / skip them)."""
from __future__ import annotations

import logging

from app.ops import metrics
from app.agents.batches import batch_output, take
from app.agents.deadletter import dead_letter
from app.agents.publish import Outbox
from app.logic.decode import Accepted, Rejected, Skipped, decode
from app.main import app, events_topic, settings, webhooks_topic
from app.models import codec
from app.models.records import DeadLetterReason

logger = logging.getLogger(__name__)


@app.agent(webhooks_topic, name="ingest")
async def ingest(stream):
    async for batch in take(stream, "ingest"):  # raw deliveries
        async with batch_output("ingest", batch) as (out, _writes):
            for message in batch:
                await _one(message, out)


async def _one(message, out: Outbox) -> None:
    """Validate one delivery; re-key it by voucher, or skip it, or dead-letter it."""
    try:
        outcome = decode(message.value, dict(message.headers or ()), max_bytes=settings.max_delivery_bytes)
    except Exception as exc:  # decode is total; this guards the partition against a bug in it
        logger.exception("decode failed")
        outcome = Rejected(DeadLetterReason(code="internal_error", detail=repr(exc)[:300]))
    if isinstance(outcome, Accepted):
        ev = outcome.event  # NormalizedEvent
        # Re-key by voucher: every event of one card is then processed in order by one worker. The record
        # keeps the delivery's timestamp, so later stages measure latency from when it was written.
        await out.add(events_topic, ev.voucher_id.encode(), codec.dump(ev), timestamp=message.timestamp)
        metrics.delivery(ev.step.value, "processed")
    elif isinstance(outcome, Skipped):
        metrics.skipped(outcome.event_type)
        logger.debug("skipped unsupported event type %r", outcome.event_type)
    else:
        await dead_letter(message, outcome.reason, event_type=outcome.event_type or "unknown")
