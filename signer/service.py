"""Signing with the credentials of Kyso's authority, each prepared once.

:class:`SigningService` keeps, per credential, the encoded CMS parts
(:class:`~signer.cms.SigningCredential`) and the B-LT validation data
(:class:`~signer.ltv.ValidationData`), tagged with the PKI status generation at which the
credential was last found usable. Every signature reads the generation (one single-row
read); while it has not moved, nothing about the credential can have changed but the
clock, which is checked here. When it moves — a suspension, a revocation, a renewal
anywhere — the credential is checked against the database again before the next
signature, so a cache is never older than the last status change.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

from hsm import BlockingSessionPool
from pki.authority import Authority, Credential
from signer.cms import SigningCredential, Timestamper
from signer.errors import UnsupportedCredentialError
from signer.ltv import ValidationData, collect_validation_data
from signer.pades import MAX_DOCUMENT_SIZE, Level, sign_pdf
from signer.stamps import VisibleSignature
from signer.timestamps import timestamp_reserve as measure_reserve

DEFAULT_LEVEL: Level = "B-LT"


@dataclass(frozen=True, kw_only=True)
class _Prepared:
    generation: int
    credential: Credential
    signing: SigningCredential
    validation_data: ValidationData | None = None


class SigningService:
    """PAdES signing for every credential of one authority. Thread-safe; blocking."""

    def __init__(
        self,
        *,
        authority: Authority,
        pool: BlockingSessionPool,
        timestamper: Timestamper | None,
        timestamp_reserve: int | None = None,
        max_size: int = MAX_DOCUMENT_SIZE,
        rsa_pss: bool = False,
        own_tsa: bool = True,
    ) -> None:
        """``timestamper`` serves levels B-T and above; without it only B-B can be
        produced. ``timestamp_reserve`` is the largest token in bytes; by default one token
        is measured when a credential is first prepared (:func:`signer.timestamps.
        timestamp_reserve`). ``rsa_pss`` makes RSA credentials sign with RSASSA-PSS.
        ``own_tsa`` says the timestamper is Kyso's own TSA, whose certificate's status B-LT
        embeds; with an external TSA only B-B and B-T can be produced."""
        self._authority = authority
        self._pool = pool
        self._timestamper = timestamper
        self._reserve = timestamp_reserve
        self._max_size = max_size
        self._rsa_pss = rsa_pss
        self._own_tsa = own_tsa
        self._lock = threading.Lock()
        self._prepared: dict[int, _Prepared] = {}

    def credential(self, credential_id: int, *, level: Level = DEFAULT_LEVEL) -> Credential:
        """The credential, checked usable against the current status generation (raises
        :class:`~pki.errors.CredentialUnusableError` or ``NotFoundError`` otherwise)."""
        return self._usable(credential_id, level).credential

    def sign(
        self,
        pdf: bytes,
        credential_id: int,
        *,
        level: Level = DEFAULT_LEVEL,
        field_name: str = "Signature1",
        reason: str | None = None,
        location: str | None = None,
        appearance: VisibleSignature | None = None,
        certify: bool = False,
    ) -> bytes:
        """``pdf`` signed by ``credential_id`` at ``level``, visibly with ``appearance``,
        as a certification signature with ``certify`` (see :func:`signer.pades.sign_pdf`).
        The caller has authorised the use of the credential."""
        prepared = self._usable(credential_id, level)
        timestamped = level != "B-B"
        return sign_pdf(
            pdf,
            prepared.signing,
            self._pool,
            usable=None,  # checked by _usable against the current generation
            field_name=field_name,
            reason=reason,
            location=location,
            max_size=self._max_size,
            level=level,
            timestamper=self._timestamper if timestamped else None,
            validation_data=prepared.validation_data if level in ("B-LT", "B-LTA") else None,
            appearance=appearance,
            certify=certify,
        )

    def _usable(self, credential_id: int, level: Level) -> _Prepared:
        if level in ("B-LT", "B-LTA") and not self._own_tsa:
            raise UnsupportedCredentialError(
                f"PAdES {level} needs the status of the external TSA's certificate, which "
                "Kyso cannot fetch yet; use B-T, or Kyso's own TSA",
                code="signer.ltv_unavailable",
            )
        generation = self._authority.status_generation()
        now = datetime.now(UTC)
        with self._lock:
            prepared = self._prepared.get(credential_id)
        if prepared is None or prepared.generation != generation:
            credential = self._authority.usable_credential(credential_id, at=now)
            chain = credential.chain or self._authority.internal_chain()
            prepared = _Prepared(
                generation=generation,
                credential=credential,
                signing=SigningCredential.prepare(
                    credential,
                    chain,
                    timestamp_reserve=self._timestamp_reserve(),
                    rsa_pss=self._rsa_pss,
                ),
            )
        else:
            # The status cannot have changed (same generation); only time can end it.
            prepared.credential.check_usable(now)
        if level in ("B-LT", "B-LTA") and (
            prepared.validation_data is None
            or not prepared.validation_data.is_fresh(generation, now)
        ):
            prepared = _Prepared(
                generation=generation,
                credential=prepared.credential,
                signing=prepared.signing,
                validation_data=collect_validation_data(
                    self._authority, prepared.credential, now=now
                ),
            )
        with self._lock:
            self._prepared[credential_id] = prepared
        return prepared

    def _timestamp_reserve(self) -> int:
        if self._timestamper is None:
            return 0
        if self._reserve is None:
            self._reserve = measure_reserve(self._timestamper)
        return self._reserve
