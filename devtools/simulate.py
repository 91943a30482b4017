"""A realistic delivery log generated from a known truth (used by the tests and the benchmarks).

The generator decides each entry's lifecycle first (the truth), then renders every lifecycle event as one or more
deliveries in the forms Voucherify uses (project webhook envelope, distribution envelope, raw payload with an
`event-type` header, upper-case `EVENTS.` names, both activated shapes), adds duplicates and shuffles. The
expectation is computed from the truth alone, never from the service's code.
"""
from __future__ import annotations

import copy
import datetime as dt
import json
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

STEPS = ("added", "updated", "activated", "canceled")
T0 = dt.datetime(2025, 3, 1, tzinfo=dt.timezone.utc)


def iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


@dataclass
class Event:
    step: str
    at: dt.datetime
    points: int
    card: dict  # voucher.loyalty_card snapshot sent with this event


@dataclass
class Entry:
    id: str
    voucher_id: str
    customer_id: str
    campaign_id: str
    order_id: str
    created_at: dt.datetime
    activates_at: dt.date
    events: list[Event] = field(default_factory=list)

    @property
    def final(self) -> Event | None:
        return next((e for e in self.events if e.step in ("activated", "canceled")), None)

    @property
    def status(self) -> str:
        f = self.final
        return "PENDING" if f is None else ("ACTIVATED" if f.step == "activated" else "CANCELED")

    @property
    def points(self) -> int:
        return self.events[-1].points


@dataclass
class Delivery:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    kind: str  # "valid" | "duplicate" | "skipped" | "malformed"
    voucher_id: str | None = None  # of a valid delivery (or its duplicate)


@dataclass
class Scenario:
    entries: list[Entry]
    deliveries: list[Delivery]

    @property
    def malformed_count(self) -> int:
        return sum(d.kind == "malformed" for d in self.deliveries)

    @property
    def customers(self) -> set[str]:
        return {e.customer_id for e in self.entries}


class _Clock:
    """Globally distinct event times (at the millisecond resolution deliveries carry): 'newest' is never a tie.

    A time is its base's minute plus a millisecond count unique within that minute, so it stays after anything
    earlier in that entry's life as long as the base is at least a minute later.
    """

    def __init__(self) -> None:
        self.used: dict[dt.datetime, int] = {}

    def at(self, base: dt.datetime) -> dt.datetime:
        minute = base.replace(second=0, microsecond=0)
        n = self.used[minute] = self.used.get(minute, 0) + 1
        assert n < 60_000, "more than 60,000 events in one minute"
        return minute + dt.timedelta(milliseconds=n)


def build(seed: int = 7, customers: int = 40, max_cards: int = 3, max_entries: int = 8) -> Scenario:
    rnd = random.Random(seed)
    clock = _Clock()
    entries: list[Entry] = []
    n = 0
    for c in range(customers):
        cust = f"cust_{seed}_{c:04d}"
        for v in range(rnd.randint(1, max_cards)):
            voucher = f"v_{seed}_{c:04d}_{v}"
            campaign = f"camp_{seed}_{v % 2}"
            for _ in range(rnd.randint(2, max_entries)):
                n += 1
                created = clock.at(T0 + dt.timedelta(minutes=rnd.randint(0, 60 * 24 * 20)))
                entry = Entry(
                    id=f"lopp_{seed}_{n:06d}", voucher_id=voucher, customer_id=cust, campaign_id=campaign,
                    order_id=f"ord_{seed}_{n:06d}", created_at=created,
                    activates_at=(created + dt.timedelta(days=rnd.randint(1, 30))).date(),
                )
                pts = rnd.randint(1, 500)
                entry.events.append(Event("added", created, pts, {}))
                t = created
                for _ in range(rnd.choice((0, 0, 1, 2))):
                    t = clock.at(t + dt.timedelta(hours=rnd.randint(1, 12)))
                    pts = rnd.randint(0, 500)
                    entry.events.append(Event("updated", t, pts, {}))
                fate = rnd.random()
                if fate < 0.6:
                    due = dt.datetime.combine(entry.activates_at, dt.time(), dt.timezone.utc)
                    early = rnd.random() < 0.3
                    at = t + dt.timedelta(hours=1) if early else due + dt.timedelta(minutes=rnd.randint(0, 30))
                    entry.events.append(Event("activated", clock.at(max(at, t + dt.timedelta(minutes=1))), pts, {}))
                elif fate < 0.75:
                    entry.events.append(Event("canceled", clock.at(t + dt.timedelta(hours=2)), pts, {}))
                for ev in entry.events:
                    ev.card = {"points": rnd.randint(0, 5000), "balance": rnd.randint(0, 500),
                               "pending_points": rnd.randint(0, 2000)}
                entries.append(entry)

    deliveries: list[Delivery] = []
    for entry in entries:
        for ev in entry.events:
            forms = [rnd.choice(FORMS)]
            if rnd.random() < 0.15:  # retried delivery: the same bytes again
                forms.append(forms[0])
            if rnd.random() < 0.05:  # also configured as a distribution, or re-sent by hand in another form
                forms.append(rnd.choice(FORMS))
            for i, form in enumerate(forms):
                value, headers = render(entry, ev, form, rnd)
                key = rnd.choice((entry.voucher_id.encode(), None, entry.customer_id.encode(), b"whatever"))
                deliveries.append(Delivery(key, value, headers, "valid" if i == 0 else "duplicate",
                                               entry.voucher_id))
    deliveries += skipped_deliveries()
    deliveries += malformed_deliveries(entries, rnd)
    rnd.shuffle(deliveries)
    return Scenario(entries, deliveries)


