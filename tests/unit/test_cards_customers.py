"""Card and customer folding: what gets published, replays after a crash, cards changing hands."""
from __future__ import annotations

import datetime as dt

from app.logic import cards, customers
from app.models import codec
from app.models.records import CardSnapshot, NormalizedEvent, Observation, Step

UTC = dt.timezone.utc
T = dt.datetime(2025, 3, 1, tzinfo=UTC)
H72 = dt.timedelta(hours=72)


class _Card:
    """cards.apply / apply_batch with the entry rows kept in a dict, returning (card, outputs) as a test reads."""

    def __init__(self):
        self.rows: dict = {}  # the entries table: (voucher id, entry id) -> row

    def apply_batch(self, card, items, tz=UTC):
        voucher = items[0][0].voucher_id
        res = cards.apply_batch(card, items, lambda eid: self.rows.get((voucher, eid)), tz, H72)
        for eid, row in res.rows.items():
            self.rows[(voucher, eid)] = row
        return res.card, res.outputs

    def apply(self, card, ev, offset, tz=UTC):
        return self.apply_batch(card, [(ev, offset)], tz)


def event(step, entry="lopp_1", points=10, customer="c1", at=T, voucher="v1"):
    return NormalizedEvent(
        step=step, entry_id=entry, voucher_id=voucher, customer_id=customer, campaign_id="camp",
        observation=Observation(points=points, activates_at=dt.date(2025, 3, 5), created_at=T,
                                updated_at=None if step is Step.ADDED else at, customer_id=customer,
                                activated_at=at if step is Step.ACTIVATED else None),
        card=CardSnapshot(points=1, balance=2, pending_points=3, as_of=at),
    )


def test_apply__first_event_publishes_a_summary_and_a_duplicate_publishes_nothing():
    c = _Card()
    card, out = c.apply(None, event(Step.ADDED), 0, UTC)
    assert [s.points.pending_points for s in out.summaries] == [10] and not out.activations
    again, out = c.apply(card, event(Step.ADDED), 1, UTC)
    assert again is card and not out.summaries and not out.activations


def test_apply__join_is_published_once_whichever_side_comes_first():
    for first, second in ((Step.ADDED, Step.ACTIVATED), (Step.ACTIVATED, Step.ADDED)):
        c = _Card()
        card, out1 = c.apply(None, event(first, at=T + dt.timedelta(days=4)), 0, UTC)
        card, out2 = c.apply(card, event(second, at=T + dt.timedelta(days=4)), 1, UTC)
        card, out3 = c.apply(card, event(second, at=T + dt.timedelta(days=4)), 2, UTC)
        assert (len(out1.activations), len(out2.activations), len(out3.activations)) == (0, 1, 0)
        assert out2.activations[0].activated_early is False  # due 2025-03-05, activated that day


def test_apply__replayed_offset_republishes_current_outputs_without_changing_state():
    c = _Card()
    card, _ = c.apply(None, event(Step.ADDED), 5, UTC)
    card, out = c.apply(card, event(Step.ACTIVATED, at=T + dt.timedelta(days=1)), 6, UTC)
    replayed, again = c.apply(card, event(Step.ACTIVATED, at=T + dt.timedelta(days=1)), 6, UTC)
    assert replayed is card
    assert again.summaries == [cards.summary(card)] and again.activations == out.activations


def test_apply__a_card_changing_hands_is_removed_from_the_old_owner():
    c = _Card()
    card, _ = c.apply(None, event(Step.ADDED, customer="c1", at=T), 0, UTC)
    card, out = c.apply(card, event(Step.ADDED, entry="lopp_2", customer="c2", at=T + dt.timedelta(1)), 1, UTC)
    assert [(s.customer_id, s.removed) for s in out.summaries] == [("c1", True), ("c2", False)]
    c1, rec = customers.apply(None, cards.summary(c.apply(None, event(Step.ADDED), 0, UTC)[0]), 0)
    c1, rec = customers.apply(c1, out.summaries[0], 1)
    assert rec is not None and rec.vouchers == {} and rec.pending_points == 0


def test_customers__stale_or_duplicate_summaries_change_nothing_but_publish_the_record_again():
    # A summary that changes nothing may repeat one whose record a crash lost (the cards stage publishes it again,
    # through the topic after a rebalance): the current record is published again, the state unchanged.
    c = _Card()
    card1, _ = c.apply(None, event(Step.ADDED), 0, UTC)
    card2, _ = c.apply(card1, event(Step.UPDATED, points=3, at=T + dt.timedelta(hours=1)), 1, UTC)
    state, rec = customers.apply(None, cards.summary(card2), 10)
    assert rec.pending_points == 3
    same, again = customers.apply(state, cards.summary(card1), 11)  # older version arrives late
    assert again == rec and customers.record(same).pending_points == 3 and same.cards == state.cards
    same, again = customers.apply(state, cards.summary(card2), 12)
    assert again == rec and same.cards == state.cards


