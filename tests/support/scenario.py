"""Expected outputs of a generated scenario (`devtools.simulate`), computed from its truth alone: an independent
reference model, never the service's code."""
from __future__ import annotations

import datetime as dt

from devtools.simulate import (  # noqa: F401  (the tests use the generator through this module)
    FORMS, STEPS, T0, Delivery, Entry, Event, Scenario, build, entry_totals, event_data, iso, malformed_deliveries,
    render, skipped_deliveries,
)


def _last_card(entries: list[Entry]) -> dict:
    newest = max((ev for e in entries for ev in e.events), key=lambda ev: ev.at)
    return dict(newest.card)


def _sums(entries: list[Entry]) -> dict:
    return dict(zip(("pending_points", "activated_points", "canceled_points"), entry_totals(entries)))


def _next_activation(entries: list[Entry]) -> dict | None:
    pending = [e for e in entries if e.status == "PENDING"]
    if not pending:
        return None
    day = min(e.activates_at for e in pending)
    return {"date": day.isoformat(), "points": sum(e.points for e in pending if e.activates_at == day)}


def expected_voucher(entries: list[Entry]) -> dict:
    first = entries[0]
    return {"voucher_id": first.voucher_id, "campaign_id": first.campaign_id, **_sums(entries),
            "next_activation": _next_activation(entries), "card": _last_card(entries)}


def expected_customers(scenario: Scenario) -> dict[str, dict]:
    by_customer: dict[str, dict[str, list[Entry]]] = {}
    for e in scenario.entries:
        by_customer.setdefault(e.customer_id, {}).setdefault(e.voucher_id, []).append(e)
    out = {}
    for cust, cards in by_customer.items():
        all_entries = [e for es in cards.values() for e in es]
        out[cust] = {
            "schema_version": 1, "customer_id": cust, **_sums(all_entries),
            "next_activation": _next_activation(all_entries),
            "vouchers": {vid: expected_voucher(es) for vid, es in sorted(cards.items())},
            "updated_at": max(ev.at for e in all_entries for ev in e.events),
        }
    return out


def expected_activations(scenario: Scenario) -> dict[str, dict]:
    out = {}
    for e in scenario.entries:
        if e.status != "ACTIVATED":
            continue
        act = e.final
        out[e.id] = {
            "pending_points_id": e.id, "voucher_id": e.voucher_id, "customer_id": e.customer_id,
            "order_id": e.order_id, "points": act.points, "activates_at": e.activates_at.isoformat(),
            "activated_early": act.at.date() < e.activates_at,
            "pending_seconds": (act.at - e.created_at).total_seconds(),
        }
    return out


def normalize_customer(record: dict) -> dict:
    """Make a published record comparable with the expectation (timestamps as datetimes)."""
    out = dict(record)
    if out.get("updated_at"):
        out["updated_at"] = dt.datetime.fromisoformat(out["updated_at"].replace("Z", "+00:00"))
    return out
