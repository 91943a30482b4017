"""Pending-points stream processor: Voucherify loyalty webhooks -> per-card and per-customer point state."""
