"""Append-only, Merkle-tree audit log with HSM-signed checkpoints.

A leaf package: it never imports a domain package and signs its checkpoints through
a signing callable handed to it by the composition root (a :class:`NoteSigner`).

This is the pure core an auditor can run offline with the log's public key alone:

* :mod:`audit.events` — the closed event model and its canonical (RFC 8785) leaf bytes;
* :mod:`audit.merkle` — RFC 9162 tree hashing, proofs from stored subtree hashes, and
  proof verification;
* :mod:`audit.note` — C2SP signed notes and tlog-checkpoints (Ed25519, ECDSA P-256).
"""

from audit.errors import (
    AuditError,
    EventError,
    EventFailure,
    NoteError,
    NoteFailure,
    ProofError,
    ProofFailure,
)
from audit.events import Action, Actor, AuditEvent, DetailValue, Outcome, Subject
from audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    NodeReader,
    TreeBuilder,
    consistency_proof,
    consistency_proof_nodes,
    frontier_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    node_hash,
    root,
    root_at,
    subtree_hash,
    verify_consistency,
    verify_inclusion,
)
from audit.note import (
    Checkpoint,
    Fork,
    NoteSignature,
    NoteSigner,
    NoteVerifier,
    OpenedNote,
    SignatureType,
    VerifiedCheckpoint,
    compute_key_id,
    find_fork,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint_consistency,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Action",
    "Actor",
    "AuditError",
    "AuditEvent",
    "Checkpoint",
    "DetailValue",
    "EventError",
    "EventFailure",
    "Fork",
    "NodeReader",
    "NoteError",
    "NoteFailure",
    "NoteSignature",
    "NoteSigner",
    "NoteVerifier",
    "OpenedNote",
    "Outcome",
    "ProofError",
    "ProofFailure",
    "SignatureType",
    "Subject",
    "TreeBuilder",
    "VerifiedCheckpoint",
    "compute_key_id",
    "consistency_proof",
    "consistency_proof_nodes",
    "find_fork",
    "frontier_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "root",
    "root_at",
    "sign_checkpoint",
    "sign_note",
    "subtree_hash",
    "verify_checkpoint_consistency",
    "verify_consistency",
    "verify_inclusion",
]
