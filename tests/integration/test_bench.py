"""The benchmark still runs end to end at its --quick size (its numbers are reported, never asserted as targets)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick__measures_every_figure_and_loses_no_latency_sample(tmp_path):
    out = tmp_path / "bench"
    temp = tmp_path / "tmp"  # the benchmark's own temp dir: its work dir must be gone when it finishes
    temp.mkdir()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TMPDIR": str(temp)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert list(temp.iterdir()) == [], "the benchmark left files behind"
    assert not list((ROOT / "scripts").glob("*-data")), "a Faust data dir in the source tree"
    res = json.loads((out / "results.json").read_text())
    for key in ("bare_events_per_s", "pipeline_events_per_s", "ratio_pipeline_over_bare", "worker_peak_rss_mb",
                "latency_p50_ms", "latency_p99_ms", "recovery_records_per_s"):
        assert res[key] > 0, key
    # every delivery offered in the latency run came out on customer-point-state
    assert res["missing"] == 0 and res["latency_samples"] == res["offered"] > 0
    assert res["latency_p50_ms"] <= res["latency_p99_ms"] <= res["latency_max_ms"]
    # the broker's own floor after each rate (the second on the relay topics and groups the first left): every
    # record offered at that rate timed exactly once
    floors = [by_rate["broker_floor_2_bare_hops"] for by_rate in res["latency_by_rate"].values()]
    assert len(floors) == 2
    assert all(f.get("samples") == f.get("offered", -1) > 0 for f in floors), floors
    # each rate again on a fresh broker of its own: every delivery offered timed, its floor measured there too
    fresh = res["latency_fresh_broker_by_rate"]
    assert sorted(fresh) == ["100", "200"]
    assert all(r["missing"] == 0 and r["latency_samples"] == r["offered"] > 0 for r in fresh.values()), fresh
    assert all(r["broker_floor_2_bare_hops"].get("samples") == r["broker_floor_2_bare_hops"].get("offered", -1) > 0
               for r in fresh.values()), fresh
    assert res["changelog_records"] > 0
    # the card-history dimensions ran: one card's entries all there, nothing it wrote near Kafka's limit
    assert res["long_card_entries"] == 2000 and len(res["long_card_ms_per_delivery_by_chunk"]) == 4
    assert 0 < res["long_card_largest_record_bytes"] < 64 * 1024
    assert [r["entries"] for r in res["card_history"]] == [10, 100, 1000]
    assert all(0 < r["largest_record_bytes"] < 64 * 1024 for r in res["card_history"])