FORMS = ("webhook", "distribution", "raw", "raw_upper", "webhook_with_header")


def event_data(entry: Entry, ev: Event, shape: str) -> dict:
    pp = {
        "id": entry.id, "voucher_id": entry.voucher_id, "campaign_id": entry.campaign_id,
        "customer_id": entry.customer_id, "order_id": entry.order_id, "points": ev.points,
        "activates_at": entry.activates_at.isoformat(),
        "details": {"earning_rule": {"id": "ern_x"}, "event": {"type": "customer.order.paid"}},
        "created_at": iso(entry.created_at),
    }
    if ev.step != "added":
        pp["updated_at"] = iso(ev.at)
    data = {
        "customer": {"id": entry.customer_id, "object": "customer", "metadata": {}},
        "campaign": {"id": entry.campaign_id, "name": "Loyalty programme", "campaign_type": "LOYALTY_PROGRAM"},
        "voucher": {
            "id": entry.voucher_id, "code": entry.voucher_id[-6:], "type": "LOYALTY_CARD",
            "campaign_id": entry.campaign_id, "holder_id": entry.customer_id,
            "loyalty_card": dict(ev.card), "updated_at": iso(ev.at), "object": "voucher",
        },
        "order": {"id": entry.order_id, "status": "PAID", "amount": 2499, "object": "order"},
        "pending_points": pp,
    }
    if ev.step == "activated" and shape == "schema":
        data["balance"] = {"points": ev.points, "balance": ev.card["balance"], "total": ev.card["points"],
                           "object": "balance", "type": "loyalty_card"}
        data["transaction"] = {"id": "lcte_x", "type": "PENDING_POINTS_ACTIVATION", "created_at": iso(ev.at),
                               "details": {"pending_points": copy.deepcopy(pp)}}
    else:
        data["voucher_pending_points_balance"] = {
            "points": ev.points if ev.step != "canceled" else -ev.points, "total": ev.card["pending_points"],
            "object": "balance", "operation_type": "AUTOMATIC",
            "related_object": {"type": "voucher", "id": entry.voucher_id},
        }
    return data


def render(entry: Entry, ev: Event, form: str, rnd: random.Random) -> tuple[bytes, list[tuple[str, bytes]]]:
    data = event_data(entry, ev, rnd.choice(("schema", "example")))
    project_type = f"voucher.loyalty_card.pending_points.{ev.step}"
    distr_type = f"customer.voucher.loyalty_card.pending_points.{ev.step}"
    if form == "raw":
        return json.dumps(data).encode(), [("event-type", rnd.choice((project_type, distr_type)).encode())]
    if form == "raw_upper":
        return json.dumps(data).encode(), [("event-type", f"EVENTS.{project_type.upper()}".encode())]
    distribution = form == "distribution"
    etype = distr_type if distribution else project_type
    envelope = {
        "id": f"whs_{rnd.getrandbits(48):x}", "project_id": "proj_x", "created_at": iso(ev.at),
        "type": "My pending points distribution" if distribution else etype,
        "data": data,
        "source": {"id": "distr_x" if distribution else "wh_x",
                   "object": "distribution" if distribution else "webhook", "target_url": "https://example.test"},
        "event": {"id": f"evcus_{entry.id}_{ev.step}", "type": etype, "created_at": iso(ev.at),
                  "entity_id": entry.customer_id, "group_id": "v-x", "event_source": {"channel": "API"}},
    }
    headers = [("event-type", etype.encode())] if form == "webhook_with_header" else []
    return json.dumps(envelope).encode(), headers


