"""GET /stats: this worker's counters as JSON (processed by step, skipped by type, dead-lettered by code, webhook
answers by status), a readable subset of GET /metrics."""
from __future__ import annotations

from app.ops import metrics
from app.main import app


@app.page("/stats")
async def get_stats(web, request):
    return web.json(metrics.snapshot())
