"""GET /metrics: this worker's Prometheus metrics (text exposition format)."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.main import app
from app.ops import health, metrics, scan

metrics.register_state(health.state_gauges)
metrics.register_state(scan.gauges)


@app.page("/metrics")
async def get_metrics(web, request):
    return web.bytes(generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})
