"""Hard limits for parsing an untrusted PDF, and the cheap checks made before a worker runs.

The size cap is checked in the service process, before any byte reaches a worker. Memory,
CPU and wall time are enforced on the worker process by the pool (`verifier.isolation`).
Object count, decompressed stream size and nesting depth can only be counted while parsing:
the validation task reads them from `active_limits()` and raises `LimitExceededError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifier.errors import VerifierError

MIB = 1024 * 1024


class LimitExceededError(VerifierError):
    """An input went past one of the limits; `code` says which one."""

    code = "verifier.limit_exceeded"


class InvalidLimitsError(VerifierError):
    """A `Limits` value that cannot be enforced (zero, negative, or inconsistent)."""

    code = "verifier.invalid_limits"


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one validation of one untrusted PDF may consume."""

    max_bytes: int = 64 * MIB
    """Largest PDF accepted, checked before a worker sees it."""

    max_objects: int = 500_000
    """Most indirect objects a PDF may declare (cross-reference entries)."""

    max_decompressed_bytes: int = 256 * MIB
    """Most bytes all decoded streams of one PDF may expand to, together."""

    max_depth: int = 64
    """Deepest nesting of arrays and dictionaries the parser follows."""

    cpu_seconds: int = 20
    """CPU time one validation may use (RLIMIT_CPU, whole seconds: the kernel's unit)."""

    wall_seconds: float = 30.0
    """Wall time one validation may take before the pool kills its worker."""

    memory_bytes: int = 1024 * MIB
    """Address space of a worker (RLIMIT_AS); it includes the interpreter and libraries."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_objects", "max_decompressed_bytes", "max_depth"):
            if getattr(self, name) < 1:
                raise InvalidLimitsError(f"{name} must be at least 1")
        if self.cpu_seconds < 1:
            raise InvalidLimitsError("cpu_seconds must be at least 1")
        if not self.wall_seconds > 0:
            raise InvalidLimitsError("wall_seconds must be positive")
        # Below this the interpreter cannot even import the validation stack.
        if self.memory_bytes < 64 * MIB:
            raise InvalidLimitsError("memory_bytes must be at least 64 MiB")
        if self.max_decompressed_bytes >= self.memory_bytes:
            raise InvalidLimitsError("max_decompressed_bytes must be below memory_bytes")


def check_input_size(data: bytes, limits: Limits) -> None:
    """Refuse an input too large to hand to a worker at all."""
    if len(data) > limits.max_bytes:
        raise LimitExceededError(
            f"the PDF is {len(data)} bytes; at most {limits.max_bytes} are accepted",
            code="verifier.input_too_large",
        )
    if not data:
        raise LimitExceededError("the PDF is empty", code="verifier.empty_input")


_active: Limits | None = None


def activate_limits(limits: Limits) -> None:
    """Record the limits a worker process enforces (called once by its initializer)."""
    global _active
    _active = limits


def active_limits() -> Limits:
    """The limits of this worker process; defaults outside a worker (tests, CLI)."""
    return _active if _active is not None else Limits()
