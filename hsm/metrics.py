"""Prometheus metrics of the HSM layer (process-wide, shared by every pool).

A signature costs tens of microseconds, and ``prometheus_client``'s counters and
histograms take a lock per update (three per call), which cost about 5 % of the raw
signing throughput. So each thread counts into its own shard with plain integers, and a
collector sums the shards when ``/metrics`` is read: no lock and no shared write on the
signing path. The session gauges are likewise computed at scrape time.
"""

from __future__ import annotations

import threading
import weakref
from bisect import bisect_left
from collections.abc import Iterator
from typing import Any

from prometheus_client import REGISTRY, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

BUCKETS: tuple[float, ...] = (
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0,
)  # fmt: skip
"""Upper bounds (seconds) of the latency histogram; +Inf is implied."""

RECOVERIES = Counter(
    "kyso_hsm_recoveries_total", "Session (re)opens by outcome (ok or the error code).", ["outcome"]
)


class _OperationStats:
    __slots__ = ("buckets", "outcomes", "total_seconds")

    def __init__(self) -> None:
        self.buckets = [0] * (len(BUCKETS) + 1)
        self.total_seconds = 0.0
        self.outcomes: dict[str, int] = {}


class _Shard:
    """One thread's counts; only that thread writes them."""

    __slots__ = ("operations",)

    def __init__(self) -> None:
        self.operations: dict[str, _OperationStats] = {}


_local = threading.local()
_shards: list[_Shard] = []
_shards_lock = threading.Lock()
_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def record(operation: str, outcome: str, seconds: float) -> None:
    """Count one operation: its outcome (``ok`` or the error code) and its latency."""
    shard: _Shard | None = getattr(_local, "shard", None)
    if shard is None:
        shard = _local.shard = _Shard()
        # Shards outlive their threads: a counter must never go down.
        with _shards_lock:
            _shards.append(shard)
    stats = shard.operations.get(operation)
    if stats is None:
        stats = shard.operations[operation] = _OperationStats()
    stats.buckets[bisect_left(BUCKETS, seconds)] += 1
    stats.total_seconds += seconds
    stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + 1


def register_pool(pool: Any) -> None:
    """Include a pool's ``sessions_in_use`` / ``sessions_open`` in the gauges."""
    _pools.add(pool)


class _HsmCollector(Collector):
    def collect(self) -> Iterator[Any]:
        with _shards_lock:
            shards = list(_shards)
        outcomes: dict[tuple[str, str], int] = {}
        buckets: dict[str, list[int]] = {}
        sums: dict[str, float] = {}
        for shard in shards:
            # list() copies under the GIL, so a thread adding an operation meanwhile is safe.
            for name, stats in list(shard.operations.items()):
                for outcome, count in list(stats.outcomes.items()):
                    outcomes[(name, outcome)] = outcomes.get((name, outcome), 0) + count
                merged = buckets.setdefault(name, [0] * (len(BUCKETS) + 1))
                for i, count in enumerate(stats.buckets):
                    merged[i] += count
                sums[name] = sums.get(name, 0.0) + stats.total_seconds

        operations = CounterMetricFamily(
            "kyso_hsm_operations",
            "HSM operations by kind and outcome (ok or the stable error code).",
            labels=["operation", "outcome"],
        )
        for (name, outcome), count in sorted(outcomes.items()):
            operations.add_metric([name, outcome], count)
        yield operations

        latency = HistogramMetricFamily(
            "kyso_hsm_operation_seconds",
            "Latency of HSM operations, session wait included.",
            labels=["operation"],
        )
        for name, counts in sorted(buckets.items()):
            cumulative, running = [], 0
            for bound, count in zip((*map(str, BUCKETS), "+Inf"), counts, strict=True):
                running += count
                cumulative.append((bound, running))
            latency.add_metric([name], cumulative, sums[name])
        yield latency

        pools = list(_pools)
        in_use = GaugeMetricFamily(
            "kyso_hsm_pool_sessions_in_use", "Pool sessions currently lent out."
        )
        in_use.add_metric([], sum(p.sessions_in_use for p in pools))
        yield in_use
        opened = GaugeMetricFamily("kyso_hsm_pool_sessions_open", "Pool sessions currently open.")
        opened.add_metric([], sum(p.sessions_open for p in pools))
        yield opened


REGISTRY.register(_HsmCollector())
