"""Turn one raw delivery (bytes + Kafka headers) into a NormalizedEvent, a skip, or a dead-letter reason."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Mapping

import pydantic_core
from pydantic import ValidationError

from app.models.records import CardSnapshot, DeadLetterReason, NormalizedEvent, Observation, Step
from app.models.webhooks import EVENT_TYPE_HEADER, Envelope, PendingPointsEventData


_FAMILIES = ("voucher.loyalty_card.pending_points.", "customer.voucher.loyalty_card.pending_points.")
_STEPS = {s.value: s for s in Step}


@dataclass(frozen=True, slots=True)
class Accepted:
    event: NormalizedEvent


@dataclass(frozen=True, slots=True)
class Skipped:
    event_type: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: DeadLetterReason
    event_type: str | None = None  # the lifecycle step, when the delivery named a supported one


Decoded = Accepted | Skipped | Rejected


def normalize_type(name: str) -> str:
    """`EVENTS.VOUCHER.LOYALTY_CARD.PENDING_POINTS.ADDED` -> `voucher.loyalty_card.pending_points.added`."""
    name = name.strip().lower()
    return name[len("events."):] if name.startswith("events.") else name


def step_of(event_type: str) -> Step | None:
    """The lifecycle step an event type names, or None if it is not a pending-points type we support."""
    name = normalize_type(event_type)
    for family in _FAMILIES:
        if name.startswith(family):
            return _STEPS.get(name[len(family):])
    return None


def _reject(code: str, detail: str, step: Step | None = None) -> Rejected:
    return Rejected(DeadLetterReason(code=code, detail=detail), step.value if step else None)


def _header_type(headers: Mapping[str, bytes | None]) -> str | None | Rejected:
    raw = headers.get(EVENT_TYPE_HEADER)
    if raw is None:  # header names are case-sensitive in Kafka; senders are not always careful
        raw = next((v for k, v in headers.items() if k.lower() == EVENT_TYPE_HEADER), None)
    if raw is None:
        return None
    try:
        value = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return _reject("bad_header", f"header {EVENT_TYPE_HEADER!r} is not UTF-8")
    return value or None


def _error_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False)[:3]:
        loc = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def decode(value: bytes | None, headers: Mapping[str, bytes | None], *, max_bytes: int) -> Decoded:
    """Classify one delivery. Never raises for any input."""
    if value is None or len(value) == 0:
        return _reject("empty", "record has no value")
    if len(value) > max_bytes:
        return _reject("too_large", f"value is {len(value)} bytes, limit {max_bytes}")
    header_type = _header_type(headers)  # a bad header is reported before a bad body, as it always was
    if isinstance(header_type, Rejected):
        return header_type
    try:
        body = pydantic_core.from_json(value, cache_strings=False)
    except ValueError as exc:
        # Not UTF-8, not JSON, or nested past the parser's recursion limit.
        return _reject("invalid_json", str(exc)[:300])
    return _decode_body(body, header_type)


def decode_parsed(body: Any, headers: Mapping[str, bytes | None]) -> Decoded:
    """`decode` for a delivery whose JSON is already parsed (the webhook endpoint parses it to check signatures)."""
    header_type = _header_type(headers)
    if isinstance(header_type, Rejected):
        return header_type
    return _decode_body(body, header_type)


def _decode_body(body: Any, header_type: str | None) -> Decoded:
    if not isinstance(body, dict):
        return _reject("not_an_object", f"JSON value is a {type(body).__name__}, expected an object")

    envelope: Envelope | None = None
    data: Any = body
    if isinstance(body.get("data"), dict) and "pending_points" not in body:
        try:
            envelope = Envelope.model_validate(body)
        except ValidationError as exc:
            return _reject("invalid_envelope", _error_text(exc))
        data = body["data"]

    event_type = header_type
    if event_type is None and envelope is not None:
        # For distributions `type` is a user-typed name: the trigger is `event.type`.
        inner = envelope.event.type if envelope.event else None
        event_type = inner if inner and step_of(inner) else envelope.type
    if event_type is None:
        if envelope is None:
            return _reject("missing_type", f"raw payload without an {EVENT_TYPE_HEADER!r} header")
        return _reject("missing_type", "envelope has neither event.type nor type")

    step = step_of(event_type)
    if step is None:
        return Skipped(normalize_type(event_type)[:200])

    try:
        payload = PendingPointsEventData.model_validate(data)
    except ValidationError as exc:
        return _reject("invalid_payload", _error_text(exc), step)
    return _normalize(step, payload, envelope)


def _normalize(step: Step, data: PendingPointsEventData, envelope: Envelope | None) -> Decoded:
    pp = data.pending_points
    voucher_id = pp.voucher_id or (data.voucher.id if data.voucher else None)
    customer_id = pp.customer_id or (data.customer.id if data.customer else None)
    if not voucher_id:
        return _reject("invalid_payload", "no voucher id (pending_points.voucher_id or voucher.id)", step)
    if not customer_id:
        return _reject("invalid_payload", "no customer id (pending_points.customer_id or customer.id)", step)
    campaign_id = pp.campaign_id or (data.campaign.id if data.campaign else None) or (
        data.voucher.campaign_id if data.voucher else None
    )
    occurred_at = None
    event_id = None
    if envelope is not None:
        occurred_at = (envelope.event.created_at if envelope.event else None) or envelope.created_at
        event_id = envelope.event.id if envelope.event else None
    activated_at: dt.datetime | None = None
    if step is Step.ACTIVATED:
        activated_at = (
            (data.transaction.created_at if data.transaction else None)
            or occurred_at
            or pp.updated_at
            or (data.voucher.updated_at if data.voucher else None)
        )
    observation = Observation(
        points=pp.points,
        activates_at=pp.activates_at,
        created_at=pp.created_at,
        updated_at=pp.updated_at,
        order_id=pp.order_id or (data.order.id if data.order else None),
        campaign_id=campaign_id,
        customer_id=customer_id,
        occurred_at=occurred_at,
        activated_at=activated_at,
    )
    card = None
    if data.voucher is not None and data.voucher.loyalty_card is not None:
        lc = data.voucher.loyalty_card
        card = CardSnapshot(
            points=lc.points,
            balance=lc.balance,
            pending_points=lc.pending_points,
            as_of=data.voucher.updated_at,
            occurred_at=occurred_at,
        )
    return Accepted(
        NormalizedEvent(
            step=step,
            entry_id=pp.id,
            voucher_id=voucher_id,
            customer_id=customer_id,
            campaign_id=campaign_id,
            event_id=event_id,
            observation=observation,
            card=card,
        )
    )
