"""GET /customers/{customer_id}: the customer's point state (same JSON as `customer-point-state`)."""
from __future__ import annotations

from app.logic import customers
from app.views.routing import owner_routed
from app.main import app, customers_table
from app.models import codec
from app.models.records import CustomerState


@app.page("/customers/{customer_id}")
@owner_routed(customers_table, match_info="customer_id")
async def get_customer(web, request, customer_id: str):
    raw = customers_table.get(customer_id.encode())
    if raw is None:
        return web.json({"error": "not_found", "detail": f"unknown customer {customer_id!r}"}, status=404)
    record = customers.record(codec.load(CustomerState, raw))
    return web.bytes(codec.dump(record), content_type="application/json")