def test_customers__a_summary_folded_where_its_card_was_repeats_the_record_when_it_changes_nothing():
    # A summary folded by the worker that folded its card has no offset on pending-points-card-updates. One that
    # changes nothing repeats one the cards stage published again after a crash that may have lost the record.
    c = _Card()
    card1, _ = c.apply(None, event(Step.ADDED), 0, UTC)
    card2, _ = c.apply(card1, event(Step.UPDATED, points=3, at=T + dt.timedelta(hours=1)), 1, UTC)
    state, rec = customers.apply(None, cards.summary(card2), None)
    assert rec.pending_points == 3 and state.last_offset == -1  # no topic offset to remember
    for repeated in (card2, card1):  # the same version again, or an older one (a redo cut into other batches)
        again, rec = customers.apply(state, cards.summary(repeated), None)
        assert again is state and rec == customers.record(state)
    # the topic's replay rule is unchanged: a summary at or below last_offset is not applied, even a newer one, and
    # publishes the record again; one from the topic moves last_offset only when it changes the state
    state, _ = customers.apply(state, cards.summary(card1), 7)
    assert state.last_offset == -1
    card3, _ = c.apply(card2, event(Step.UPDATED, points=8, at=T + dt.timedelta(hours=2)), 2, UTC)
    at8 = state.model_copy(update={"last_offset": 8})
    assert customers.apply(at8, cards.summary(card3), 8) == (at8, customers.record(at8))


def test_customers__a_removal_wins_over_an_older_summary_that_arrives_after_it():
    # A summary folded in place can overtake older ones of its card still unread on pending-points-card-updates
    # (after a rebalance): the card moved from c1 to c2 (removal v3 for c1), then c1's older summary v2 arrives.
    c = _Card()
    card1, _ = c.apply(None, event(Step.ADDED, customer="c1"), 1, UTC)
    other, _ = c.apply(None, event(Step.ADDED, customer="c1", voucher="v2", entry="lopp_9"), 1, UTC)
    moved, out = c.apply(card1, event(Step.ADDED, entry="lopp_2", customer="c2", at=T + dt.timedelta(1)), 2, UTC)
    removal = next(s for s in out.summaries if s.customer_id == "c1" and s.removed)
    older = cards.summary(card1)
    assert older.version < removal.version
    # c1 holds another card: the removal of one it does not hold yet changes no record, only remembers the version
    state, _ = customers.apply(None, cards.summary(other), None)
    state, rec = customers.apply(state, removal, None)
    assert rec is None and state.removed == {"v1": removal.version}
    state, rec = customers.apply(state, older, 5)  # the older summary, read from the topic afterwards
    assert set(state.cards) == {"v2"} and rec == customers.record(state)  # stale: the record again, unchanged
    # a customer with no state at all gets one that remembers the removal, and no record
    bare, rec = customers.apply(None, removal, None)
    assert rec is None and bare.cards == {} and bare.removed == {"v1": removal.version}
    assert customers.apply(bare, older, 6)[0].cards == {}
    # removals remembered are bounded
    many = state
    for i in range(customers.MAX_REMOVALS + 5):
        many, _ = customers.apply(many, removal.model_copy(update={"voucher_id": f"v_{i}", "version": 100 + i}), None)
    assert len(many.removed) == customers.MAX_REMOVALS and "v_0" not in many.removed


def test_customers__sums_and_next_activation_span_all_cards():
    c = _Card()
    a, _ = c.apply(None, event(Step.ADDED, voucher="v1", points=4), 0, UTC)
    b, _ = c.apply(None, event(Step.ADDED, voucher="v2", points=6, entry="lopp_2"), 0, UTC)
    state, _ = customers.apply(None, cards.summary(a), 0)
    state, rec = customers.apply(state, cards.summary(b), 1)
    assert rec.pending_points == 10 and set(rec.vouchers) == {"v1", "v2"}
    assert (rec.next_activation.date, rec.next_activation.points) == (dt.date(2025, 3, 5), 10)


def test_apply_batch__one_summary_per_card_and_the_join_once():
    c = _Card()
    later = T + dt.timedelta(days=1)
    batch = [(event(Step.ADDED), 0), (event(Step.ADDED, entry="lopp_2", points=5), 1),
             (event(Step.ACTIVATED, at=later), 2), (event(Step.ADDED), 3)]
    card, out = c.apply_batch(None, batch, UTC)
    assert card.version == 3 and card.input_offset == 2  # version = last change's offset + 1; offset 3 is a duplicate
    assert [(s.points.pending_points, s.points.activated_points, s.version) for s in out.summaries] == [(5, 10, 3)]
    assert [a.pending_points_id for a in out.activations] == ["lopp_1"]


def test_apply_batch__a_replay_mixed_with_new_events_republishes_and_applies_the_rest():
    c = _Card()
    later = T + dt.timedelta(days=1)
    card, _ = c.apply(None, event(Step.ADDED), 5, UTC)
    card, _ = c.apply(card, event(Step.ACTIVATED, at=later), 6, UTC)
    # after a crash the batch starts below last_offset: offset 6 was applied, offset 7 was not
    new, out = c.apply_batch(card, [(event(Step.ACTIVATED, at=later), 6),
                                        (event(Step.ADDED, entry="lopp_2", points=4), 7)], UTC)
    assert out.replay and new.input_offset == 7 and set(new.live) == {"lopp_1", "lopp_2"}
    assert out.summaries == [cards.summary(new)]
    assert [a.pending_points_id for a in out.activations] == ["lopp_1"]  # the replayed join, published again


