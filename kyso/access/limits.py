"""Rate limits on the doors an attacker knocks on: sign-in, signature activation, signing.

A token bucket per (action, key): ``per_minute`` requests a minute on average, up to
``burst`` at once. Keys are the account, the client or the caller's address, so that one
noisy caller does not lock others out. The buckets live in the process (several replicas
each count their own); what really stops a guesser is the lock after five wrong passwords
or PINs, which lives in the database. At most :data:`MAX_KEYS` keys are tracked; the least
recently seen go first.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kyso.errors import KysoError

MAX_KEYS = 100_000


class RateLimitedError(KysoError):
    code = "access.rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True)
class Limit:
    per_minute: float
    burst: int


class RateLimiter:
    """Token buckets keyed by (action, key)."""

    def __init__(
        self, limits: dict[str, Limit], *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: OrderedDict[tuple[str, str], tuple[float, float]] = OrderedDict()

    def check(self, action: str, *keys: str) -> None:
        """Take one token for ``action`` from the bucket of every key; raise
        :class:`RateLimitedError` (nothing taken) if one of them is empty."""
        limit = self._limits.get(action)
        if limit is None:
            return
        rate = limit.per_minute / 60.0
        now = self._clock()
        with self._lock:
            states = []
            for key in keys:
                tokens, seen = self._buckets.get((action, key), (float(limit.burst), now))
                tokens = min(float(limit.burst), tokens + (now - seen) * rate)
                states.append(((action, key), tokens))
            short = [tokens for _, tokens in states if tokens < 1.0]
            if short:
                wait = math.ceil((1.0 - min(short)) / rate) if rate > 0 else 60
                raise RateLimitedError(
                    f"too many {action.replace('_', ' ')} requests; try again in {wait} s", wait
                )
            for bucket, tokens in states:
                self._buckets[bucket] = (tokens - 1.0, now)
                self._buckets.move_to_end(bucket)
            while len(self._buckets) > MAX_KEYS:
                self._buckets.popitem(last=False)
