"""Send webhook deliveries: the bundled samples by default, or given JSON files.

    python -m app feed [--bootstrap HOST:PORT] [FILE[:EVENT_TYPE] ...]    # produce to `voucherify-webhooks`
    python -m app feed --http http://127.0.0.1:6066 [FILE[:EVENT_TYPE] ...]  # POST, as Voucherify does

A file is sent as a raw payload with its event type in the `event-type` header (taken from `:EVENT_TYPE`, or for
the bundled samples from their names), or as-is if it is a v2024-01-01 envelope. Over HTTP the type goes in
`?type=`, and the body is signed with WEBHOOK_SECRET (unsigned if none is set).
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from aiokafka import AIOKafkaProducer

import topics
from app.logic import intake
from app.logic.decode import Accepted, decode
from app.settings import get_settings

SAMPLES = Path(__file__).resolve().parent.parent / "samples"  # app/samples: the one copy
SAMPLE_TYPES = {
    "pending_points_added.json": "voucher.loyalty_card.pending_points.added",
    "pending_points_activated.json": "voucher.loyalty_card.pending_points.activated",
}


def sample_deliveries() -> list[tuple[bytes, str]]:
    """The documented example payloads, as (raw bytes, event type)."""
    return [((SAMPLES / name).read_bytes(), etype) for name, etype in SAMPLE_TYPES.items()]


def _key(body: bytes, etype: str | None) -> bytes | None:
    """The voucher id, as the service itself reads it (None if the delivery is not a valid one)."""
    headers = {topics.EVENT_TYPE_HEADER: etype.encode()} if etype else {}
    outcome = decode(body, headers, max_bytes=len(body) + 1)
    return outcome.event.voucher_id.encode() if isinstance(outcome, Accepted) else None


async def produce(client_kwargs: dict, topic: str, deliveries: list[tuple[bytes, str | None]]) -> int:
    producer = AIOKafkaProducer(**client_kwargs)
    await producer.start()
    try:
        for body, etype in deliveries:
            headers = [(topics.EVENT_TYPE_HEADER, etype.encode())] if etype else []
            await producer.send_and_wait(topic, body, key=_key(body, etype), headers=headers)
    finally:
        await producer.stop()
    return len(deliveries)


def post(base_url: str, secret: str | None, deliveries: list[tuple[bytes, str | None]]) -> int:
    """POST each delivery to the webhook endpoint; return how many were not accepted."""
    failed = 0
    for body, etype in deliveries:
        url = base_url.rstrip("/") + "/webhooks/voucherify"
        if etype:
            url += "?" + urllib.parse.urlencode({"type": etype})
        headers = {"Content-Type": "application/json"}
        if secret:
            headers[intake.SIGNATURE_HEADER] = intake.sign(secret.encode(), body)
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                status, answer = resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            status, answer = err.code, err.read().decode()
        failed += status >= 300
        print(f"{status} {answer}")
    return failed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", default=None, help="default: KAFKA_BOOTSTRAP_SERVERS")
    parser.add_argument("--http", default=None, metavar="URL", help="POST to this worker's webhook endpoint")
    parser.add_argument("files", nargs="*")
    args = parser.parse_args(argv)
    settings = get_settings()
    client_kwargs = settings.kafka_client_kwargs()
    if args.bootstrap:
        client_kwargs["bootstrap_servers"] = args.bootstrap
    bootstrap = client_kwargs["bootstrap_servers"]
    topic = settings.topic_name(topics.WEBHOOKS.name)
    deliveries: list[tuple[bytes, str | None]] = []
    for spec in args.files:
        path, _, etype = spec.partition(":")
        deliveries.append((Path(path).read_bytes(), etype or SAMPLE_TYPES.get(Path(path).name)))
    deliveries = deliveries or sample_deliveries()
    if args.http:
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret else None
        sys.exit(1 if post(args.http, secret, deliveries) else 0)
    n = asyncio.run(produce(client_kwargs, topic, deliveries))
    print(f"sent {n} deliveries to {topic} on {bootstrap}")


if __name__ == "__main__":
    main()
