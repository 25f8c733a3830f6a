"""The stored log: admission in the caller's transaction, sequencing, proofs, checkpoints,
and the database self-audit against an attacker who can write to the database."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit import (
    Checkpoint,
    ProofError,
    TreeBuilder,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    open_checkpoint,
    root,
    sign_checkpoint,
    verify_consistency,
    verify_inclusion,
)
from audit.errors import LogError
from audit.events import Action, AuditEvent
from audit.log import MAX_ENTRIES_PAGE, AuditLog
from audit.store import drop_append_only_triggers
from audit.verify import Finding
from kyso.db import make_engine, upgrade
from tests.audit.conftest import ORIGIN, event
from tests.audit.signers import SoftwareSigner


@pytest.fixture
def log(engine: Engine, signer: SoftwareSigner) -> AuditLog:
    return AuditLog(engine=engine, origin=ORIGIN, signer=signer)


def add(engine: Engine, start: int, count: int, actor: str = "officer") -> None:
    with engine.begin() as connection:
        for i in range(start, start + count):
            AuditLog.append(connection, event(i, actor))


def tamper(engine: Engine, *statements: str) -> None:
    with engine.begin() as connection:
        drop_append_only_triggers(connection)
        for statement in statements:
            connection.execute(text(statement))


def all_leaf_hashes(log: AuditLog) -> list[bytes]:
    size = log.size()
    out: list[bytes] = []
    for start in range(0, size, MAX_ENTRIES_PAGE):
        out += [leaf_hash(e.leaf) for e in log.entries(start, min(size, start + MAX_ENTRIES_PAGE))]
    return out


# -- admission and sequencing -----------------------------------------------------------------


def test_rolled_back_append_leaves_nothing(engine: Engine, log: AuditLog) -> None:
    connection = engine.connect()
    transaction = connection.begin()
    AuditLog.append(connection, event(1))
    transaction.rollback()
    connection.close()
    assert log.backlog() == 0
    assert log.sequence() == 0
    assert log.size() == 0


def test_committed_entries_are_sequenced_in_admission_order(log: AuditLog, engine: Engine) -> None:
    with engine.begin() as connection:
        ids = [AuditLog.append(connection, event(i)) for i in range(7)]
    assert ids == sorted(ids)
    assert log.backlog() == 7
    assert log.sequence(max_batch=3) == 3
    assert log.sequence() == 4
    assert log.sequence() == 0
    assert log.backlog() == 0
    assert [e.leaf for e in log.entries(0, 7)] == [event(i).leaf() for i in range(7)]
    assert [e.index for e in log.entries(2, 5)] == [2, 3, 4]
    assert log.leaf_index(leaf_hash(event(5).leaf())) == 5
    assert log.leaf_index(leaf_hash(b"nothing")) is None


def test_append_refuses_what_is_not_an_event(engine: Engine) -> None:
    with pytest.raises(Exception, match="only an AuditEvent"), engine.begin() as connection:
        AuditLog.append(connection, "not an event")  # type: ignore[arg-type]


def test_concurrent_appenders_and_sequencers(engine: Engine, log: AuditLog) -> None:
    writers, per_writer = 8, 200
    done = threading.Event()
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for i in range(per_writer):
                add(engine, w * per_writer + i, 1, actor=f"w{w}")
        except BaseException as ex:  # pragma: no cover - reported below
            errors.append(ex)

    def sequence() -> None:
        try:
            while not done.is_set():
                log.sequence(max_batch=50)
        except BaseException as ex:  # pragma: no cover - reported below
            errors.append(ex)

    sequencers = [threading.Thread(target=sequence) for _ in range(2)]
    appenders = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in (*sequencers, *appenders):
        thread.start()
    for thread in appenders:
        thread.join()
    done.set()
    for thread in sequencers:
        thread.join()
    assert not errors
    while log.sequence():
        pass
    n = writers * per_writer
    assert log.size() == n
    with engine.connect() as connection:
        indices = [r[0] for r in connection.execute(text("SELECT idx FROM audit_leaves"))]
        entry_ids = [r[0] for r in connection.execute(text("SELECT entry_id FROM audit_leaves"))]
        entries = connection.execute(text("SELECT count(*) FROM audit_entries")).scalar_one()
    assert sorted(indices) == list(range(n))
    assert len(set(entry_ids)) == n == entries
    hashes = all_leaf_hashes(log)
    assert len(set(hashes)) == n
    assert log.root() == root(hashes)
    assert log.root(777) == root(hashes[:777])


# -- proofs ---------------------------------------------------------------------------------


def test_proofs_from_the_database_verify(engine: Engine, log: AuditLog) -> None:
    add(engine, 0, 37)
    log.sequence()
    hashes = all_leaf_hashes(log)
    nodes: dict[tuple[int, int], bytes] = {}
    builder = TreeBuilder()
    for h in hashes:
        for level, index, value in builder.append(h):
            nodes[level, index] = value

    def node(level: int, index: int) -> bytes:
        return nodes[level, index]

    for size in (1, 2, 3, 8, 13, 16, 31, 37):
        size_root = log.root(size)
        assert size_root == root(hashes[:size])
        for index in {0, size // 2, size - 1}:
            proof = log.inclusion_proof(index, size)
            assert proof == inclusion_proof(index, size, node)
            verify_inclusion(hashes[index], index, size, proof, size_root)
        for first in (0, 1, size // 3, size - 1, size):
            proof = log.consistency_proof(first, size)
            assert proof == consistency_proof(first, size, node)
            verify_consistency(first, size, log.root(first), size_root, proof)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda log: log.inclusion_proof(0, 0), ProofError, "empty tree"),
        (
            lambda log: log.inclusion_proof(5, 5),
            ProofError,
            "leaf index 5 is not in a tree of size 5",
        ),
        (lambda log: log.inclusion_proof(0, 6), LogError, "tree size 6 is beyond the log"),
        (lambda log: log.inclusion_proof(-1, 3), ProofError, "leaf index must be an integer"),
        (lambda log: log.consistency_proof(4, 3), ProofError, "from size 4 to the smaller"),
        (lambda log: log.consistency_proof(1, 9), LogError, "second tree size 9 is beyond"),
        (lambda log: log.root(6), LogError, "tree size 6 is beyond the log"),
        (lambda log: log.entries(3, 3), LogError, r"range \[3, 3\) must hold"),
        (lambda log: log.entries(0, 1001), LogError, "must hold 1 to 1000"),
        (lambda log: log.entries(-1, 2), LogError, "non-negative"),
        (lambda log: log.entries(2, 7), LogError, "entry range end 7 is beyond"),
        (lambda log: log.sequence(0), LogError, "positive integer"),
    ],
)
def test_bad_arguments_are_rejected_precisely(
    engine: Engine, log: AuditLog, call: object, error: type[Exception], match: str
) -> None:
    add(engine, 0, 5)
    log.sequence()
    with pytest.raises(error, match=match):
        call(log)  # type: ignore[operator]


# -- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_are_signed_only_when_the_tree_grew(
    engine: Engine, log: AuditLog, signer: SoftwareSigner
) -> None:
    assert log.latest_checkpoint() is None
    add(engine, 0, 3)
    note = log.publish_checkpoint()  # sequences what is pending first
    assert note is not None
    # The checkpoint's own event enters the tree; alone, it does not call for a checkpoint.
    assert log.publish_checkpoint() is None
    assert log.publish_checkpoint() is None
    assert len(signer.calls) == 1
    assert log.size() == 4
    recorded = AuditEvent.from_leaf(log.entries(3, 4)[0].leaf)
    assert recorded.action is Action.AUDIT_CHECKPOINT
    assert recorded.details == {
        "size": 3,
        "root_hash": log.root(3).hex(),
        "key_id": signer.key_id.hex(),
    }
    add(engine, 4, 2)
    second = log.publish_checkpoint()
    assert second is not None
    checkpoints = log.checkpoints()
    assert [c.size for c in checkpoints] == [3, 6]
    latest = log.latest_checkpoint()
    assert latest is not None
    assert latest.note == second
    for stored in checkpoints:
        opened = open_checkpoint(stored.note, [signer.verifier()], origin=ORIGIN).checkpoint
        assert opened.size == stored.size
        assert opened.root_hash == stored.root_hash == log.root(stored.size)
    assert log.verify_database([signer.verifier()]).ok


def test_a_log_without_signer_cannot_publish(engine: Engine) -> None:
    with pytest.raises(LogError, match="no note signer"):
        AuditLog(engine=engine, origin=ORIGIN).publish_checkpoint()


@pytest.mark.parametrize(
    ("statement", "match"),
    [
        (
            "UPDATE audit_nodes SET hash = {fake} WHERE level = 2 AND idx = 0",
            "does not extend the signed checkpoint of size 5",
        ),
        (
            "UPDATE audit_leaves SET leaf_hash = {fake} WHERE idx = 4",
            "does not extend the signed checkpoint of size 5",
        ),
        (
            "DELETE FROM audit_nodes WHERE level = 2 AND idx = 0",
            r"subtree \(2, 0\) is missing",
        ),
    ],
)
def test_refuses_to_sign_over_a_tampered_tree(
    engine: Engine, log: AuditLog, signer: SoftwareSigner, statement: str, match: str
) -> None:
    add(engine, 0, 5)
    assert log.publish_checkpoint() is not None
    fake = "X'" + "11" * 32 + "'" if engine.dialect.name == "sqlite" else "'\\x" + "11" * 32 + "'"
    tamper(engine, statement.format(fake=fake))
    add(engine, 5, 3)
    calls = len(signer.calls)
    with pytest.raises(LogError, match=match) as info:
        log.publish_checkpoint()
    assert info.value.code == "audit.inconsistent"
    assert len(signer.calls) == calls
    assert [c.size for c in log.checkpoints()] == [5]


def test_refuses_to_sign_over_a_truncated_tree(engine: Engine, log: AuditLog) -> None:
    add(engine, 0, 4)
    log.publish_checkpoint()
    tamper(engine, "DELETE FROM audit_leaves WHERE idx >= 2")
    with pytest.raises(LogError, match="truncated") as info:
        log.publish_checkpoint()
    assert info.value.code == "audit.inconsistent"


# -- the database self-audit ------------------------------------------------------------------


@pytest.fixture
def published(engine: Engine, log: AuditLog) -> AuditLog:
    """Twelve entries with checkpoints at 4, 8 and 12."""
    # Entry i is event(i), except 4 and 8: the events of the checkpoints at 4 and 8.
    for start, count in ((0, 4), (5, 3), (9, 3)):
        add(engine, start, count)
        assert log.publish_checkpoint() is not None
    return log


def _hex(engine: Engine, data: bytes) -> str:
    return f"X'{data.hex()}'" if engine.dialect.name == "sqlite" else f"'\\x{data.hex()}'"


def _entry_id(engine: Engine, index: int) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                text("SELECT entry_id FROM audit_leaves WHERE idx = :i"), {"i": index}
            ).scalar_one()
        )


def test_verify_database_accepts_an_intact_log(published: AuditLog, signer: SoftwareSigner) -> None:
    report = published.verify_database([signer.verifier()], strict=True)
    assert report.ok, report.message
    assert (report.entries_checked, report.checkpoints_checked) == (12, 3)


def test_verify_database_finds_an_edited_entry(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    forged = event(5, actor="forger").leaf()
    tamper(
        engine,
        f"UPDATE audit_entries SET leaf = {_hex(engine, forged)} WHERE id = {_entry_id(engine, 5)}",
    )
    report = published.verify_database([signer.verifier()])
    assert (report.ok, report.reason, report.first_bad_index) == (False, Finding.LEAF_MISMATCH, 5)
    assert "edited" in report.message


def test_verify_database_finds_a_deleted_entry(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    entry = _entry_id(engine, 6)
    tamper(
        engine,
        "DELETE FROM audit_leaves WHERE idx = 6",
        f"DELETE FROM audit_entries WHERE id = {entry}",
    )
    report = published.verify_database([signer.verifier()])
    assert (report.reason, report.first_bad_index) == (Finding.INDEX_GAP, 6)
    assert "missing" in report.message


def test_verify_database_finds_an_inserted_entry(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    # A careful attacker: shifts the later indices and gives the new leaf a correct hash.
    leaf = event(99, actor="forger").leaf()
    with engine.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(text("UPDATE audit_leaves SET idx = -idx - 100 WHERE idx >= 4"))
        connection.execute(text("UPDATE audit_leaves SET idx = -idx - 99 WHERE idx < 0"))
        new_id = AuditLog.append(connection, event(99, actor="forger"))
        connection.execute(text("DELETE FROM audit_pending"))
        connection.execute(
            text("INSERT INTO audit_leaves (idx, entry_id, leaf_hash) VALUES (4, :e, :h)"),
            {"e": new_id, "h": leaf_hash(leaf)},
        )
    report = published.verify_database([signer.verifier()])
    assert (report.reason, report.first_bad_index) == (Finding.NODE_MISMATCH, 4)
    assert "somewhere in [4, 6)" in report.message


def test_verify_database_finds_an_edited_subtree_hash(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    tamper(
        engine,
        f"UPDATE audit_nodes SET hash = {_hex(engine, bytes(32))} WHERE level = 1 AND idx = 3",
    )
    report = published.verify_database([signer.verifier()])
    assert (report.reason, report.first_bad_index) == (Finding.NODE_MISMATCH, 6)
    assert "somewhere in [6, 8)" in report.message


def test_verify_database_finds_reordered_entries(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    a, b = _entry_id(engine, 2), _entry_id(engine, 3)
    leaf_a, leaf_b = event(2).leaf(), event(3).leaf()
    tamper(
        engine,
        f"UPDATE audit_entries SET leaf = {_hex(engine, leaf_b)}, "
        f"leaf_hash = {_hex(engine, leaf_hash(leaf_b))} WHERE id = {a}",
        f"UPDATE audit_entries SET leaf = {_hex(engine, leaf_a)}, "
        f"leaf_hash = {_hex(engine, leaf_hash(leaf_a))} WHERE id = {b}",
        f"UPDATE audit_leaves SET leaf_hash = {_hex(engine, leaf_hash(leaf_b))} WHERE idx = 2",
        f"UPDATE audit_leaves SET leaf_hash = {_hex(engine, leaf_hash(leaf_a))} WHERE idx = 3",
    )
    report = published.verify_database([signer.verifier()])
    assert (report.reason, report.first_bad_index) == (Finding.NODE_MISMATCH, 2)


def test_verify_database_finds_truncation_after_a_checkpoint(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    tamper(
        engine,
        "DELETE FROM audit_leaves WHERE idx >= 10",
        "DELETE FROM audit_nodes WHERE (idx + 1) * (1 << level) > 10",
    )
    report = published.verify_database([signer.verifier()])
    assert (report.reason, report.first_bad_index) == (Finding.TRUNCATED, 10)
    assert "checkpoint 12" in report.message


def test_verify_database_finds_a_forked_checkpoint(
    engine: Engine, published: AuditLog, signer: SoftwareSigner, tmp_path: Path
) -> None:
    # Another database, other events, the same key: the log's key signed a second history.
    other_engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(other_engine)
        add(other_engine, 0, 3)
        add(other_engine, 100, 1, actor="other")
        fork = AuditLog(engine=other_engine, origin=ORIGIN, signer=signer).publish_checkpoint()
    finally:
        other_engine.dispose()
    assert fork is not None
    forked = open_checkpoint(fork, [signer.verifier()]).checkpoint
    assert forked.size == 4
    with engine.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(
            text("UPDATE audit_checkpoints SET note = :n, root_hash = :r WHERE size = 4"),
            {"n": fork, "r": forked.root_hash},
        )
    report = published.verify_database([signer.verifier()])
    assert (report.ok, report.reason, report.first_bad_index) == (False, Finding.FORK, None)
    assert "checkpoint 4 is not extended" in report.message


def flip_signature(note: str) -> str:
    """The note with one bit of its signature (not of its key ID) flipped."""
    body, encoded = note.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 1
    return f"{body} {base64.b64encode(bytes(raw)).decode()}\n"


def test_verify_database_finds_a_bad_signature(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    flipped = flip_signature(published.checkpoints()[1].note)
    with engine.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(
            text("UPDATE audit_checkpoints SET note = :n WHERE size = 8"), {"n": flipped}
        )
    report = published.verify_database([signer.verifier()])
    assert (report.reason, report.first_bad_index) == (Finding.BAD_SIGNATURE, None)
    assert "does not verify" in report.message


def test_verify_database_finds_a_checkpoint_signed_by_an_unknown_key(
    engine: Engine, published: AuditLog, signer: SoftwareSigner
) -> None:
    impostor = SoftwareSigner.ed25519(ORIGIN)
    stored = published.checkpoints()[2]
    note = sign_checkpoint(
        Checkpoint(origin=ORIGIN, size=stored.size, root_hash=stored.root_hash), [impostor]
    )
    with engine.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(
            text("UPDATE audit_checkpoints SET note = :n WHERE size = 12"), {"n": note}
        )
    report = published.verify_database([signer.verifier()])
    assert report.reason is Finding.UNKNOWN_KEY
    assert "trusted key ID" in report.message
