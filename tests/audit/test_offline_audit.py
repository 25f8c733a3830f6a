"""End to end: a log writes events and signs checkpoints; an auditor checks it offline.

The auditor holds only the published vkey text, the leaves and the signed checkpoint notes,
and uses nothing but :mod:`audit`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from audit import (
    Action,
    Actor,
    AuditEvent,
    Checkpoint,
    EventError,
    NoteVerifier,
    Outcome,
    ProofError,
    ProofFailure,
    Subject,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    open_checkpoint,
    sign_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from tests.audit.signers import SoftwareSigner

ORIGIN = "kyso.example.vn/audit"
UNITS = ["Công an phường Bến Thành", "Công an xã Tân Phú", "Công an tỉnh Đồng Nai"]
START = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


@dataclass
class MemoryLog:
    """What the storage and sequencer will do, in memory: leaves, subtree rows, checkpoints."""

    signer: SoftwareSigner
    builder: TreeBuilder = field(default_factory=TreeBuilder)
    leaves: list[bytes] = field(default_factory=list)
    nodes: dict[tuple[int, int], bytes] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)

    def append(self, event: AuditEvent) -> int:
        leaf = event.leaf()
        for level, index, value in self.builder.append(leaf_hash(leaf)):
            self.nodes[level, index] = value
        self.leaves.append(leaf)
        return len(self.leaves) - 1

    def checkpoint(self) -> str:
        cp = Checkpoint(origin=ORIGIN, size=self.builder.size, root_hash=self.builder.root())
        note = sign_checkpoint(cp, [self.signer])
        self.checkpoints.append(note)
        return note

    def node(self, level: int, index: int) -> bytes:
        return self.nodes[level, index]


def make_event(i: int) -> AuditEvent:
    actions = [Action.DOCUMENT_SIGNED, Action.DOCUMENT_SEALED, Action.VERIFICATION_PERFORMED]
    return AuditEvent(
        time=START + timedelta(seconds=i, microseconds=i),
        action=actions[i % 3],
        actor=Actor(id=f"officer-{i % 17}", role="officer", unit=UNITS[i % 3]),
        subject=Subject(document_sha256=f"{i:064x}", request_id=f"req-{i}"),
        outcome=Outcome(success=True) if i % 11 else Outcome(success=False, code="hsm.pin_locked"),
        details={"pages": i % 5 + 1, "form": "CT07"},
    )


@pytest.fixture(scope="module")
def log() -> MemoryLog:
    log = MemoryLog(SoftwareSigner.ed25519(ORIGIN))
    for i in range(1000):
        log.append(make_event(i))
        if (i + 1) % 100 == 0:
            log.checkpoint()
    return log


def audit_log(vkey: str, leaves: list[bytes], notes: list[str]) -> list[int]:
    """Replay every leaf; return the checkpoint sizes whose signed root was reproduced.

    Raises at the first checkpoint whose root differs from the replayed leaves.
    """
    verifier = NoteVerifier.from_vkey(vkey)
    checkpoints = [open_checkpoint(n, [verifier], origin=ORIGIN).checkpoint for n in notes]
    by_size = {cp.size: cp for cp in checkpoints}
    builder, confirmed = TreeBuilder(), []
    for leaf in leaves:
        AuditEvent.from_leaf(leaf)  # every leaf is a canonical event
        builder.append(leaf_hash(leaf))
        cp = by_size.get(builder.size)
        if cp is not None:
            if builder.root() != cp.root_hash:
                raise AssertionError(f"root mismatch at checkpoint size {cp.size}")
            confirmed.append(cp.size)
    return confirmed


def test_auditor_reproduces_every_checkpoint(log: MemoryLog) -> None:
    vkey = log.signer.verifier().to_vkey()
    assert audit_log(vkey, log.leaves, log.checkpoints) == list(range(100, 1001, 100))


def test_auditor_checks_inclusion_and_consistency(log: MemoryLog) -> None:
    verifier = NoteVerifier.from_vkey(log.signer.verifier().to_vkey())
    cps = [open_checkpoint(n, [verifier]).checkpoint for n in log.checkpoints]
    for older, newer in itertools.pairwise(cps):
        proof = consistency_proof(older.size, newer.size, log.node)
        verify_consistency(older.size, newer.size, older.root_hash, newer.root_hash, proof)
    latest = cps[-1]
    for index in (0, 1, 250, 511, 512, 999):
        proof = inclusion_proof(index, latest.size, log.node)
        verify_inclusion(leaf_hash(log.leaves[index]), index, latest.size, proof, latest.root_hash)


def test_tampered_leaf_is_detected(log: MemoryLog) -> None:
    vkey = log.signer.verifier().to_vkey()
    original = log.leaves[250]
    edited = original.replace("Công an xã Tân Phú".encode(), "Công an xã Tân Phước".encode())
    assert edited != original
    AuditEvent.from_leaf(edited)  # still a well-formed event: only the hashes can tell
    leaves = [*log.leaves[:250], edited, *log.leaves[251:]]
    with pytest.raises(AssertionError, match="root mismatch at checkpoint size 300"):
        audit_log(vkey, leaves, log.checkpoints)

    latest = Checkpoint.parse(log.checkpoints[-1].split("\n\n")[0] + "\n")
    proof = inclusion_proof(250, latest.size, log.node)
    with pytest.raises(ProofError, match="leads to root") as caught:
        verify_inclusion(leaf_hash(edited), 250, latest.size, proof, latest.root_hash)
    assert caught.value.reason is ProofFailure.ROOT_MISMATCH


def test_deleted_leaf_is_detected(log: MemoryLog) -> None:
    vkey = log.signer.verifier().to_vkey()
    leaves = log.leaves[:420] + log.leaves[421:]
    with pytest.raises(AssertionError, match="root mismatch at checkpoint size 500"):
        audit_log(vkey, leaves, log.checkpoints)


def test_non_canonical_leaf_is_detected(log: MemoryLog) -> None:
    vkey = log.signer.verifier().to_vkey()
    leaves = [*log.leaves[:10], log.leaves[10] + b"\n", *log.leaves[11:]]
    with pytest.raises(EventError, match="not in RFC 8785 canonical form"):
        audit_log(vkey, leaves, log.checkpoints)
