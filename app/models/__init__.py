"""Pydantic models: inbound Voucherify webhooks (tolerant) and our own records (strict, versioned)."""
