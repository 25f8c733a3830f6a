"""Driving pyHanko's coroutines from blocking code without an event loop."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from signer.errors import SignerError

T = TypeVar("T")


def run_to_completion(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never waits on anything, without an event loop.

    pyHanko's signing and timestamping coroutines only suspend for I/O: a network
    timestamper, a validation context fetching revocation data. Kyso hands them in-process
    callables instead, so they run straight through; an event loop per document would cost
    more than the PDF work it wraps.
    """
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise SignerError("pyHanko waited on I/O while signing in process")
