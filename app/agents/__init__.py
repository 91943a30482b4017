"""Faust agents, one per file: decode -> logic -> table/send."""
