"""Short-lived access tokens: JWTs (RFC 9068 profile) signed ES256 by a key on the HSM.

``kyso init`` creates the key (label :data:`TOKEN_KEY_LABEL`, EC P-256, never
extractable). Issuing a token is one signature on the token; checking one needs only the
public key, in process. A token names its subject (``client:<client_id>``), its scopes
and its unit, and lasts :attr:`TokenIssuer.lifetime` (10 minutes by default): a revoked
client is refused at once anyway, because every request also looks the client up.

``kyso init`` also creates the AES-256 key that seals the accounts' TOTP secrets
(:data:`SECRETS_KEY_LABEL`), used through :class:`HsmSealer`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import load_der_public_key

from hsm import (
    BlockingSessionPool,
    HashAlg,
    HsmKeyNotFoundError,
    HsmSealedDataError,
    KeyInfo,
    KeySpec,
    SecretKeyInfo,
    SignScheme,
)
from kyso.access.model import InvalidTokenError
from kyso.access.store import SealerMissingError
from kyso.errors import KysoError
from kyso.keys import find_labelled_key

TOKEN_KEY_LABEL = "kyso-access-tokens"  # noqa: S105  (a key label)
"""Label of the token-signing key on the HSM; exactly one usable key carries it."""

AUDIENCE = "kyso"
TOKEN_TYPE = "at+jwt"  # noqa: S105  (RFC 9068 media type)
ALGORITHM = "ES256"
MAX_TOKEN_CHARS = 4096


def find_token_key(keys: Iterable[KeyInfo]) -> KeyInfo | None:
    """The token-signing key among a token's keys (as listed by the pool)."""
    return find_labelled_key(keys, TOKEN_KEY_LABEL, "access-token keys")


def ensure_token_key(pool: BlockingSessionPool) -> tuple[KeyInfo, bool]:
    """The token-signing key, generated on the HSM when absent; True if created."""
    existing = find_token_key(pool.list_keys())
    if existing is not None:
        return existing, False
    return pool.generate_key(KeySpec.EC_P256, label=TOKEN_KEY_LABEL), True


SECRETS_KEY_LABEL = "kyso-access-secrets"
"""Label of the AES-256 key on the HSM that seals the accounts' TOTP secrets."""


def ensure_secrets_key(pool: BlockingSessionPool) -> tuple[SecretKeyInfo, bool]:
    """The key that seals the accounts' TOTP secrets, generated on the HSM when absent;
    True if created. A weak key under the label is an error, not replaced: what it
    sealed opens with it only."""
    existing = pool.find_secret_key(SECRETS_KEY_LABEL)
    if existing is None:
        return pool.generate_secret_key(SECRETS_KEY_LABEL), True
    if existing.problems:
        raise KysoError(
            f"the access-secrets key {existing.key_id.hex()} is refused: "
            + "; ".join(existing.problems)
        )
    return existing, False


@dataclass(frozen=True)
class HsmSealer:
    """Seals the accounts' TOTP secrets with :data:`SECRETS_KEY_LABEL` on the HSM (a
    :class:`kyso.access.store.SecretSealer`). An unreachable token raises the pool's
    :class:`hsm.HsmError`, which the service answers as for any HSM outage."""

    pool: BlockingSessionPool

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        try:
            return self.pool.seal(SECRETS_KEY_LABEL, plaintext, aad)
        except HsmKeyNotFoundError as ex:
            raise _no_key() from ex

    def unseal(self, sealed: bytes, aad: bytes) -> bytes | None:
        try:
            return self.pool.unseal(SECRETS_KEY_LABEL, sealed, aad)
        except HsmSealedDataError:
            return None
        except HsmKeyNotFoundError as ex:
            raise _no_key() from ex


def _no_key() -> SealerMissingError:
    return SealerMissingError(
        f"the key {SECRETS_KEY_LABEL!r} that seals the accounts' second-factor secrets is not "
        "on the token; run `kyso init`"
    )


@dataclass(frozen=True, kw_only=True)
class TokenClaims:
    """What a valid token says."""

    subject: str
    scope: str
    unit_id: int | None
    expires_at: datetime
    token_id: str


class TokenIssuer:
    """Signs access tokens with the HSM key and checks them with its public half."""

    def __init__(
        self,
        *,
        sign_digest: Callable[[bytes], bytes],
        public_key_der: bytes,
        issuer: str,
        lifetime: timedelta = timedelta(minutes=10),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        key = load_der_public_key(public_key_der)
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
            raise KysoError("the access-token key must be EC P-256")
        self._sign_digest = sign_digest
        self._public_key = key
        self._key_id = hashlib.sha256(public_key_der).hexdigest()[:16]
        self.issuer = issuer
        self.lifetime = lifetime
        self._clock = clock or (lambda: datetime.now(UTC))

    @classmethod
    def on_hsm(
        cls, pool: BlockingSessionPool, key: KeyInfo, *, issuer: str, lifetime: timedelta
    ) -> TokenIssuer:
        if key.public_key is None:
            raise KysoError(f"access-token key {key.key_id.hex()} has no public half on the token")

        def sign_digest(digest: bytes) -> bytes:
            return pool.sign_digest(
                key.key_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
            )

        return cls(
            sign_digest=sign_digest,
            public_key_der=key.public_key,
            issuer=issuer,
            lifetime=lifetime,
        )

    def issue(
        self, *, subject: str, scope: str, unit_id: int | None, client_id: str
    ) -> tuple[str, int]:
        """A signed token and its lifetime in seconds."""
        now = self._clock()
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": subject,
            "client_id": client_id,
            "scope": scope,
            "iat": int(now.timestamp()),
            "exp": int((now + self.lifetime).timestamp()),
            "jti": secrets.token_urlsafe(16),
        }
        if unit_id is not None:
            claims["unit"] = unit_id
        header = {"alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self._key_id}
        signing_input = f"{_b64(_json(header))}.{_b64(_json(claims))}".encode("ascii")
        r, s = decode_dss_signature(self._sign_digest(hashlib.sha256(signing_input).digest()))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return f"{signing_input.decode('ascii')}.{_b64(signature)}", int(
            self.lifetime.total_seconds()
        )

    def check(self, token: str) -> TokenClaims:
        """The claims of ``token`` if Kyso issued it and it has not expired; else
        :class:`InvalidTokenError` (never saying more than that)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
            raise InvalidTokenError("the access token is not valid")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != TOKEN_TYPE or header.get("kid") != self._key_id:
                raise InvalidTokenError("the access token is not valid")
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=5,
                options={"require": ["exp", "iat", "sub", "jti", "scope"]},
            )
        except jwt.PyJWTError as ex:
            raise InvalidTokenError("the access token is not valid") from ex
        unit = claims.get("unit")
        if not isinstance(claims["scope"], str) or not (unit is None or isinstance(unit, int)):
            raise InvalidTokenError("the access token is not valid")
        return TokenClaims(
            subject=str(claims["sub"]),
            scope=claims["scope"],
            unit_id=unit,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_id=str(claims["jti"]),
        )


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
