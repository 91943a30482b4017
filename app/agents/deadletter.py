"""The one way a record reaches the dead-letter topic: original bytes and headers, plus reason and coordinates."""
from __future__ import annotations

import logging

import faust

import topics
from app import metrics
from app.agents.publish import publish
from app.main import dead_letter_topic
from app.models.records import DeadLetterReason

logger = logging.getLogger(__name__)


async def dead_letter(event: faust.EventT, reason: DeadLetterReason, *, event_type: str | None = None) -> None:
    """`event_type`: the delivery's step (or "unknown") when it is an input delivery; None for internal records."""
    msg = event.message
    headers = [(k, v) for k, v in (msg.headers or []) if not k.startswith("dlq-")]
    headers += [
        (topics.DLQ_REASON, reason.header().encode()),
        (topics.DLQ_CODE, reason.code.encode()),
        (topics.DLQ_SOURCE_TOPIC, msg.topic.encode()),
        (topics.DLQ_SOURCE_PARTITION, str(msg.partition).encode()),
        (topics.DLQ_SOURCE_OFFSET, str(msg.offset).encode()),
    ]
    logger.warning(
        "dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason.header()[:200]
    )
    metrics.dead_lettered(reason.code, event_type)
    await publish(dead_letter_topic, msg.key, msg.value, headers=headers)
