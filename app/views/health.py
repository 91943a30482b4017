"""GET /health (the process serves HTTP) and GET /ready (assigned partitions recovered, consuming)."""
from __future__ import annotations

from app.ops.health import not_ready_reason
from app.main import app


@app.page("/health")
async def get_health(web, request):
    return web.json({"status": "ok"})


@app.page("/ready")
async def get_ready(web, request):
    reason = not_ready_reason()
    if reason:
        return web.json({"status": "not_ready", "detail": reason}, status=503)
    return web.json({"status": "ready"})
