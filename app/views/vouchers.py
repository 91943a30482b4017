"""GET /vouchers/{voucher_id}: the loyalty card's pending-points state with its entries."""
from __future__ import annotations

from app.logic import cards
from app.views.routing import owner_routed
from app.main import app, cards_table
from app.models import codec
from app.models.records import CardState


@app.page("/vouchers/{voucher_id}")
@owner_routed(cards_table, match_info="voucher_id")
async def get_voucher(web, request, voucher_id: str):
    raw = cards_table.get(voucher_id.encode())
    if raw is None:
        return web.json({"error": "not_found", "detail": f"unknown voucher {voucher_id!r}"}, status=404)
    return web.bytes(codec.dump(cards.view(codec.load(CardState, raw))), content_type="application/json")
