"""Task functions the isolation tests run inside pool workers; each misbehaves on purpose."""

from __future__ import annotations

import contextlib
import ctypes
import os
import pathlib
import pickle
import struct
import sys
import time
from typing import Any

from verifier.limits import LimitExceededError, active_limits


def echo(data: bytes, options: dict[str, Any]) -> dict[str, Any]:
    return {"length": len(data), "options": options, "pid": os.getpid()}


def report_environment(data: bytes, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "modules": sorted(sys.modules),
        "niceness": os.nice(0),
        "environment": sorted(os.environ),
        "max_objects": active_limits().max_objects,
    }


def allocate(data: bytes, options: dict[str, Any]) -> int:
    block = bytearray(int(options["bytes"]))
    return len(block)


def spin(data: bytes, options: dict[str, Any]) -> int:
    count = 0
    while True:
        count += 1


def sleep(data: bytes, options: dict[str, Any]) -> float:
    time.sleep(float(options["seconds"]))
    return float(options["seconds"])


def exit_abruptly(data: bytes, options: dict[str, Any]) -> None:
    os._exit(3)


def segfault(data: bytes, options: dict[str, Any]) -> bytes:
    return ctypes.string_at(0)


def fail(data: bytes, options: dict[str, Any]) -> None:
    raise ValueError("no /Root in trailer")


def too_many_objects(data: bytes, options: dict[str, Any]) -> None:
    raise LimitExceededError("too many objects", code="verifier.too_many_objects")


def dispatch(data: bytes, options: dict[str, Any]) -> Any:
    """One entry point for every behaviour, so one pool serves a whole test sequence."""
    return globals()[str(options["do"])](data, options)


def burn(data: bytes, options: dict[str, Any]) -> float:
    """Use about `seconds` of CPU time, then return."""
    deadline = time.process_time() + float(options["seconds"])
    while time.process_time() < deadline:
        pass
    return time.process_time()


def not_json(data: bytes, options: dict[str, Any]) -> object:
    return object()


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (pathlib.Path(self.marker).touch, ())


def _write_to_service(payload: bytes) -> None:
    """Act as a worker a crafted PDF took over: write straight onto the socket to the
    service, framed as the pool expects, then hang."""
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                os.write(int(fd), struct.pack("!i", len(payload)) + payload)
    time.sleep(30)


def send_pickle(data: bytes, options: dict[str, Any]) -> None:
    """A pickle that runs code when the service loads it."""
    _write_to_service(pickle.dumps(_RunsCodeWhenUnpickled(str(options["marker"]))))


def send_deep_json(data: bytes, options: dict[str, Any]) -> None:
    """JSON nested deeper than the service's stack."""
    _write_to_service(b"[" * 200_000 + b"]" * 200_000)
