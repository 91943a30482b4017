"""`python -m app worker …` (Faust's CLI) with every agent and view registered."""
from __future__ import annotations

from app.main import app
from app.agents import cards, customers, ingest  # noqa: F401  (registers agents)
from app.views import customers as customer_views, stats, vouchers  # noqa: F401  (registers views)


def main() -> None:
    app.main()


if __name__ == "__main__":
    main()
