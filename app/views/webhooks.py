"""POST /webhooks/voucherify: Voucherify's webhook endpoint. A 2xx means the delivery is on the input topic.

Voucherify waits at most 10 s for a 2xx and retries anything else for 24 h, so: answer 202 only after the broker
acknowledged the record, 503 if it did not within WEBHOOK_ACK_TIMEOUT_S (Voucherify retries; if the record did
land after all, the retry is a duplicate, which the processor absorbs), and a clear 4xx for what a retry cannot
fix. The type of a raw (envelope-less) payload comes from `?type=` or an `Event-Type` header.
"""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka.errors import MessageSizeTooLargeError
from faust.web import View

from app.ops import metrics
from app.logic import intake
from app.agents.publish import store_delivery
from app.main import app, settings, webhooks_topic

logger = logging.getLogger(__name__)

PATH = "/webhooks/voucherify"
_SECRET = settings.webhook_secret.get_secret_value().encode() if settings.webhook_secret else None


def log_mode() -> None:
    if _SECRET is not None:
        logger.info("webhook endpoint %s: signatures required", PATH)
    elif settings.webhook_allow_unsigned:
        logger.warning("webhook endpoint %s: UNSIGNED deliveries accepted (WEBHOOK_ALLOW_UNSIGNED)", PATH)
    else:
        logger.error("webhook endpoint %s is OFF: set WEBHOOK_SECRET (or WEBHOOK_ALLOW_UNSIGNED=true)", PATH)


async def _read_body(request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` (without reading the rest)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(exc: BaseException | None) -> bool:
    """Refused for its size, by the producer's own limit or by the broker (Faust wraps the former)."""
    while exc is not None:
        if isinstance(exc, MessageSizeTooLargeError):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@app.page(PATH)
class VoucherifyWebhook(View):
    async def post(self, request):
        status, body = await self._handle(request)
        return self.json(body, status=status)

    async def _handle(self, request) -> tuple[int, dict]:
        if not settings.webhook_enabled:
            return self._answer(503, "webhook_disabled",
                                "no WEBHOOK_SECRET configured on this worker (or WEBHOOK_ALLOW_UNSIGNED=true)")
        limit = settings.max_delivery_bytes
        raw = await _read_body(request, limit)
        if raw is None:
            return self._answer(413, "too_large", f"body exceeds {limit} bytes")
        decision = intake.check(
            raw,
            content_type=request.headers.get("Content-Type"),
            signature=request.headers.get(intake.SIGNATURE_HEADER),
            secret=_SECRET,
            type_hint=request.headers.get("Event-Type") or request.query.get("type"),
            max_bytes=limit,
        )
        if isinstance(decision, intake.Refuse):
            return self._answer(decision.status, decision.code, decision.detail)
        if isinstance(decision, intake.Ignore):
            metrics.webhook_request("200", "unsupported_type")
            return 200, {"status": "ignored", "detail": f"event type {decision.event_type!r} is not handled here"}

        started = time.perf_counter()
        try:
            meta = await asyncio.wait_for(
                store_delivery(webhooks_topic.get_topic_name(), decision.key, raw, decision.headers),
                timeout=settings.webhook_ack_timeout_s,
            )
        except asyncio.TimeoutError:
            return self._answer(503, "broker_timeout",
                                f"the broker did not acknowledge within {settings.webhook_ack_timeout_s}s; retry")
        except Exception as exc:  # too large; or producer not started, broker refused, connection lost
            if _too_large(exc):  # a retry cannot fix it: 413, never 2xx or 503
                return self._answer(413, "too_large", "the delivery with its headers exceeds the input topic's "
                                    f"record limit (KAFKA_MAX_RECORD_BYTES={settings.kafka_max_record_bytes})")
            logger.warning("webhook delivery not stored: %r", exc)
            return self._answer(503, "broker_unavailable", f"could not store the delivery: {exc!r:.200}; retry")
        metrics.WEBHOOK_ACK_SECONDS.observe(time.perf_counter() - started)
        outcome = "accepted" if decision.warning is None else "accepted_invalid"
        metrics.webhook_request("202", outcome)
        answer = {"status": "accepted", "topic": meta.topic, "partition": meta.partition, "offset": meta.offset}
        if decision.event_type:
            answer["event_type"] = decision.event_type
        if decision.warning:
            answer["warning"] = f"stored, but will be dead-lettered: {decision.warning}"
        return 202, answer

    @staticmethod
    def _answer(status: int, code: str, detail: str) -> tuple[int, dict]:
        metrics.webhook_request(str(status), code)
        if status >= 500:
            logger.warning("webhook answered %d %s: %s", status, code, detail)
        return status, {"error": code, "detail": detail}
