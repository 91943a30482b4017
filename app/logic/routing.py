"""Where a validated delivery goes in the cards stage (pure: no I/O).

A card's input is one partition of the input topic (logic/cards.py, "where a card's input comes from"): the one
Kafka's default partitioner gives its voucher id. A delivery sitting on that partition is folded where it is,
whatever its key: one keyed by its voucher id always does (what the webhook endpoint and `backfill` write), and so
does one keyed otherwise that landed there (about one in PARTITIONS of them). Any other valid delivery is
forwarded: written again to the input topic, keyed by its voucher id, with its bytes and
headers and a `forwarded-from: <topic>/<partition>/<offset>` header. A forwarded copy that is still not on its
card's partition is dead-lettered (`misplaced`), never forwarded again; a delivery whose copy would be over the
record limit is dead-lettered (`copy_too_large`) instead of stopping the worker on a refused record.

A copy also carries the event its value decodes to (header `forwarded-event`, the NormalizedEvent's JSON), so the
stage folding it reads that instead of validating the delivery a second time (three in four deliveries of the
benchmark's input are forwarded; loading the event costs a sixth of decoding the delivery). The value stays the
delivery as sent: it is what a dead letter of the copy holds. Both headers are the service's own: producers of the
input topic do not set them (docs/contract.md). A copy without the event header (too large with it, or written
before it existed, or by another version of the decoder) or with one that does not hold what decoding gives (see
`carried`) is decoded from its value, as before. Bump DECODE_VERSION with any change to what `decode` returns for a
delivery: copies written before are then validated again from their value (a rebuild from the input reads them
all). A change to NormalizedEvent itself bumps its `v`, which old copies then fail to load.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import topics
from app.logic.decode import Accepted, Decoded, Rejected, Skipped
from app.models import codec
from app.models.records import DeadLetterReason, NormalizedEvent
from app.models.webhooks import MAX_ID_LENGTH, MAX_POINTS

DECODE_VERSION = b"1"  # of the event a copy carries: `forwarded-event: <version>:<NormalizedEvent JSON>`
_UTC = dt.timedelta(0)

Headers = Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class Fold:
    event: NormalizedEvent


@dataclass(frozen=True, slots=True)
class Forward:
    event: NormalizedEvent
    key: bytes  # the voucher id
    headers: list[tuple[str, bytes]]  # the delivery's, plus forwarded-from (and forwarded-event)


Route = Fold | Forward | Skipped | Rejected


def route(outcome: Decoded, key: bytes | None, value: bytes | None, headers: Headers | None,
          origin: tuple[str, int, int], *, home: Callable[[bytes], int],
          size: Callable[[bytes, bytes | None, list[tuple[str, bytes]]], int], max_record: int) -> Route:
    """The delivery's `key`, `value`, `headers` and `origin` (topic, partition, offset); `home(key)`: the partition
    of a voucher id; `size(key, value, headers)`: a record's size as the producer counts it."""
    if not isinstance(outcome, Accepted):
        return outcome
    ev = outcome.event
    voucher = ev.voucher_id.encode()
    partition = origin[1]
    if partition == home(voucher):  # on its card's partition, whatever its key: the card's one source
        return Fold(ev)
    if any(k == topics.FORWARDED_FROM for k, _ in headers or ()):  # a copy we wrote, still not on its partition
        return Rejected(DeadLetterReason(code="misplaced", detail=(
            f"forwarded to partition {partition}, its voucher's is {home(voucher)}: the input topic's partition "
            "count differs from PARTITIONS")), ev.step.value)
    copy = [*(h for h in headers or () if h[0] != topics.FORWARDED_EVENT),  # only ever ours
            (topics.FORWARDED_FROM, "/".join(map(str, origin)).encode())]
    carrying = [*copy, (topics.FORWARDED_EVENT, DECODE_VERSION + b":" + codec.dump(ev))]
    if size(voucher, value, carrying) <= max_record:
        return Forward(ev, voucher, carrying)
    if (n := size(voucher, value, copy)) > max_record:
        return Rejected(DeadLetterReason(code="copy_too_large", detail=(
            f"its copy keyed by voucher id would be {n} bytes, limit {max_record} (KAFKA_MAX_RECORD_BYTES)")),
            ev.step.value)
    return Forward(ev, voucher, copy)  # decoded from its value when it is read


def carried(headers: Mapping[str, bytes | None]) -> NormalizedEvent | None:
    """The event a forwarded copy carries (its headers as a dict), or None: absent, from another decoder version,
    or not what decoding gives (then the copy's value is decoded)."""
    raw = headers.get(topics.FORWARDED_EVENT)
    if raw is None or topics.FORWARDED_FROM not in headers:
        return None
    version, _, body = raw.partition(b":")
    if version != DECODE_VERSION:
        return None
    try:
        event = codec.load(NormalizedEvent, body)
    except Exception:  # not what route wrote
        return None
    return event if _as_decoded(event) else None


def _as_decoded(event: NormalizedEvent) -> bool:
    """What `decode` guarantees of an event and the fold relies on, checked because a header is only bytes a
    producer wrote: ids of 1 to MAX_ID_LENGTH characters, points in range, every time in UTC (a naive one could not even be
    compared with the card's)."""
    obs = event.observation
    times = [obs.created_at, obs.updated_at, obs.occurred_at, obs.activated_at]
    if event.card is not None:
        times += [event.card.as_of, event.card.occurred_at]
    return (all(0 < len(i) <= MAX_ID_LENGTH for i in (event.entry_id, event.voucher_id, event.customer_id, obs.customer_id))
            and 0 <= obs.points <= MAX_POINTS
            and all(t is None or t.utcoffset() == _UTC for t in times))
