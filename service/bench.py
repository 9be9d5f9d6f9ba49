"""Benchmarks (being written)."""

from __future__ import annotations

from typing import Any


def add_bench_rank_parser(bench_sub: Any) -> None:
    return None
