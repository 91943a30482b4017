"""GET /stats: this worker's delivery outcome counters (processed, skipped, dead-lettered)."""
from __future__ import annotations

from app import metrics
from app.main import app


@app.page("/stats")
async def get_stats(web, request):
    return web.json(metrics.snapshot())
