"""The operator commands against a real broker, a real worker and a stand-in Voucherify API (a real HTTP server
holding the same programme the webhooks describe): backfill, reconcile (and --repair), redrive."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import topics
from devtools import kafka
from devtools.fake_voucherify import FakeVoucherify, Programme
from tests.support import helpers, scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def command(broker, topic_prefix: str, *args: str, env: dict | None = None, timeout: float = 300):
    """`python -m app <args>` with the test's broker and namespace; (exit code, last stdout line as JSON or text,
    whole stdout)."""
    proc = subprocess.run(
        [sys.executable, "-m", "app", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap, "TOPIC_PREFIX": topic_prefix,
             "LOG_LEVEL": "warning", **(env or {})})
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    try:
        parsed = json.loads(last)
    except ValueError:
        parsed = last
    return proc.returncode, parsed, proc.stdout + proc.stderr


def pending_view(records) -> dict[str, tuple]:
    return {c: (r["pending_points"], r["next_activation"]) for c, r in helpers.customer_records(records).items()}


def valid_deliveries(sc):
    return [d for d in sc.deliveries if d.kind in ("valid", "duplicate")]


def test_backfill__an_empty_service_gets_every_pending_entry_and_webhooks_or_a_second_run_change_nothing_twice(
    broker, worker_factory, topic_prefix, tmp_path
):
    sc = scenario.build(seed=41, customers=25)
    expected = scenario.expected_customers(sc)
    programme = Programme(rate_limit_every=4, fail_next=[503, 502])  # rate limited and flaky, as in real life
    programme.add(sc.entries)
    w = worker_factory().wait_ready()
    state = topic_prefix + topics.CUSTOMER_POINT_STATE.name
    with FakeVoucherify(programme) as api:
        # Given an empty service, when the programme's pending entries are backfilled
        rc, out, log = command(broker, topic_prefix, "backfill", "--state", str(tmp_path / "s.json"), env=api.env())
        assert rc == 0, log
        pending = programme.pending()
        assert out["entries"] == len(pending) and out["rate_limited"] > 0 and out["retries"] >= 2, out
        # then every customer's pending points and next activation are what the webhooks would give
        want = {c: (e["pending_points"], e["next_activation"]) for c, e in expected.items() if e["pending_points"]}
        records = kafka.read_until(broker.bootstrap, state, lambda rs: pending_view(rs) == want, timeout=120)
        assert pending_view(records) == want
        # and records arrived with the `source: backfill` header, keyed by voucher
        inputs = kafka.read_until(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name,
                                  lambda rs: len(rs) >= len(pending), timeout=30)
        assert all(dict(r.headers)["source"] == b"backfill" and r.key.decode().startswith("v_") for r in inputs)

        # When the webhooks then arrive (all of them, duplicates included), and the backfill runs again
        helpers.feed(broker.bootstrap, topic_prefix, valid_deliveries(sc))
        got = helpers.wait_for_state(broker.bootstrap, topic_prefix, expected, timeout=180)
        assert {c: scenario.normalize_customer(r) for c, r in got.items()} == expected
        n_before = len(kafka.read_until(broker.bootstrap, state, lambda rs: False, timeout=3))
        rc, out, log = command(broker, topic_prefix, "backfill", "--state", str(tmp_path / "s2.json"),
                               env=api.env())
        assert rc == 0 and out["entries"] == len(pending), log
    # Then nothing changes: same states, and no customer record published again
    got = helpers.wait_for_state(broker.bootstrap, topic_prefix, expected, timeout=60)
    assert {c: scenario.normalize_customer(r) for c, r in got.items()} == expected
    assert helpers.views_mismatches(w, expected) == []
    after = kafka.read_until(broker.bootstrap, state, lambda rs: False, timeout=3)
    assert len(after) == n_before


def test_backfill__a_crash_mid_way_then_resume_loses_nothing(broker, worker_factory, topic_prefix, tmp_path):
    sc = scenario.build(seed=43, customers=200)
    programme = Programme()
    programme.add(sc.entries)
    pending = programme.pending()
    assert len(pending) > 300  # more than three pages
    worker_factory().wait_ready()
    state_file = tmp_path / "state.json"
    with FakeVoucherify(programme) as api:
        # Given a backfill that stops after two pages: the 4th call (campaigns, page, page, page) answers 429 and
        # no retry is allowed, so the command fails there
        crash_env = {**api.env(), "VOUCHERIFY_MAX_RETRIES": "0"}
        programme.rate_limit_every = 4
        rc, out, log = command(broker, topic_prefix, "backfill", "--state", str(state_file), env=crash_env)
        assert rc != 0 and "429" in log, log
        saved = json.loads(state_file.read_text())
        sent = sum(s["entries"] for s in saved.values())
        assert 0 < sent < len(pending), saved
        # When it is resumed
        programme.rate_limit_every = 0
        rc, out, log = command(broker, topic_prefix, "backfill", "--state", str(state_file), "--resume",
                               env=api.env())
        assert rc == 0, log
        assert sent + out["entries"] == len(pending), (sent, out)
    # Then every pending entry reached the input topic, and the state is exact
    inputs = kafka.read_until(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name,
                              lambda rs: len({json.loads(r.value)["pending_points"]["id"] for r in rs})
                              >= len(pending), timeout=60)
    assert {json.loads(r.value)["pending_points"]["id"] for r in inputs} == {e.id for e in pending}
    expected = scenario.expected_customers(sc)
    want = {c: (e["pending_points"], e["next_activation"]) for c, e in expected.items() if e["pending_points"]}
    records = kafka.read_until(broker.bootstrap, topic_prefix + topics.CUSTOMER_POINT_STATE.name,
                               lambda rs: pending_view(rs) == want, timeout=120)
    assert pending_view(records) == want


def test_reconcile__finds_exactly_the_cards_whose_deliveries_were_lost_and_repair_fixes_them(
    broker, worker_factory, topic_prefix, tmp_path
):
    sc = scenario.build(seed=47, customers=25)
    programme = Programme()
    programme.add(sc.entries)
    # Given lost deliveries: every delivery of three PENDING entries on three cards, and the activation of one
    # entry whose activation day is long past (so it is overdue here)
    by_card: dict[str, list] = {}
    for e in programme.pending():
        by_card.setdefault(e.voucher_id, []).append(e)
    lost_added = [entries[0] for _, entries in sorted(by_card.items())[:3]]
    activated = [e for e in sc.entries if e.status == "ACTIVATED" and e.voucher_id not in by_card]
    lost_activation = activated[0]
    dropped = {e.id for e in lost_added}

    def kept(d) -> bool:
        body = json.loads(d.value)
        data = body.get("data", body)
        pp = data["pending_points"]["id"]
        etype = dict(d.headers).get("event-type", b"").decode() or body.get("type", "")
        etype = (body.get("event") or {}).get("type") or etype
        return pp not in dropped and not (pp == lost_activation.id and etype.lower().endswith("activated"))

    deliveries = valid_deliveries(sc)
    w = worker_factory().wait_ready()
    helpers.feed(broker.bootstrap, topic_prefix, [d for d in deliveries if kept(d)])
    settled = scenario.expected_customers(sc)
    want_drifted = {e.voucher_id for e in lost_added} | {lost_activation.voucher_id}

    with FakeVoucherify(programme) as api:
        report = tmp_path / "report.json"

        def reconcile():
            rc, _, log = command(broker, topic_prefix, "reconcile", "--worker", w.url, "--output", str(report),
                                 env=api.env())
            return rc, {r["voucher_id"]: r for r in json.loads(report.read_text())}, log

        # When reconcile runs, once the worker has processed what reached it (until then more cards differ)
        def settled_report():
            result = reconcile()
            return result if {v for v, x in result[1].items() if x["drifted"]} == want_drifted else None

        rc, rows, log = helpers.wait_until(settled_report, timeout=180, interval=1,
                                           what="reconcile reports only the cards with lost deliveries")
        drifted = {v: r for v, r in rows.items() if r["drifted"]}
        # Then it reports exactly those cards, with the lost entries' ids, and exits 1
        assert rc == 1, log
        assert set(drifted) == want_drifted, drifted
        for e in lost_added:
            assert drifted[e.voucher_id]["missing_here"] == [e.id]
            assert drifted[e.voucher_id]["difference"] == e.points
        assert drifted[lost_activation.voucher_id]["extra_here"] == [lost_activation.id]
        assert lost_activation.id in drifted[lost_activation.voucher_id]["overdue"]
        assert "drifted" in log and lost_added[0].voucher_id in log  # the terminal table

        # When --repair runs: the lost added entries are backfilled, card by card
        rc, out, log = command(broker, topic_prefix, "reconcile", "--worker", w.url, "--repair", env=api.env())
        pending_on_them = sum(1 for e in programme.pending() if e.voucher_id in {x.voucher_id for x in lost_added})
        assert f"repair: backfilled {pending_on_them} entries of {len(lost_added)} cards;" in log, log

        # Then those cards are right again, and only the lost activation (not repairable from the API, which
        # lists PENDING entries only) is still reported
        for e in lost_added:
            want = settled[e.customer_id]["vouchers"][e.voucher_id]["pending_points"]
            helpers.wait_until(lambda e=e, want=want: w.get(f"/vouchers/{e.voucher_id}")[1]["pending_points"] == want,
                               timeout=60, what=f"{e.voucher_id} repaired")
        rc, rows, log = reconcile()
        assert rc == 1 and {v for v, r in rows.items() if r["drifted"]} == {lost_activation.voucher_id}, log


def test_redrive__puts_back_the_dead_letters_of_one_code_once_and_after_the_fix_they_are_processed(
    broker, worker_factory, topic_prefix
):
    sc = scenario.build(seed=53, customers=6)
    expected = scenario.expected_customers(sc)
    deliveries = valid_deliveries(sc)
    junk = [(b"k", b"{not json", []), (b"k", b"[]", [])]  # stays invalid
    # Given a worker whose limit was too strict: every valid delivery is dead-lettered as too_large
    strict = worker_factory("strict", MAX_DELIVERY_BYTES="1024").wait_ready()
    helpers.feed(broker.bootstrap, topic_prefix, deliveries)
    kafka.produce(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name, junk)
    dlq = topic_prefix + topics.DEAD_LETTERS.name
    big = [d for d in deliveries if len(d.value) > 1024]
    records = kafka.read_until(broker.bootstrap, dlq, lambda rs: len(rs) >= len(big) + len(junk), timeout=120)
    codes = [dict(r.headers)["dlq-code"] for r in records]
    assert codes.count(b"too_large") == len(big) > len(deliveries) // 2, codes
    strict.stop()

    # When the limit is fixed and the too_large dead letters are re-driven (a dry run first)
    worker_factory("fixed").wait_ready()
    rc, out, log = command(broker, topic_prefix, "redrive", "--code", "too_large", "--dry-run")
    assert rc == 0 and out["would_redrive"] == len(big) and out["redriven"] == 0, log
    rc, out, log = command(broker, topic_prefix, "redrive", "--code", "too_large")
    assert rc == 0 and out["redriven"] == len(big) and out["by_code"] == {"too_large": len(big)}, log

    # Then they are processed: the state is exact; and a second run sends nothing again
    got = helpers.wait_for_state(broker.bootstrap, topic_prefix, expected, timeout=180)
    assert {c: scenario.normalize_customer(r) for c, r in got.items()} == expected
    rc, out, log = command(broker, topic_prefix, "redrive", "--code", "too_large")
    assert rc == 0 and out["redriven"] == 0 and out["already_redriven"] == len(big), log
    inputs = kafka.read_until(broker.bootstrap, topic_prefix + topics.WEBHOOKS.name, lambda rs: False, timeout=3)
    # (a re-driven delivery keeps its key: one not keyed by its voucher id is then forwarded, a copy we leave out)
    redriven = [r for r in inputs if "redriven-from" in dict(r.headers or ()) and
                topics.FORWARDED_FROM not in dict(r.headers or ())]
    assert len(redriven) == len(big)  # once each, and only that code: the junk is still dead
    assert not any(k.startswith("dlq-") for r in redriven for k in dict(r.headers))
    # A delivery still invalid after a re-drive is dead-lettered again and left alone by the next run
    rc, out, log = command(broker, topic_prefix, "redrive", "--code", "invalid_json")
    assert rc == 0 and out["redriven"] == 1, log
    kafka.read_until(broker.bootstrap, dlq, lambda rs: any("redriven-from" in r.headers for r in rs), timeout=60)
    rc, out, log = command(broker, topic_prefix, "redrive", "--code", "invalid_json")
    assert rc == 0 and out["redriven"] == 0 and out["failed_again"] == 1 and out["already_redriven"] == 1, log
