"""Wait for the Kafka cluster before the worker starts: Faust exits at once if it cannot bootstrap."""
from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

logger = logging.getLogger(__name__)


async def _reachable(client_kwargs: dict) -> bool:
    client = AIOKafkaClient(**client_kwargs)
    try:
        await client.bootstrap()
        return True
    except (KafkaError, OSError):
        return False
    finally:
        await client.close()


def wait_for_broker(client_kwargs: dict, timeout_s: float) -> None:
    """Block until a metadata request succeeds; back off up to 5 s between tries. 0 = wait forever."""
    deadline = time.monotonic() + timeout_s if timeout_s > 0 else None
    delay, attempt = 0.2, 0
    while not asyncio.run(_reachable(client_kwargs)):
        attempt += 1
        if deadline is not None and time.monotonic() >= deadline:
            raise SystemExit(f"Kafka not reachable at {client_kwargs.get('bootstrap_servers')} after {timeout_s}s")
        if attempt == 1 or attempt % 10 == 0:
            logger.warning("Kafka not reachable at %s yet; retrying", client_kwargs.get("bootstrap_servers"))
        time.sleep(delay)
        delay = min(delay * 2, 5.0)
