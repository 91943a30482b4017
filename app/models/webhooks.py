"""Inbound models of Voucherify pending-points webhook payloads (v2024-01-01 envelope and raw data objects).

Tolerant by design: unknown fields are ignored and optional parts may be absent, because Voucherify adds fields
and its published examples disagree with its schema. Only what the service relies on is strict: ids, points,
dates and timestamps.
"""
from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

MAX_POINTS = 2**63 - 1
MAX_ID_LENGTH = 256

# Kafka record header naming the event type; the only place a raw payload's type can come from.
EVENT_TYPE_HEADER = "event-type"

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _parse_date(value: Any) -> dt.date:
    # Only the documented `YYYY-MM-DD` form: pydantic's lax date parsing would also take epoch numbers.
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise ValueError(f"expected a date YYYY-MM-DD, got {value!r:.60}")
    return dt.date.fromisoformat(value)


def _parse_timestamp(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 timestamp string, got {value!r:.60}")
    return value


def _utc(value: dt.datetime) -> dt.datetime:
    # Voucherify sends UTC with a `Z`; a naive timestamp is read as UTC rather than rejected.
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


Points = Annotated[StrictInt, Field(ge=0, le=MAX_POINTS)]
Id = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)]
Date = Annotated[dt.date, BeforeValidator(_parse_date)]
Timestamp = Annotated[dt.datetime, BeforeValidator(_parse_timestamp), AfterValidator(_utc)]


class _Tolerant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class PendingPoints(_Tolerant):
    """One pending entry (`lopp_…`)."""

    id: Id
    voucher_id: Id | None = None
    campaign_id: StrictStr | None = None
    customer_id: Id | None = None
    order_id: StrictStr | None = None
    points: Points
    activates_at: Date | None = None
    created_at: Timestamp | None = None
    updated_at: Timestamp | None = None


class LoyaltyCardSnapshot(_Tolerant):
    """Voucherify's own view of the card at send time."""

    points: StrictInt | None = None
    balance: StrictInt | None = None
    pending_points: StrictInt | None = None
    next_expiration_date: StrictStr | None = None
    next_expiration_points: StrictInt | None = None


class Voucher(_Tolerant):
    id: Id | None = None
    code: StrictStr | None = None
    campaign_id: StrictStr | None = None
    holder_id: StrictStr | None = None
    loyalty_card: LoyaltyCardSnapshot | None = None
    updated_at: Timestamp | None = None


class Customer(_Tolerant):
    id: Id | None = None
    source_id: StrictStr | None = None


class Campaign(_Tolerant):
    id: StrictStr | None = None
    name: StrictStr | None = None


class Order(_Tolerant):
    id: StrictStr | None = None
    source_id: StrictStr | None = None
    status: StrictStr | None = None


class PendingPointsBalance(_Tolerant):
    """`voucher_pending_points_balance`: the signed change applied to the card's pending total."""

    points: StrictInt | None = None
    total: StrictInt | None = None
    operation_type: StrictStr | None = None


class ActiveBalance(_Tolerant):
    """`balance` in the schema shape of the activated event: the change to the active card."""

    points: StrictInt | None = None
    balance: StrictInt | None = None
    total: StrictInt | None = None


class Transaction(_Tolerant):
    id: StrictStr | None = None
    type: StrictStr | None = None
    created_at: Timestamp | None = None


class PendingPointsEventData(_Tolerant):
    """The event data object shared by added/activated/canceled/updated (both documented activated shapes)."""

    pending_points: PendingPoints
    voucher: Voucher | None = None
    customer: Customer | None = None
    campaign: Campaign | None = None
    order: Order | None = None
    voucher_pending_points_balance: PendingPointsBalance | None = None
    balance: ActiveBalance | None = None
    transaction: Transaction | None = None


class EnvelopeEvent(_Tolerant):
    id: StrictStr | None = None
    type: StrictStr | None = None
    created_at: Timestamp | None = None


class Envelope(_Tolerant):
    """The v2024-01-01 webhook envelope, its `data` parsed separately once the event type is known."""

    id: StrictStr | None = None
    type: StrictStr | None = None
    created_at: Timestamp | None = None
    event: EnvelopeEvent | None = None
