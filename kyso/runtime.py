"""What the running service holds: settings, database engine, HSM pool, and the services
built on them."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from audit.log import AuditLog
from hsm import KeyInfo, SessionPool
from kyso.access.activation import SignatureActivation
from kyso.access.limits import RateLimiter
from kyso.access.store import AccessStore
from kyso.access.tokens import TokenIssuer
from kyso.csc import CscService
from kyso.pki_service import PkiServices
from kyso.settings import Settings
from kyso.signing import SigningServices
from signer.batches import BatchRunner

if TYPE_CHECKING:  # the verifier's modules load when the first verification needs them
    from kyso.verification import VerificationService

log = logging.getLogger("kyso")


@dataclass(frozen=True, kw_only=True)
class Runtime:
    settings: Settings
    engine: Engine
    hsm: SessionPool
    audit: AuditLog | None = None
    """The audit log (``None`` only if it could not be opened)."""
    audit_vkey: str | None = None
    """Verifier key of the checkpoint key, when the token has one."""
    pki: PkiServices | None = None
    """The CA, OCSP responder and TSA."""
    signing: SigningServices | None = None
    """PAdES signing, the document registry and the stamp images."""
    batches: BatchRunner | None = None
    """Signing batches, worked on in background threads of this process."""
    verification: VerificationService | None = None
    """Verification of untrusted PDFs in isolated worker processes (started on first use)."""
    access: AccessStore | None = None
    """People who sign in, their sessions, service clients."""
    access_tokens: TokenIssuer | None = None
    """Issues and checks access tokens (``None`` while the HSM key is missing)."""
    activation: SignatureActivation | None = None
    """Signature activation data: who may activate which credential, and their SADs."""
    csc: CscService | None = None
    """The CSC API's operations (v1 and v2)."""
    limits: RateLimiter | None = None
    """Rate limits on sign-in, signature activation and signing."""


def report_key_problems(keys: list[KeyInfo]) -> list[KeyInfo]:
    """Log every key that must not sign (extractable or once exportable); return them."""
    refused = [k for k in keys if k.problems]
    for key in refused:
        log.warning(
            "HSM key refused for signing",
            extra={"key_id": key.key_id.hex(), "label": key.label, "problems": list(key.problems)},
        )
    return refused
