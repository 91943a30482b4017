"""In-process counters of delivery outcomes (exposed over HTTP by the views)."""
from __future__ import annotations

from collections import Counter

_counts: Counter[tuple[str, str]] = Counter()


def count(outcome: str, detail: str = "") -> None:
    _counts[(outcome, detail)] += 1


def snapshot() -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (outcome, detail), n in sorted(_counts.items()):
        out.setdefault(outcome, {})[detail] = n
    return out
