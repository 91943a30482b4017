"""The webhook endpoint's decisions: content type, size, signature (raw, and without whitespace outside strings), JSON, type and key."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from app.logic.intake import Ignore, Publish, Refuse, check, signature_valid

from app.cli.feed import SAMPLES  # noqa: E402  (the bundled samples: one copy, app/samples)
SECRET = b"whsec_test"
ADDED = "voucher.loyalty_card.pending_points.added"
VOUCHER = b"v_hjQhSsitD6lAATASbRV1Ef7dUCjpy0iw"


def _sign(body: bytes, secret: bytes = SECRET) -> str:
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def _check(body: bytes, *, signature="auto", content_type="application/json", secret=SECRET, hint=None,
           max_bytes=1 << 20):
    if signature == "auto":
        signature = _sign(body)
    return check(body, content_type=content_type, signature=signature, secret=secret, type_hint=hint,
                 max_bytes=max_bytes)


def _added_raw() -> bytes:
    return (SAMPLES / "pending_points_added.json").read_bytes()


def _envelope(event_type: str = ADDED) -> bytes:
    data = json.loads(_added_raw())
    return json.dumps({"id": "evcus_1", "type": event_type, "data": data, "created_at": "2025-01-21T10:00:00Z",
                       "object": "event"}, indent=2).encode()


def test_signed_raw_payload_with_type_hint__published_under_the_voucher_key_with_the_type_header():
    got = _check(_added_raw(), hint=ADDED)
    assert got == Publish(key=VOUCHER, headers=[("event-type", ADDED.encode())], event_type="added")


def test_signed_envelope__type_from_the_envelope_and_no_header_needed():
    got = _check(_envelope())
    assert isinstance(got, Publish) and got.key == VOUCHER and got.headers == [] and got.warning is None


def test_signature_over_the_compact_json__accepted_when_the_raw_body_is_pretty_printed():
    body = _envelope()  # indent=2
    compact = json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode()
    assert body != compact
    assert isinstance(_check(body, signature=_sign(compact)), Publish)


def test_signature__upper_case_hex_and_sha256_prefix_are_the_same_digest():
    body = _envelope()
    assert signature_valid(body, json.loads(body), _sign(body).upper(), SECRET)
    assert signature_valid(body, json.loads(body), "sha256=" + _sign(body), SECRET)


@pytest.mark.parametrize("signature", [None, "", "00" * 32, "not hex", "é" * 64])
def test_bad_or_missing_signature__401(signature):
    got = _check(_envelope(), signature=signature)
    assert isinstance(got, Refuse) and (got.status, got.code) == (401, "bad_signature")


def test_signature_with_another_secret__401():
    body = _envelope()
    assert _check(body, signature=_sign(body, b"other")).status == 401


def test_signature_is_checked_before_the_body_is_judged():
    # An unauthenticated caller learns nothing about what we would accept.
    assert _check(b"{not json", signature="00").status == 401


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe", b""])
def test_signed_but_not_json__400_saying_what_is_wrong(body):
    got = _check(body)
    assert isinstance(got, Refuse) and (got.status, got.code) == (400, "invalid_json")
    assert "not valid JSON" in got.detail


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_signed_json_that_is_not_an_object__400(body):
    got = _check(body)
    assert (got.status, got.code) == (400, "invalid_json") and "expected an object" in got.detail


@pytest.mark.parametrize("content_type", [None, "", "text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type__415(content_type):
    assert _check(_envelope(), content_type=content_type).status == 415


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "Application/JSON", "application/vnd.voucherify+json"])
def test_json_content_types__accepted(content_type):
    assert isinstance(_check(_envelope(), content_type=content_type), Publish)


def test_over_the_size_limit__413():
    body = _envelope()
    got = _check(body, max_bytes=len(body) - 1)
    assert (got.status, got.code) == (413, "too_large")
    assert isinstance(_check(body, max_bytes=len(body)), Publish)


def test_unsupported_event_type__ignored_not_refused():
    got = _check(_envelope("voucher.published"))
    assert got == Ignore("voucher.published")


def test_json_that_fails_the_models__published_for_the_dead_letter_topic_with_the_reason():
    # Refusing it would make Voucherify retry for a day and then drop it; stored, it is dead-lettered.
    data = json.loads(_added_raw())
    data["pending_points"]["points"] = -5
    got = _check(json.dumps(data).encode(), hint=ADDED)
    assert isinstance(got, Publish) and got.key is None and got.event_type is None
    assert got.warning.startswith("invalid_payload:")


def test_raw_payload_without_a_type__published_with_the_reason():
    got = _check(_added_raw())
    assert isinstance(got, Publish) and got.warning.startswith("missing_type:")


def test_unsigned_mode__no_signature_needed():
    assert isinstance(_check(_envelope(), signature=None, secret=None), Publish)


def test_signature__voucherifys_documented_routine_and_its_test_vectors():
    """The reference's vectors (key `secretKey`): a JSON object is signed without the whitespace outside its
    strings, byte for byte otherwise; a plain string payload is signed as it is."""
    import hashlib
    import hmac

    from app.logic.intake import without_whitespace

    key = b"secretKey"

    def sig(body: bytes) -> str:
        return hmac.new(key, body, hashlib.sha256).hexdigest()

    assert without_whitespace(b'{ "a" : 1 }') == b'{"a":1}'
    assert sig(without_whitespace(b'{ "a" : 1 }')) == "a17d2ac229d1ebbb5f10e839c7985c4818e5986eab297f7e5979196d4d7d3ed2"
    pretty = b'{\n  "a\\"b" :  1\n}'  # an escaped quote does not end the string
    assert sig(without_whitespace(pretty)) == "f7cf97814a03146abedb9793f56e1dec34f618f82d10395310d053f749483ffb"
    assert sig(b"  message  ") == "53ff92957e1427ce23ad5bda9d0c5f2f4ff384d0806b83eeacb510c842d3a358"
    # whitespace inside strings, and the sender's escapes, are kept (re-serialising would change `\/` and `\u00e9`)
    body = b'{ "note": "a  b\\/c \\u00e9" , "n": 1.50 }'
    assert without_whitespace(body) == b'{"note":"a  b\\/c \\u00e9","n":1.50}'
    assert signature_valid(body, json.loads(body), hmac.new(SECRET, without_whitespace(body), hashlib.sha256)
                           .hexdigest(), SECRET)
