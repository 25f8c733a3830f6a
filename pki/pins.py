"""Signing PINs: the policy a PIN must meet and how it is stored (argon2id).

Key-free: this module neither reaches the HSM nor a signing key. The counting, the lock
and the audit events live in :class:`pki.authority.Authority` (``set_pin``,
``check_pin``, ``unlock_pin``), next to the credential records they change.

What protects a PIN is the lock after :data:`MAX_FAILURES` consecutive wrong tries, not
the key-derivation function: a 6-digit PIN has a million values, which no affordable
argon2 cost keeps from an attacker who has read the hashes. The hash only keeps the PIN
from being *read* out of a database dump or a backup, and makes trying all long
passphrases costly. The parameters are therefore chosen for the signing path (the check
runs on every sign request), not for password-grade cost: see :data:`HASHER`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from pki.errors import InvalidInputError

MIN_PIN = 6
"""Fewest characters of a PIN."""

MAX_PIN = 32
"""Most characters of a PIN; a longer input is refused before it is hashed."""

MAX_FAILURES = 5
"""Consecutive wrong PINs that lock a credential; only an administrator unlocks it."""

_PIN = re.compile(rf"[\x21-\x7e]{{{MIN_PIN},{MAX_PIN}}}", re.ASCII)
"""Printable ASCII without spaces: typed the same on every keyboard and terminal, and
never changed by Unicode normalisation or a shell's word splitting."""

_DIGITS = "0123456789"

HASHER = PasswordHasher(
    time_cost=2,
    memory_cost=8 * 1024,  # KiB
    parallelism=1,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
"""argon2id, 2 passes over 8 MiB, one lane: about 8 ms per check on this project's
machine (2 cores), well inside the 50 ms budget of a sign request, and 8 MiB per check in
flight. argon2-cffi releases the GIL while hashing, so checks run in parallel threads.
Stored hashes are PHC strings that name their parameters: changing these only makes
new hashes, and a stored hash with other parameters is re-hashed at its next right PIN."""


def check_policy(pin: str) -> str:
    """``pin`` if it meets the policy, else :class:`~pki.errors.InvalidInputError`
    (``pki.pin_policy``). The message never repeats the PIN.

    The policy: :data:`MIN_PIN` to :data:`MAX_PIN` printable ASCII characters without
    spaces (digits only is fine); not one character repeated (``000000``) and not a run of
    consecutive digits up or down (``123456``, ``987654``).
    """
    if not isinstance(pin, str) or not _PIN.fullmatch(pin):
        raise InvalidInputError(
            f"a PIN is {MIN_PIN} to {MAX_PIN} printable ASCII characters without spaces",
            code="pki.pin_policy",
        )
    if len(set(pin)) == 1 or pin in _DIGITS or pin in _DIGITS[::-1]:
        raise InvalidInputError(
            "a PIN may not be one repeated character or a run of consecutive digits",
            code="pki.pin_policy",
        )
    return pin


def hash_pin(pin: str) -> str:
    """The argon2id PHC string of a PIN that meets the policy."""
    return HASHER.hash(check_policy(pin))


def verify_pin(stored: str | None, pin: str) -> bool:
    """Whether ``pin`` is the PIN ``stored`` was made from.

    Always costs one hash, also when there is no stored hash or ``pin`` could never be a
    PIN, so that the time taken does not tell a credential without a PIN (or a malformed
    try) from a wrong PIN.
    """
    well_formed = isinstance(pin, str) and _PIN.fullmatch(pin) is not None
    # A stand-in is hashed for a malformed try: that may not even encode (a lone surrogate
    # from JSON), and its length must not set the hashing work.
    candidate = pin if well_formed else "-"
    try:
        matched: bool = HASHER.verify(stored or _decoy(), candidate)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        matched = False
    return matched and well_formed and stored is not None


class VerifiedPins:
    """PINs this process verified lately, so that a signer's next request within
    :attr:`ttl` costs an HMAC instead of an argon2 hash (≈ 8–14 ms on the signing path).

    Only right PINs are remembered, keyed by the credential and its stored hash (a new PIN or
    a re-hash forgets them), as an HMAC under a random key that never leaves the process.
    Wrong PINs always cost a hash and are always counted; a lock is read from the database
    on every check, so remembering never lets a locked credential sign. What it gives away:
    a remembered right PIN is answered faster than a wrong one, which the answer tells
    anyway.
    """

    def __init__(self, *, ttl: float = 300.0, capacity: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._ttl = ttl
        self._capacity = capacity
        self._lock = threading.Lock()
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def _tag(self, credential_id: int, stored: str, pin: str) -> bytes:
        message = f"{credential_id}\0{stored}\0{pin}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def knows(self, credential_id: int, stored: str, pin: str) -> bool:
        tag = self._tag(credential_id, stored, pin)
        now = time.monotonic()
        with self._lock:
            until = self._seen.get(tag)
            if until is None:
                return False
            if until < now:
                del self._seen[tag]
                return False
            return True

    def remember(self, credential_id: int, stored: str, pin: str) -> None:
        tag = self._tag(credential_id, stored, pin)
        with self._lock:
            self._seen[tag] = time.monotonic() + self._ttl
            self._seen.move_to_end(tag)
            while len(self._seen) > self._capacity:
                self._seen.popitem(last=False)


def needs_rehash(stored: str) -> bool:
    """Whether a stored hash was made with other parameters than :data:`HASHER`'s."""
    try:
        return HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


@functools.cache
def _decoy() -> str:
    """A hash of a random PIN nobody knows, made once per process, to verify against
    when a credential has no PIN."""
    return HASHER.hash(secrets.token_urlsafe(24))
