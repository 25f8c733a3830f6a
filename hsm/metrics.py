"""Prometheus metrics of the HSM layer (process-wide, shared by every pool).

The signing path is tens of microseconds, so label children are resolved once and the
session gauges are computed at scrape time instead of being updated on every call.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

OPERATIONS = Counter(
    "kyso_hsm_operations_total",
    "HSM operations by kind and outcome (ok or the stable error code).",
    ["operation", "outcome"],
)
LATENCY = Histogram(
    "kyso_hsm_operation_seconds",
    "Latency of HSM operations, session wait included.",
    ["operation"],
    buckets=(0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0),
)
RECOVERIES = Counter(
    "kyso_hsm_recoveries_total", "Session reopen attempts by outcome.", ["outcome"]
)


class _Pool(Protocol):
    @property
    def sessions_in_use(self) -> int: ...

    @property
    def sessions_open(self) -> int: ...


_pools: weakref.WeakSet[Any] = weakref.WeakSet()


def _sum(attribute: str) -> Callable[[], float]:
    return lambda: float(sum(getattr(p, attribute) for p in list(_pools)))


Gauge("kyso_hsm_pool_sessions_in_use", "Pool sessions currently lent out.").set_function(
    _sum("sessions_in_use")
)
Gauge("kyso_hsm_pool_sessions_open", "Pool sessions currently open.").set_function(
    _sum("sessions_open")
)


def register_pool(pool: _Pool) -> None:
    _pools.add(pool)


class OperationMetrics:
    """Pre-resolved children for one operation kind."""

    __slots__ = ("_outcomes", "latency", "name", "ok")

    def __init__(self, name: str) -> None:
        self.name = name
        self.latency = LATENCY.labels(operation=name)
        self.ok = OPERATIONS.labels(operation=name, outcome="ok")
        self._outcomes: dict[str, Any] = {}

    def failed(self, code: str) -> None:
        child = self._outcomes.get(code)
        if child is None:
            child = self._outcomes[code] = OPERATIONS.labels(operation=self.name, outcome=code)
        child.inc()


_operations: dict[str, OperationMetrics] = {}


def operation(name: str) -> OperationMetrics:
    found = _operations.get(name)
    if found is None:
        found = _operations[name] = OperationMetrics(name)
    return found
