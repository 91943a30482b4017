"""`python -m app worker …`: the start-up steps, then Faust's CLI with every agent and view registered."""
from __future__ import annotations

import asyncio
import gc
import logging
import sys

from mode.utils.loops import get_event_loop

import topics

from app import compat
from app.cli import admin
from app.ops import logs
from app.startup import preflight, restore
from app.startup.broker_wait import wait_for_broker
from app.main import app, cards_table, customers_table, entries_table, settings
from app.agents import cards, customers  # noqa: F401  (registers agents)
from app.views import customers as customer_views, health, metrics, stats, vouchers, webhooks  # noqa: F401

logger = logging.getLogger(__name__)


def _create_topics(loop: asyncio.AbstractEventLoop) -> None:
    """Create every topic that is missing (the registry's and the tables' changelogs), with its partitions and
    configs, before Faust starts. Faust declares only the topics agents read and the changelogs; the output topics
    (written straight to the producer) would otherwise be auto-created by the broker with its defaults: not
    compacted, and without our record limit. A principal that may not create topics gets a warning (provision
    them with `python -m app admin create-topics`)."""
    try:
        lines = loop.run_until_complete(admin.create_topics(settings))
        created = [line for line in lines if line.startswith("create")]
        failed = [line for line in lines if line.startswith("failed")]
        if created:
            logger.info("created %d topics:\n%s", len(created), "\n".join(created))
        if failed:
            logger.warning("could not create %d topics (provision them with `python -m "
                                                "app admin create-topics`):\n%s", len(failed), "\n".join(failed))
    except Exception as exc:
        logger.warning("could not create missing topics (%r): provision them with "
                                            "`python -m app admin create-topics`", exc)


def main() -> None:
    argv = sys.argv[1:]
    if "worker" in argv:
        if not any(a in ("-l", "--loglevel") or a.startswith("--loglevel=") for a in argv):
            sys.argv[1:] = ["--loglevel", settings.log_level, *argv]  # LOG_LEVEL, unless given on the command line
        logs.configure_early(settings.log_format, settings.log_level)
        compat.check_versions()
        webhooks.log_mode()
        client = settings.kafka_client_kwargs()
        wait_for_broker(client, settings.broker_wait_s)
        # One event loop for the start-up steps and for Faust: the one mode made current when the app was declared
        # (services cache it at import). With a new loop here, a worker whose bulk restore touched the tables hung
        # on SIGTERM: the tables' tasks had been scheduled on the import-time loop, which no longer ran.
        loop = get_event_loop()
        _create_topics(loop)
        preflight.check(client, settings.app_id, settings.topic_name(topics.LEGACY_EVENTS),
                        settings.topic_name(topics.WEBHOOKS.name), settings.partitions,
                        settings.topic_name(topics.CARD_UPDATES.name),
                        verify_end_offsets=settings.kafka_verify_end_offsets, loop=loop)
        if settings.bulk_restore:
            restore.run([cards_table, entries_table, customers_table], client,
                        verify_end_offsets=settings.kafka_verify_end_offsets, loop=loop)
        _tune_gc(settings.gc_gen0_threshold)
    app.main()


def _tune_gc(gen0: int) -> None:
    """Fewer, cheaper garbage collections while processing: the start-up heap (imports, restored state, schemas)
    is collected once and then frozen out of later collections; young collections every `gen0` allocations. The
    stages' objects are freed by reference counting as batches end; the collector only finds cycles."""
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, gen1, gen2)
    logger.info("garbage collector: %d start-up objects frozen, young collections every %d allocations",
                gc.get_freeze_count(), gen0)