def skipped_deliveries() -> list[Delivery]:
    """Well-formed deliveries of other Voucherify event types: skipped, not dead-lettered."""
    other = {"id": "whs_o", "type": "voucher.published", "created_at": "2025-03-01T00:00:00.000Z",
             "data": {"voucher": {"id": "v_other"}}, "event": {"id": "ev_o", "type": "voucher.published"}}
    return [
        Delivery(None, json.dumps(other).encode(), [], "skipped"),
        Delivery(None, b'{"customer": {"id": "cust_o"}}', [("event-type", b"customer.order.paid")], "skipped"),
        Delivery(None, b'{"whatever": 1}', [("event-type", b"voucher.loyalty_card.points_added")], "skipped"),
    ]


def malformed_deliveries(entries: list[Entry], rnd: random.Random) -> list[Delivery]:
    """One delivery per bad-input class; several reuse real entry ids to prove they change nothing."""
    victim = entries[0]
    base_event = victim.events[0]
    added = "voucher.loyalty_card.pending_points.added"

    def with_pp(**changes) -> bytes:
        data = event_data(victim, base_event, "example")
        for k, v in changes.items():
            if v is _DROP:
                data["pending_points"].pop(k, None)
            else:
                data["pending_points"][k] = v
        return json.dumps({"type": added, "data": data, "event": {"type": added}}).encode()

    no_customer = event_data(victim, base_event, "example")
    no_customer["pending_points"].pop("customer_id")
    no_customer.pop("customer")
    no_voucher = event_data(victim, base_event, "example")
    no_voucher["pending_points"].pop("voucher_id")
    no_voucher.pop("voucher")
    bad = [
        (b"this is not json", []),
        (bytes(range(256)) * 4, []),
        (b"[1, 2, 3]", []),
        (b'"a string"', []),
        (b"null", []),
        (json.dumps(event_data(victim, base_event, "example")).encode(), []),  # raw payload, no type
        (with_pp(id=_DROP), []),
        (json.dumps({"type": added, "data": no_customer}).encode(), []),
        (json.dumps(no_voucher).encode(), [("event-type", added.encode())]),
        (with_pp(points=-5), []),
        (with_pp(points=1.5), []),
        (with_pp(points="10"), []),
        (with_pp(points=2**70), []),
        (with_pp(points=_DROP), []),
        (with_pp(activates_at="tomorrow"), []),
        (with_pp(activates_at=20250301), []),
        (with_pp(activates_at="2025-02-30"), []),
        (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, []),  # nested far past any sane depth
        (b'{"type": "' + added.encode() + b'", "data": {"pending_points": {"id": "lopp_big", "points": 1, "x": "'
         + b"x" * 200_000 + b'"}}}', []),  # over the test worker's size limit
        (None, []),  # tombstone
        (json.dumps({"type": added, "data": {"pending_points": "oops"}}).encode(), []),
        (json.dumps(event_data(victim, base_event, "example")).encode(), [("event-type", b"\xff\xfe")]),
    ]
    # A record needs a key or a value: the tombstone gets a key.
    return [Delivery(b"k" if v is None else rnd.choice((None, b"k")), v, h, "malformed") for v, h in bad]


_DROP = object()


# ----- the reference model: expected outputs, computed from the truth only -------------------------------------


def fresh_added(tag: str, i: int, at: dt.datetime | None = None, entries_per_card: int = 1) -> Delivery:
    """One `added` envelope for a new entry on its own card and customer (card i // entries_per_card): every
    delivery changes exactly one customer's state, so its output can be matched to it."""
    card = i // entries_per_card
    at = at or T0
    entry = Entry(
        id=f"lopp_{tag}_{i:08d}", voucher_id=f"v_{tag}_{card:08d}", customer_id=f"cust_{tag}_{card:08d}",
        campaign_id=f"camp_{tag}", order_id=f"ord_{tag}_{i:08d}", created_at=at,
        activates_at=(at + dt.timedelta(days=7)).date(),
    )
    ev = Event("added", at, 10 + i % 90, {"points": 100, "balance": 10, "pending_points": 10 + i % 90})
    etype = "voucher.loyalty_card.pending_points.added"
    envelope = {"id": f"whs_{tag}_{i}", "created_at": iso(at), "type": etype, "data": event_data(entry, ev, "example"),
                "event": {"id": f"evcus_{tag}_{i}", "type": etype, "created_at": iso(at)}}
    return Delivery(entry.voucher_id.encode(), json.dumps(envelope).encode(), [], "valid", entry.voucher_id)


