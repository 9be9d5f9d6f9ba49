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


def test_bench_memory_with_the_learner_joins_every_page_and_tracks_both_processes() -> None:
    from service.bench.memory import measure_with_learner

    result = measure_with_learner(str(EXAMPLE_CONFIG), 600, seed=2, window=0.5, reward_share=0.5)
    assert result["pages"] == 660 and 200 < result["rewards"] < 460
    assert result["logged_decisions"] >= result["pages"]  # a page fills one to three slots
    assert result["joined_decisions"] == result["logged_decisions"] and result["pending_at_end"] == 0
    rows = result["trajectory"]
    assert [r["ranks"] for r in rows] == [60 + 60 * k for k in range(10)] + [660]
    assert all(r["worker_mb"] > 0 and r["learner_mb"] > 0 and r["redis_mb"] > 0 for r in rows)
