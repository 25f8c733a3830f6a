"""The error root: one base class, stable codes, diagnostics that name the code."""

from __future__ import annotations

import pytest

from audit import (
    AuditError,
    EventError,
    EventFailure,
    NoteError,
    NoteFailure,
    ProofError,
    ProofFailure,
)

PUBLISHED_CODES = {
    EventFailure.INVALID: "audit.event.invalid",
    EventFailure.TOO_LARGE: "audit.event.too_large",
    EventFailure.SECRET_REFUSED: "audit.secret_refused",
    EventFailure.MALFORMED_LEAF: "audit.leaf.malformed",
    EventFailure.NON_CANONICAL_LEAF: "audit.leaf.not_canonical",
    ProofFailure.BAD_SIZE: "audit.proof.bad_size",
    ProofFailure.EMPTY_TREE: "audit.proof.empty_tree",
    ProofFailure.INDEX_OUT_OF_RANGE: "audit.proof.index_out_of_range",
    ProofFailure.SIZE_ORDER: "audit.proof.size_order",
    ProofFailure.BAD_RANGE: "audit.proof.bad_range",
    ProofFailure.MALFORMED_HASH: "audit.proof.malformed_hash",
    ProofFailure.WRONG_LENGTH: "audit.proof.wrong_length",
    ProofFailure.ROOT_MISMATCH: "audit.proof.root_mismatch",
    NoteFailure.MALFORMED: "audit.note.malformed",
    NoteFailure.TOO_LARGE: "audit.note.too_large",
    NoteFailure.INVALID_CHECKPOINT: "audit.note.invalid_checkpoint",
    NoteFailure.INVALID_KEY: "audit.note.invalid_key",
    NoteFailure.INVALID_SIGNER: "audit.note.invalid_signer",
    NoteFailure.UNKNOWN_KEY: "audit.note.unknown_key",
    NoteFailure.BAD_SIGNATURE: "audit.note.bad_signature",
    NoteFailure.NO_TRUSTED_SIGNATURE: "audit.note.no_trusted_signature",
    NoteFailure.ORIGIN_MISMATCH: "audit.note.origin_mismatch",
    NoteFailure.FORK: "audit.note.fork",
}


def test_codes_are_published_and_unique() -> None:
    every = [*EventFailure, *ProofFailure, *NoteFailure]
    assert {reason: reason.value for reason in every} == PUBLISHED_CODES
    assert len(set(PUBLISHED_CODES.values())) == len(PUBLISHED_CODES)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (EventError("bad", reason=EventFailure.INVALID), "audit.event.invalid"),
        (ProofError("bad", reason=ProofFailure.WRONG_LENGTH), "audit.proof.wrong_length"),
        (NoteError("bad", reason=NoteFailure.MALFORMED), "audit.note.malformed"),
    ],
)
def test_every_error_is_an_audit_error(error: AuditError, code: str) -> None:
    assert isinstance(error, AuditError)
    assert error.code == code
    assert str(error) == "bad"
    assert error.diagnostics() == f"bad [{code}]"


def test_root_error() -> None:
    error = AuditError("something")
    assert error.code == "audit.error"
    assert error.diagnostics() == "something [audit.error]"


def test_a_cause_is_kept() -> None:
    from audit import NoteVerifier

    with pytest.raises(NoteError, match="not a DER SubjectPublicKeyInfo") as caught:
        NoteVerifier.from_public_key("k", b"junk")
    assert isinstance(caught.value.__cause__, ValueError)
