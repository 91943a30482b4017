"""Agent `customers`: fold card summaries into the per-customer table; publish `customer-point-state`."""
from __future__ import annotations


from app.ops import metrics
from app.agents.batches import batch_output, by_key, loaded, take
from app.agents import tables
from app.logic import customers
from app.main import app, card_updates_topic, customer_state_topic, customers_table
from app.models import codec
from app.models.records import CardSummary, CustomerState



@app.agent(card_updates_topic, name="customers")
async def process_customers(stream):
    async for batch in take(stream, "customers"):  # (customer_id, CardSummary) records
        async with batch_output("customers", batch) as (out, writes):
            valid = await loaded(batch, CardSummary, lambda summary: summary.customer_id)
            for key, group in by_key(valid):  # one table read and write, one record per customer per batch
                raw = tables.get(customers_table, key)
                state = codec.load(CustomerState, raw) if raw is not None else None
                new, record = customers.apply_batch(state, [(s, message.offset) for s, message in group])
                if record is not None:
                    await out.add(customer_state_topic, key, codec.dump(record))
                if new is not state or record is not None:
                    await writes.put(customers_table, key, codec.dump(new))
                    metrics.change("customers", "changed" if new is not state else "replay")
                else:
                    metrics.change("customers", "unchanged")
