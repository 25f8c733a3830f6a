"""The audit log's checkpoint key: created on the HSM by ``kyso init``, used through the
signing callable that ``audit`` expects (``audit`` itself never imports ``hsm``)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from audit.note import NoteVerifier, SignatureType
from hsm import BlockingSessionPool, HashAlg, KeyInfo, KeySpec, SignScheme
from kyso.errors import KysoError
from kyso.keys import find_labelled_key

AUDIT_KEY_LABEL = "kyso-audit-checkpoints"
"""Label of the checkpoint key on the token; exactly one usable key carries it."""


def find_audit_key(keys: Iterable[KeyInfo]) -> KeyInfo | None:
    """The audit key among a token's keys (as listed by the pool)."""
    return find_labelled_key(keys, AUDIT_KEY_LABEL, "audit keys")


def ensure_audit_key(pool: BlockingSessionPool) -> tuple[KeyInfo, bool]:
    """The audit key, generated when absent: Ed25519 when the token has it (C2SP signed
    notes' native type), otherwise ECDSA P-256 (signed-note type 0x02). True if created."""
    existing = find_audit_key(pool.list_keys())
    if existing is not None:
        return existing, False
    spec = KeySpec.ED25519 if pool.supports(KeySpec.ED25519) else KeySpec.EC_P256
    return pool.generate_key(spec, label=AUDIT_KEY_LABEL), True


@dataclass(frozen=True)
class HsmNoteSigner:
    """A C2SP note signer whose private key stays on the HSM (``audit.note.NoteSigner``)."""

    pool: BlockingSessionPool
    key: KeyInfo
    origin: str
    """The log's origin, which is also the key name on signature lines."""
    verifier: NoteVerifier = field(init=False)

    def __post_init__(self) -> None:
        if self.key.public_key is None:
            raise KysoError(f"audit key {self.key.key_id.hex()} has no public half on the token")
        verifier = NoteVerifier.from_public_key(self.origin, self.key.public_key)
        object.__setattr__(self, "verifier", verifier)

    @property
    def name(self) -> str:
        return self.origin

    @property
    def key_id(self) -> bytes:
        return self.verifier.key_id

    @property
    def signature_type(self) -> int:
        return int(self.verifier.signature_type)

    def sign(self, message: bytes) -> bytes:
        if self.verifier.signature_type is SignatureType.ED25519:
            return self.pool.sign_message(self.key.key_id, message)
        # Signed-note type 0x02 is ECDSA over SHA-256 of the text, DER-encoded, which is
        # what the pool returns for ECDSA.
        digest = hashlib.sha256(message).digest()
        return self.pool.sign_digest(
            self.key.key_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
        )

    def vkey(self) -> str:
        """The verifier key an auditor needs, in the ``name+keyid+base64`` text form."""
        return self.verifier.to_vkey()
