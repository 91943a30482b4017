"""Operator command lines (`python -m app <command>`)."""