def preloaded_cards(n_cards: int, per_card: int = 10, tag: str = "seed"):
    """(voucher id, value) for `n_cards` cards of `per_card` pending entries each, in the `cards` table's format
    before entry rows (one `CardState` document per card, every entry inside): for filling a changelog directly
    (recovery tests and benchmarks of large state, which also exercise the conversion on read)."""
    from app.logic import entries
    from app.logic.cards import _owner_of
    from app.logic.decode import decode
    from app.models import codec
    from app.models.records import CardState, EntryState

    card = None
    for i in range(per_card):  # one template card, folded the way the old version folded it
        ev = decode(fresh_added(tag, i, entries_per_card=per_card).value, {}, max_bytes=1 << 20).event
        if card is None:
            card = CardState(voucher_id=ev.voucher_id, owner=_owner_of(ev), snapshot=ev.card)
        entry = entries.merge(EntryState(id=ev.entry_id), ev.step, ev.observation)
        card = card.model_copy(update={"entries": {**card.entries, ev.entry_id: entry}, "version": i + 1})
    template = codec.dump(card).decode()  # last_offset -1: nothing is a replay
    ids = re.compile(rf"\b(v|cust|lopp|ord)_{tag}_(\d{{8}})")
    for c in range(n_cards):
        def sub(m: re.Match, c: int = c) -> str:
            kind, n = m.group(1), int(m.group(2))
            return f"{kind}_{tag}_{c:08d}" if kind in ("v", "cust") else f"{kind}_{tag}_{c * per_card + n:08d}"

        yield f"v_{tag}_{c:08d}".encode(), ids.sub(sub, template).encode()


def long_card(n: int, tag: str = "long", start: dt.datetime = dt.datetime(2021, 1, 1, tzinfo=dt.timezone.utc)
              ) -> list[Entry]:
    """One card's history: an order an hour, every fifth entry canceled a day later, the others activated after
    seven days (each Entry holds its added and final events)."""
    out = []
    for i in range(n):
        created = start + dt.timedelta(hours=i)
        e = Entry(id=f"lopp_{tag}_{i:06d}", voucher_id=f"v_{tag}_card", customer_id=f"cust_{tag}_card",
                  campaign_id=f"camp_{tag}", order_id=f"ord_{tag}_{i:06d}", created_at=created,
                  activates_at=(created + dt.timedelta(days=7)).date())
        pts = 10 + i % 90
        e.events.append(Event("added", created, pts, {"points": i, "balance": i, "pending_points": pts}))
        final = ("canceled", created + dt.timedelta(days=1)) if i % 5 == 4 else ("activated",
                                                                                  created + dt.timedelta(days=7))
        e.events.append(Event(final[0], final[1], pts, {"points": i, "balance": i, "pending_points": 0}))
        out.append(e)
    return out


def timeline(entries: list[Entry]) -> list[tuple[Entry, Event]]:
    """Every event of these entries in event-time order, the order Voucherify sends them (give or take retries)."""
    return sorted(((e, ev) for e in entries for ev in e.events), key=lambda p: (p[1].at, p[0].id))


def totals(fed: list[tuple[Entry, Event]]) -> tuple[int, int, int]:
    """(pending, activated, canceled) points once these events were applied, whatever their order."""
    last: dict[str, tuple[str, int]] = {}
    for e, ev in fed:
        if ev.step in ("activated", "canceled") or e.id not in last:
            last[e.id] = (ev.step, ev.points)
    return tuple(sum(p for step, p in last.values() if step == want)  # type: ignore[return-value]
                 for want in ("added", "activated", "canceled"))


def entry_totals(entries: Iterable[Entry]) -> tuple[int, int, int]:
    """(pending, activated, canceled) points of these entries once all their events are applied: the generator's
    own truth, which the tests and the benchmark check our outputs against."""
    sums = [0, 0, 0]
    for e in entries:
        sums[("PENDING", "ACTIVATED", "CANCELED").index(e.status)] += e.points
    return sums[0], sums[1], sums[2]


def envelope(entry: Entry, ev: Event) -> Delivery:
    """`ev` of `entry` as a v2024-01-01 webhook envelope keyed by the voucher id."""
    etype = f"voucher.loyalty_card.pending_points.{ev.step}"
    body = {"id": f"whs_{entry.id}_{ev.step}", "created_at": iso(ev.at), "type": etype,
            "data": event_data(entry, ev, "example"),
            "event": {"id": f"evcus_{entry.id}_{ev.step}", "type": etype, "created_at": iso(ev.at)}}
    return Delivery(entry.voucher_id.encode(), json.dumps(body).encode(), [], "valid", entry.voucher_id)
