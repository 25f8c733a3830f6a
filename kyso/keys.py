"""Keys that Kyso's own services keep on the token under a fixed label (the audit
checkpoint key, the access-token key): exactly one usable key may carry each label."""

from __future__ import annotations

from collections.abc import Iterable

from hsm import KeyInfo
from kyso.errors import KysoError


def find_labelled_key(keys: Iterable[KeyInfo], label: str, what: str) -> KeyInfo | None:
    """The one usable key labelled ``label`` among a token's keys (as the pool lists
    them), ``None`` if there is none; several are an error naming ``what`` they are."""
    usable = [k for k in keys if k.label == label and k.usable]
    if len(usable) > 1:
        ids = ", ".join(k.key_id.hex() for k in usable)
        raise KysoError(f"several usable {what} on the token ({ids}); keep one")
    return usable[0] if usable else None
