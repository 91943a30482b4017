"""The one way a record reaches the dead-letter topic: original bytes and headers, plus reason and coordinates."""
from __future__ import annotations

import logging

from faust.types import Message

import topics
from app.ops import metrics
from app.agents.publish import publish
from app.main import dead_letter_topic, settings
from app.models.records import DeadLetterReason

logger = logging.getLogger(__name__)

_RECORD_OVERHEAD = 512  # record batch header, record framing, varints: aiokafka estimates about 82 bytes


def fit(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]],
        limit: int) -> tuple[bytes | None, list[tuple[str, bytes]]]:
    """The dead-letter copy cut to fit under the record limit, if it must be.

    Only possible for an input record that was already near the limit, so dead-lettered as too large anyway. The
    copy must fit: a refused dead letter would stop the worker on this record for ever. The value is cut, the
    `dlq-truncated` header says how long it was.
    """
    room = limit - _RECORD_OVERHEAD - len(key or b"") - sum(len(k) + len(v) for k, v in headers)
    if value is None or len(value) <= room:
        return value, headers
    headers = [*headers, (topics.DLQ_TRUNCATED, str(len(value)).encode())]
    return value[:max(0, room - 64)], headers


async def dead_letter(msg: Message, reason: DeadLetterReason, *, event_type: str | None = None) -> None:
    """`msg`: the record (Faust's `Message`); `event_type`: the delivery's step (or "unknown") when it is an input
    delivery; None for internal records."""
    # A forwarded copy's carried event is left out: a redriven dead letter is validated again from its value.
    headers = [(k, v) for k, v in (msg.headers or []) if not k.startswith("dlq-") and k != topics.FORWARDED_EVENT]
    headers += [
        (topics.DLQ_REASON, reason.header().encode()),
        (topics.DLQ_CODE, reason.code.encode()),
        (topics.DLQ_SOURCE_TOPIC, msg.topic.encode()),
        (topics.DLQ_SOURCE_PARTITION, str(msg.partition).encode()),
        (topics.DLQ_SOURCE_OFFSET, str(msg.offset).encode()),
    ]
    value, headers = fit(msg.key, msg.value, headers, settings.kafka_max_record_bytes)
    logger.warning(
        "dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason.header()[:200]
    )
    metrics.dead_lettered(reason.code, event_type)
    await publish(dead_letter_topic, msg.key, value, headers=headers)
