"""`storefront bench memory` in its smallest form: it measures, and what it prints adds up."""

from __future__ import annotations

from service.bench.memory import measure
from tests.conftest import EXAMPLE_CONFIG


def test_bench_memory_measures_pending_pages() -> None:
    result = measure(str(EXAMPLE_CONFIG), 300, seed=1)
    assert result["pages"] == 330  # with the warm-up tenth
    assert 0 < result["packed_event_bytes"] < result["json_event_bytes"] / 4
    assert result["packed_event_bytes"] < result["event_hash_bytes"] < result["redis_bytes_per_page"] * 2
    assert result["rss_before_mb"] > 0 and result["rss_after_mb"] > 0
