"""`python -m app <command>`: `worker` (and Faust's other commands), or one of the operator commands:

    python -m app worker                 # a worker: agents, tables, web views (Faust's CLI)
    python -m app admin create-topics    # app/cli/admin.py: topics, JSON Schemas, the settings table
    python -m app feed [FILE ...]        # app/cli/feed.py: send sample or given webhook deliveries
    python -m app backfill               # app/cli/backfill.py: Voucherify's PENDING entries onto the input topic
    python -m app reconcile --worker URL # app/cli/reconcile.py: our totals against Voucherify's, per card
    python -m app redrive [--code CODE]  # app/cli/redrive.py: dead letters back onto the input topic, once
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {  # name -> module with main(argv) -> exit status
    "admin": "app.cli.admin", "feed": "app.cli.feed", "backfill": "app.cli.backfill", "reconcile": "app.cli.reconcile",
    "redrive": "app.cli.redrive",
}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:  # without importing Faust's app
        sys.exit(importlib.import_module(COMMANDS[sys.argv[1]]).main(sys.argv[2:]))
    from app.startup import worker

    worker.main()


if __name__ == "__main__":
    main()
