"""One error root for the audit log, with stable codes.

Every failure carries a ``reason`` from a closed enum whose value is the stable code, so an
auditor's report, an HTTP error body and a test can all name the exact check that failed
without parsing a message. Messages never contain a PIN, a password or key material: the
event model refuses such values before they could reach an error text.
"""

from __future__ import annotations

import enum


class AuditError(Exception):
    """Root of every error raised by :mod:`audit`."""

    code: str = "audit.error"
    """Stable, machine-readable code; never changes once published."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def diagnostics(self) -> str:
        """A one-paragraph explanation for operators and auditors, including what to try."""
        return f"{self.message} [{self.code}]"


class EventFailure(enum.Enum):
    """Why an audit event or a leaf was refused; the value is the stable code."""

    INVALID = "audit.event.invalid"
    """A field is missing, of the wrong type, out of bounds or badly formatted."""

    TOO_LARGE = "audit.event.too_large"
    """The event's canonical leaf, or the leaf handed to the parser, exceeds the size bound."""

    SECRET_REFUSED = "audit.secret_refused"  # noqa: S105 - an error code, not a password
    """A detail key or value looks like a PIN, password, SAD, token or private key."""

    MALFORMED_LEAF = "audit.leaf.malformed"
    """The leaf bytes are not UTF-8 JSON of the expected shape."""

    NON_CANONICAL_LEAF = "audit.leaf.not_canonical"
    """The leaf is valid JSON but not the exact RFC 8785 bytes Kyso writes."""


class EventError(AuditError):
    """An audit event or leaf is invalid; ``reason`` says which rule it broke."""

    def __init__(self, message: str, *, reason: EventFailure) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason.value

    def diagnostics(self) -> str:
        hint = {
            EventFailure.SECRET_REFUSED: (
                "The audit log is public to auditors and append-only: a secret written there "
                "can never be removed. Drop the value, or record a non-secret fact about it "
                "(for example the number of tries left instead of the PIN)."
            ),
            EventFailure.NON_CANONICAL_LEAF: (
                "Auditors recompute leaf hashes over these exact bytes; a leaf that is not in "
                "canonical form was not written by Kyso or was altered afterwards."
            ),
        }.get(self.reason)
        base = super().diagnostics()
        return f"{base}. {hint}" if hint else base


class ProofFailure(enum.Enum):
    """Why a Merkle proof could not be produced or did not verify; the value is the code."""

    BAD_SIZE = "audit.proof.bad_size"
    """A tree size or leaf index is negative, not an integer, or beyond 2**63 - 1."""

    EMPTY_TREE = "audit.proof.empty_tree"
    """An inclusion proof was asked for in a tree of size 0, which contains no leaf."""

    INDEX_OUT_OF_RANGE = "audit.proof.index_out_of_range"
    """The leaf index is not smaller than the tree size."""

    SIZE_ORDER = "audit.proof.size_order"
    """A consistency proof was asked from a larger tree to a smaller one."""

    BAD_RANGE = "audit.proof.bad_range"
    """A leaf range is empty or is not a node of the tree (unaligned start)."""

    MALFORMED_HASH = "audit.proof.malformed_hash"
    """A leaf hash, root or proof element is not a 32-byte SHA-256 value."""

    WRONG_LENGTH = "audit.proof.wrong_length"
    """The proof has more or fewer hashes than the sizes require."""

    ROOT_MISMATCH = "audit.proof.root_mismatch"
    """The proof is well formed but leads to a different root: wrong leaf, proof or root."""


class ProofError(AuditError):
    """A Merkle inclusion or consistency proof is invalid; ``reason`` says why."""

    def __init__(self, message: str, *, reason: ProofFailure) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason.value

    def diagnostics(self) -> str:
        base = super().diagnostics()
        if self.reason is ProofFailure.ROOT_MISMATCH:
            return (
                f"{base}. Either the leaf or a proof hash was altered, or the log presented "
                "a different history than the one the root commits to; keep both signed "
                "checkpoints and the proof as evidence."
            )
        return base


class NoteFailure(enum.Enum):
    """Why a signed note, checkpoint or verifier key was refused; the value is the code."""

    MALFORMED = "audit.note.malformed"
    """Not a signed note: bad UTF-8, control characters, no signature block, bad base64."""

    TOO_LARGE = "audit.note.too_large"
    """The note exceeds the size or signature-count bound."""

    INVALID_CHECKPOINT = "audit.note.invalid_checkpoint"
    """The note text is not a C2SP tlog-checkpoint body."""

    INVALID_KEY = "audit.note.invalid_key"
    """A verifier key (vkey or public key) is malformed, unsupported or has a wrong key ID."""

    INVALID_SIGNER = "audit.note.invalid_signer"
    """A signer has a bad name or key ID, or returned a signature of the wrong shape."""

    UNKNOWN_KEY = "audit.note.unknown_key"
    """Signed under a trusted key name but with a key ID no trusted key has."""

    BAD_SIGNATURE = "audit.note.bad_signature"
    """A signature by a trusted key does not verify: the note was altered or forged."""

    NO_TRUSTED_SIGNATURE = "audit.note.no_trusted_signature"
    """The note carries no signature by any trusted key."""

    ORIGIN_MISMATCH = "audit.note.origin_mismatch"
    """The checkpoint belongs to another log than the one expected."""

    FORK = "audit.note.fork"
    """Two checkpoints of one log have the same size and different roots."""


class NoteError(AuditError):
    """A signed note, checkpoint or verifier key is invalid; ``reason`` says why."""

    def __init__(self, message: str, *, reason: NoteFailure) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason.value

    def diagnostics(self) -> str:
        hint = {
            NoteFailure.UNKNOWN_KEY: (
                "The log may have rotated its key, or the note was signed by an impostor "
                "using the log's name; obtain the new verifier key through a trusted channel."
            ),
            NoteFailure.BAD_SIGNATURE: ("Do not trust any part of this note; keep it as evidence."),
            NoteFailure.FORK: (
                "The log showed two different histories of the same size: this is proof of "
                "misbehaviour or compromise. Keep both signed checkpoints as evidence."
            ),
        }.get(self.reason)
        base = super().diagnostics()
        return f"{base}. {hint}" if hint else base


class LogFailure(enum.Enum):
    """Why the stored log refused a request or an operation; the value is the stable code."""

    INCONSISTENT = "audit.inconsistent"
    """The stored tree does not extend the last signed checkpoint; nothing was signed."""

    BEYOND_LOG = "audit.log.beyond_size"
    """A tree size, leaf index or entry range reaches past what the log has sequenced."""

    BAD_RANGE = "audit.log.bad_range"
    """An entry range is empty, reversed, negative or longer than one page."""

    NO_SIGNER = "audit.log.no_signer"
    """A checkpoint was asked of a log that was built without a note signer."""

    STORAGE = "audit.log.storage"
    """The database refused or lost a read or write of the log."""


class LogError(AuditError):
    """The stored audit log refused a request or failed; ``reason`` says why."""

    def __init__(self, message: str, *, reason: LogFailure) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = reason.value

    def diagnostics(self) -> str:
        base = super().diagnostics()
        if self.reason is LogFailure.INCONSISTENT:
            return (
                f"{base}. The stored tree was altered after a checkpoint was signed, or the "
                "database was restored from an older copy. Do not sign anything: run "
                "'verify_database' to locate the first bad index and keep the database as "
                "evidence."
            )
        return base
