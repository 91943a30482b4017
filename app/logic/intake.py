"""Decide what to do with one webhook POST (pure: no I/O). The view reads the body and publishes.

Order of checks: content type (415), size (413), signature (401), JSON (400); then the delivery is classified
with the same `decode` the `cards` agent uses. A delivery that is JSON but fails the models is still published:
the agent dead-letters it with its reason, where it can be inspected and replayed. Refusing it with a 4xx would
only make Voucherify retry it for a day and then drop it.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass, field

import pydantic_core

from app.logic.decode import Accepted, Skipped, decode_parsed
from app.models.webhooks import EVENT_TYPE_HEADER

SIGNATURE_HEADER = "x-voucherify-signature"
_UNPARSED = object()


@dataclass(frozen=True, slots=True)
class Refuse:
    status: int
    code: str  # also the metrics outcome
    detail: str


@dataclass(frozen=True, slots=True)
class Ignore:
    """Well-formed, of a type this service does not handle: acknowledged so Voucherify does not retry it."""

    event_type: str


@dataclass(frozen=True, slots=True)
class Publish:
    key: bytes | None  # the voucher id when the delivery names one
    headers: list[tuple[str, bytes]] = field(default_factory=list)
    event_type: str | None = None  # the lifecycle step, when the delivery is valid
    warning: str | None = None  # why the agent will dead-letter it


def is_json_content_type(content_type: str | None) -> bool:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def sign(secret: bytes, body: bytes) -> str:
    """The `x-voucherify-signature` value for `body`: hex HMAC-SHA256 with the webhook secret."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


_STRING_OR_SPACE = re.compile(rb'("(?:[^"\\]|\\.)*")|[ \t\n\r]+', re.DOTALL)


def without_whitespace(raw: bytes) -> bytes:
    """Voucherify's documented signing routine for a JSON payload: every whitespace byte outside string literals
    removed (escapes honoured), the rest byte for byte. Unlike re-serialising parsed JSON, it keeps the sender's
    escapes (`\\/`, `\\uXXXX`) and number formats. One regex pass (strings kept, whitespace runs dropped)."""
    return _STRING_OR_SPACE.sub(lambda m: m.group(1) or b"", raw)


def signature_valid(body: bytes, parsed: object, signature: str | None, secret: bytes) -> bool:
    """Hex HMAC-SHA256 of the raw body, or else of the body without whitespace outside strings (Voucherify's
    documented routine); constant-time compares."""
    if not signature:
        return False
    given = signature.strip().lower()
    if given.startswith("sha256="):
        given = given[len("sha256="):]
    try:
        given.encode("ascii")
    except UnicodeEncodeError:
        return False
    ok = hmac.compare_digest(given, sign(secret, body))
    if not ok and isinstance(parsed, dict):  # a JSON object: signed without whitespace outside strings
        ok = hmac.compare_digest(given, sign(secret, without_whitespace(body)))
    return ok


def check(
    body: bytes,
    *,
    content_type: str | None,
    signature: str | None,
    secret: bytes | None,
    type_hint: str | None,
    max_bytes: int,
) -> Publish | Ignore | Refuse:
    if not is_json_content_type(content_type):
        return Refuse(415, "unsupported_media_type", f"expected Content-Type application/json, got {content_type!r}")
    if len(body) > max_bytes:
        return Refuse(413, "too_large", f"body is {len(body)} bytes, limit {max_bytes}")
    parsed: object = _UNPARSED
    parse_error = ""
    try:
        parsed = pydantic_core.from_json(body, cache_strings=False)
    except ValueError as exc:
        parse_error = str(exc)[:300]
    if secret is not None and not signature_valid(body, parsed, signature, secret):
        what = "missing" if not signature else "does not match the body"
        return Refuse(401, "bad_signature", f"{SIGNATURE_HEADER} header {what}")
    if parsed is _UNPARSED:
        return Refuse(400, "invalid_json", f"body is not valid JSON: {parse_error}")
    if not isinstance(parsed, dict):
        return Refuse(400, "invalid_json", f"JSON body is a {type(parsed).__name__}, expected an object")

    hint = (type_hint or "").strip()
    headers = [(EVENT_TYPE_HEADER, hint.encode())] if hint else []
    outcome = decode_parsed(parsed, dict(headers))  # the body parsed above, not parsed again
    if isinstance(outcome, Accepted):
        ev = outcome.event
        return Publish(key=ev.voucher_id.encode(), headers=headers, event_type=ev.step.value)
    if isinstance(outcome, Skipped):
        return Ignore(outcome.event_type)
    return Publish(key=None, headers=headers, warning=outcome.reason.header())
