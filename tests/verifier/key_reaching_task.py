"""A task module that imports the HSM package: a pool must refuse to run it."""

from __future__ import annotations

from typing import Any

import hsm


def run(data: bytes, options: dict[str, Any]) -> str:
    return hsm.__name__
