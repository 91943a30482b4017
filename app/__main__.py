"""`python -m app worker …` (Faust's CLI) with every agent and view registered."""
from __future__ import annotations

import logging
import sys

from app.broker_wait import wait_for_broker
from app.main import app, settings
from app.agents import cards, customers, ingest  # noqa: F401  (registers agents)
from app.views import customers as customer_views, stats, vouchers  # noqa: F401  (registers views)


def main() -> None:
    if "worker" in sys.argv[1:]:
        logging.basicConfig(level=logging.INFO, format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
        wait_for_broker(settings.kafka_client_kwargs(), settings.broker_wait_s)
    app.main()


if __name__ == "__main__":
    main()
