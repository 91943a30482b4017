"""Kafka's record limit in our own settings and code: anything accepted can be stored and dead-lettered."""
from __future__ import annotations

import pytest
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from pydantic import ValidationError

from app.agents.deadletter import fit
from app.settings import Settings


def _size(key, value, headers) -> int:
    """aiokafka's own estimate, the one it checks against max_request_size."""
    return DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)


def test_settings__the_largest_delivery_accepted_leaves_room_for_headers_under_kafkas_limit():
    s = Settings(_env_file=None)
    assert s.kafka_max_record_bytes == 1024 * 1024  # Apache Kafka's default
    headers = [("event-type", b"voucher.loyalty_card.pending_points.activated"), ("x-h", b"v" * 2000)]
    assert _size(b"v_" + b"x" * 60, b"{" * s.max_delivery_bytes, headers) <= s.kafka_max_record_bytes
    with pytest.raises(ValidationError, match="MAX_DELIVERY_BYTES"):
        Settings(_env_file=None, max_delivery_bytes=1024 * 1024)
    Settings(_env_file=None, kafka_max_record_bytes=4 << 20, max_delivery_bytes=(4 << 20) - 16 * 1024)


def test_dead_letter_copy__fits_under_the_limit_whatever_the_input_and_says_when_it_was_cut():
    limit = 1024 * 1024
    headers = [("dlq-reason", b"too_large: " + b"d" * 1000), ("dlq-code", b"too_large"), ("event-type", b"x" * 300)]
    # an input record that was itself just under the limit (another producer wrote it): the copy is cut
    value, out = fit(b"key", b"v" * (limit - 200), headers, limit)
    assert _size(b"key", value, out) <= limit
    assert dict(out)["dlq-truncated"] == str(limit - 200).encode() and value == b"v" * len(value)
    # anything that fits is copied untouched
    same, out2 = fit(b"key", b"v" * 5000, headers, limit)
    assert same == b"v" * 5000 and out2 == headers
    assert fit(b"key", None, headers, limit) == (None, headers)
