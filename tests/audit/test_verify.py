"""Offline verification of an export: what an auditor with only the public key can prove."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine

from audit import Checkpoint, TreeBuilder, leaf_hash, sign_checkpoint
from audit.log import AuditLog
from audit.verify import CHECKPOINTS_DIR, ENTRIES_FILE, VKEY_FILE, Finding, export, verify_export
from kyso.db import make_engine, upgrade
from tests.audit.conftest import ORIGIN, event
from tests.audit.signers import SoftwareSigner
from tests.audit.test_log import add, flip_signature


@pytest.fixture
def exported(engine: Engine, signer: SoftwareSigner, tmp_path: Path) -> Path:
    """Twelve entries with checkpoints at 4, 8 and 12, exported with the vkey."""
    log = AuditLog(engine=engine, origin=ORIGIN, signer=signer)
    # Entry i is event(i), except 4 and 8: the events of the checkpoints at 4 and 8.
    for start, count in ((0, 4), (5, 3), (9, 3)):
        add(engine, start, count)
        assert log.publish_checkpoint() is not None
    directory = tmp_path / "export"
    assert export(log, directory, vkey=signer.verifier().to_vkey()) == 12
    return directory


def lines(directory: Path) -> list[bytes]:
    return (directory / ENTRIES_FILE).read_bytes().splitlines()


def write_lines(directory: Path, entries: list[bytes]) -> None:
    (directory / ENTRIES_FILE).write_bytes(b"".join(e + b"\n" for e in entries))


def note_path(directory: Path, size: int) -> Path:
    return directory / CHECKPOINTS_DIR / f"{size:012d}.note"


def test_an_intact_export_verifies(exported: Path, signer: SoftwareSigner) -> None:
    assert sorted(p.name for p in (exported / CHECKPOINTS_DIR).iterdir()) == [
        "000000000004.note",
        "000000000008.note",
        "000000000012.note",
    ]
    assert lines(exported)[3] == event(3).leaf()
    for verifiers in (signer.verifier().to_vkey(), [signer.verifier()], None):
        report = verify_export(exported, verifiers)
        assert report.ok, report.message
        assert (report.entries_checked, report.checkpoints_checked, report.tree_size) == (12, 3, 12)
        assert report.code is None
    assert verify_export(exported, strict=True).ok
    assert (exported / VKEY_FILE).read_text().strip() == signer.verifier().to_vkey()


def test_an_edited_entry_is_located_between_checkpoints(exported: Path) -> None:
    entries = lines(exported)
    entries[5] = event(5, actor="forger").leaf()
    write_lines(exported, entries)
    report = verify_export(exported)
    assert (report.ok, report.reason, report.first_bad_index) == (
        False,
        Finding.CHECKPOINT_MISMATCH,
        4,
    )
    assert "somewhere in [4, 8)" in report.message
    assert report.code == "audit.verify.checkpoint_mismatch"


def test_a_deleted_entry_is_located(exported: Path) -> None:
    entries = lines(exported)
    del entries[5]
    write_lines(exported, entries)
    report = verify_export(exported)
    assert (report.reason, report.first_bad_index) == (Finding.CHECKPOINT_MISMATCH, 4)
    assert "somewhere in [4, 8)" in report.message


def test_an_inserted_entry_is_located(exported: Path) -> None:
    entries = lines(exported)
    entries.insert(2, event(99, actor="forger").leaf())
    write_lines(exported, entries)
    report = verify_export(exported)
    assert (report.reason, report.first_bad_index) == (Finding.CHECKPOINT_MISMATCH, 0)
    assert "somewhere in [0, 4)" in report.message


def test_reordered_entries_are_located(exported: Path) -> None:
    entries = lines(exported)
    entries[6], entries[7] = entries[7], entries[6]
    write_lines(exported, entries)
    report = verify_export(exported)
    assert (report.reason, report.first_bad_index) == (Finding.CHECKPOINT_MISMATCH, 4)


def test_truncation_after_a_checkpoint_is_found(exported: Path) -> None:
    write_lines(exported, lines(exported)[:10])
    report = verify_export(exported)
    assert (report.reason, report.first_bad_index) == (Finding.TRUNCATED, 10)
    assert "checkpoint 12 was signed but the log holds only 10" in report.message


def test_a_forked_checkpoint_is_found(
    exported: Path, signer: SoftwareSigner, tmp_path: Path
) -> None:
    other_engine = make_engine(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(other_engine)
        other = AuditLog(engine=other_engine, origin=ORIGIN, signer=signer)
        add(other_engine, 0, 3)
        add(other_engine, 100, 1, actor="other")
        fork = other.publish_checkpoint()
    finally:
        other_engine.dispose()
    assert fork is not None
    note_path(exported, 4).write_text(fork)
    report = verify_export(exported)
    assert (report.ok, report.reason, report.first_bad_index) == (False, Finding.FORK, None)
    assert "checkpoint 4 is not extended by the signed checkpoint 8" in report.message


def test_two_signed_roots_for_one_size_are_a_fork(exported: Path, signer: SoftwareSigner) -> None:
    other = sign_checkpoint(
        Checkpoint(origin=ORIGIN, size=8, root_hash=leaf_hash(b"other")), [signer]
    )
    (exported / CHECKPOINTS_DIR / "second-view.note").write_text(other)
    report = verify_export(exported)
    assert report.reason is Finding.FORK
    assert "two signed checkpoints of size 8" in report.message


def test_a_bad_signature_is_found(exported: Path) -> None:
    path = note_path(exported, 8)
    path.write_text(flip_signature(path.read_text()))
    report = verify_export(exported)
    assert (report.reason, report.first_bad_index) == (Finding.BAD_SIGNATURE, None)
    assert "000000000008.note" in report.message


def test_a_checkpoint_by_an_unknown_key_is_found(exported: Path) -> None:
    impostor = SoftwareSigner.ed25519(ORIGIN)
    note_path(exported, 12).write_text(
        sign_checkpoint(
            Checkpoint(origin=ORIGIN, size=12, root_hash=leaf_hash(b"anything")), [impostor]
        )
    )
    report = verify_export(exported)
    assert report.reason is Finding.UNKNOWN_KEY
    assert "trusted key ID" in report.message


def test_a_misnamed_checkpoint_file_is_malformed(exported: Path) -> None:
    shutil.move(note_path(exported, 8), note_path(exported, 9))
    report = verify_export(exported)
    assert report.reason is Finding.MALFORMED
    assert "stored as size 9 but signs size 8" in report.message


def test_strict_mode_rejects_a_non_canonical_leaf(exported: Path) -> None:
    entries = lines(exported)
    entries[0] = entries[0].replace(b'{"action"', b'{ "action"')
    write_lines(exported, entries)
    assert verify_export(exported).reason is Finding.CHECKPOINT_MISMATCH
    report = verify_export(exported, strict=True)
    assert (report.reason, report.first_bad_index) == (Finding.NON_CANONICAL, 0)


def test_missing_files_and_keys_are_reported(tmp_path: Path) -> None:
    assert verify_export(tmp_path).reason is Finding.MALFORMED
    report = verify_export(tmp_path, "not a vkey")
    assert report.reason is Finding.MALFORMED
    assert "no usable verifier key" in report.message


def test_a_million_entries_verify_well_under_a_minute(tmp_path: Path) -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    n = 1_000_000
    builder = TreeBuilder()
    (tmp_path / CHECKPOINTS_DIR).mkdir()
    with open(tmp_path / ENTRIES_FILE, "wb") as out:
        for i in range(n):
            leaf = b'{"i":%d}' % i
            out.write(leaf + b"\n")
            builder.append(leaf_hash(leaf))
    note_path(tmp_path, n).write_text(
        sign_checkpoint(Checkpoint(origin=ORIGIN, size=n, root_hash=builder.root()), [signer])
    )
    started = time.monotonic()
    report = verify_export(tmp_path, signer.verifier().to_vkey())
    elapsed = time.monotonic() - started
    assert report.ok, report.message
    assert report.entries_checked == n
    assert elapsed < 30
