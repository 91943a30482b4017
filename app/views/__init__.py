"""Faust web views, one resource per file; each is answered by the worker that owns the key."""
