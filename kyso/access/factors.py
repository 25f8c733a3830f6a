"""What people and services prove themselves with: passwords (argon2id), TOTP codes
(RFC 6238), client secrets; each checked in constant time and never logged."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import secrets
import time

import pyotp
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from kyso.access.model import InvalidAccessInputError

MIN_PASSWORD = 12
"""Fewest characters of a password."""

MAX_PASSWORD = 128
"""Most characters of a password; a longer input is refused before it is hashed."""

TOTP_DIGITS = 6
TOTP_STEP = 30
"""Seconds per TOTP code (RFC 6238 defaults, what authenticator apps expect)."""

TOTP_WINDOW = 1
"""Steps accepted either side of now: a code typed as it changed, a clock 30 s off."""

HASHER = PasswordHasher(
    time_cost=3,
    memory_cost=64 * 1024,  # KiB
    parallelism=2,
    hash_len=32,
    salt_len=16,
    type=Type.ID,
)
"""argon2id, 3 passes over 64 MiB (RFC 9106's second recommended option, scaled to two
lanes): a password is checked at sign-in only, so it can cost far more than a PIN."""

_CODE = re.compile(r"[0-9]{6}", re.ASCII)


def check_password_policy(password: str) -> str:
    """``password`` if it is :data:`MIN_PASSWORD` to :data:`MAX_PASSWORD` characters and
    not one repeated character; else :class:`InvalidAccessInputError`. The message never
    repeats the password."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidAccessInputError(
            f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters long"
        )
    if len(set(password)) == 1:
        raise InvalidAccessInputError("a password may not be one repeated character")
    return password


def hash_password(password: str) -> str:
    return HASHER.hash(check_password_policy(password))


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` made ``stored``. Costs one hash also when there is no account
    (``stored`` None) or the input could never be a password, so that the time taken
    does not tell those cases from a wrong password."""
    well_formed = isinstance(password, str) and 0 < len(password) <= MAX_PASSWORD
    try:
        matched: bool = HASHER.verify(stored or _decoy(), password if well_formed else "-")
    except (VerifyMismatchError, VerificationError, InvalidHashError, UnicodeEncodeError):
        matched = False
    return matched and well_formed and stored is not None


@functools.cache
def _decoy() -> str:
    """A hash of a random password, to verify against when there is no account."""
    return HASHER.hash(secrets.token_urlsafe(16))


def new_totp_secret() -> str:
    """A random RFC 6238 secret (160 bits, base32), as authenticator apps take it."""
    return pyotp.random_base32(32)


def totp_uri(secret: str, account: str, issuer: str = "Kyso") -> str:
    """The ``otpauth://`` URI an authenticator app scans (as a QR code) to enrol."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).provisioning_uri(
        name=account, issuer_name=issuer
    )


def totp_now(secret: str, at: float | None = None) -> str:
    """The code for ``secret`` at ``at`` (now): what an authenticator app shows."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP).at(at or time.time())


def match_totp(
    secret: str, code: str, *, after_step: int | None, at: float | None = None
) -> int | None:
    """The time step ``code`` belongs to, if it is valid now (within :data:`TOTP_WINDOW`)
    and later than ``after_step`` (the last one accepted, so that no code is used twice);
    else ``None``. Every step of the window is compared, in constant time."""
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        return None
    now = int(at if at is not None else time.time()) // TOTP_STEP
    totp = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP)
    found = None
    for step in range(now - TOTP_WINDOW, now + TOTP_WINDOW + 1):
        expected = totp.generate_otp(step)
        if hmac.compare_digest(expected, code) and (after_step is None or step > after_step):
            found = step
    return found


def new_client_secret() -> str:
    """A random client secret: 256 bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def new_session_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    """SHA-256 of a high-entropy secret (client secret, session id), hex: what is stored.
    A random 256-bit secret needs no slow hash; a database dump does not give it away."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def digests_match(stored: str | None, secret: str) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time."""
    if stored is None or not isinstance(secret, str) or len(secret) > 512:
        return False
    return hmac.compare_digest(stored, digest(secret))