def test_customers_apply_batch__publishes_once_and_only_a_change():
    c = _Card()
    a, _ = c.apply(None, event(Step.ADDED, voucher="v1", points=4), 0, UTC)
    b, _ = c.apply(None, event(Step.ADDED, voucher="v2", points=6, entry="lopp_2"), 0, UTC)
    state, rec = customers.apply_batch(None, [(cards.summary(a), 0), (cards.summary(b), 1)])
    assert rec.pending_points == 10 and set(rec.vouchers) == {"v1", "v2"}
    c2 = cards.summary(c.apply(a, event(Step.UPDATED, voucher="v1", points=5, at=T + dt.timedelta(hours=1)), 1)[0])
    same, once = customers.apply_batch(state, [(c2, 2), (c2, 3)])  # a change, and its duplicate: one record
    assert once.pending_points == 11 and same.last_offset == 2


def test_apply_batch__a_transfer_after_replayed_records_or_replayed_itself_removes_the_card_from_the_old_owner():
    c = _Card()
    card, _ = c.apply(None, event(Step.ADDED, customer="c1", at=T), 0)
    moved = event(Step.ADDED, entry="lopp_2", customer="c2", at=T + dt.timedelta(1))
    # a batch that starts with a replayed record (offset 0) and then moves the card to c2
    new, out = c.apply_batch(card, [(event(Step.ADDED, customer="c1", at=T), 0), (moved, 1)])
    assert [(s.customer_id, s.removed) for s in out.summaries] == [("c1", True), ("c2", False)]
    # the transfer record itself replayed after a crash: the previous owner is remembered, its removal re-sent
    _, out = c.apply(new, moved, 1)
    assert [(s.customer_id, s.removed) for s in out.summaries] == [("c1", True), ("c2", False)]
    state, _ = customers.apply(None, cards.summary(card), 0)
    state, rec = customers.apply(state, out.summaries[0], 1)
    assert rec.vouchers == {} and rec.pending_points == 0


def test_an_aggregate_written_while_cards_read_pending_points_events_reads_the_input_with_higher_versions():
    """The upgrade to cards reading the input: offsets of the old topic say nothing about the input's. The card
    counts input records from the start, and its versions stay above every summary it published before."""
    c = _Card()
    card, _ = c.apply(None, event(Step.ADDED), 0, UTC)
    old = card.model_copy(update={"source": "events", "last_offset": 900, "input_offset": -1, "version": 901,
                                  "repair_upto": 950})  # as the previous version left it
    new, out = c.apply(old, event(Step.ACTIVATED, at=T + dt.timedelta(days=1)), 3, UTC)
    assert not out.replay  # input offset 3 is below 900, yet new: it is another topic's offset
    # its versions continue above the old ones, and above the repair it had pending (up to version 951)
    assert (new.source, new.last_offset, new.input_offset, new.repair_upto) == ("input", 950, 3, None)
    assert [s.version for s in out.summaries] == [951 + 3 + 1] and out.summaries[0].points.activated_points == 10
    again, out = c.apply(new, event(Step.ACTIVATED, at=T + dt.timedelta(days=1)), 3, UTC)
    assert out.replay and again.version == 955  # the input record now is a replay


def test_plan_batch__an_old_aggregates_conversion_copies_are_dropped_at_its_first_input_batch():
    """Copies of converted entries were kept until the old topic's input past the conversion was committed; that
    topic is drained before the upgrade, so the card's first batch from the input deletes them."""
    c = _Card()
    card, _ = c.apply(None, event(Step.ADDED), 0, UTC)
    old = card.model_copy(update={"source": "events", "last_offset": 40, "input_offset": -1, "legacy_entries": 2,
                                  "legacy_upto": 40})
    plan = cards.plan_batch(codec.dump(old),
                            [(event(Step.ADDED, entry="lopp_2"), 7)], lambda eid: c.rows.get(("v1", eid)),
                            lambda seq: None, None, UTC, H72)
    assert plan.side_deletes == [0, 1] and plan.card is not None
    assert (plan.card.source, plan.card.legacy_upto, plan.card.legacy_cleaned_upto) == ("input", None, 7)
    # also when the batch changes nothing else: the aggregate written is an input one, its events-era repair gone
    stale = old.model_copy(update={"repair_upto": 60})
    plan = cards.plan_batch(codec.dump(stale), [(event(Step.ADDED), 8)], lambda eid: c.rows.get(("v1", eid)),
                            lambda seq: None, None, UTC, H72)
    assert plan.side_deletes == [0, 1] and plan.card is not None and not plan.outputs.summaries
    assert (plan.card.source, plan.card.last_offset, plan.card.input_offset, plan.card.repair_upto) == (
        "input", 60, -1, None)
