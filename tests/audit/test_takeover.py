"""Crash at any point leaves the log verifiable, and if the sequencer dies another takes over.

Real processes (:mod:`tests.audit.takeover_child`) on the same database are killed with
SIGKILL while they sequence, admit or record; then this process (or a surviving sibling)
must place every committed entry in the tree exactly once, without gaps, and the log must
verify and take a new signed checkpoint.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from audit import leaf_hash, open_checkpoint
from audit.log import AuditLog
from tests.audit.conftest import ORIGIN, event
from tests.audit.signers import SoftwareSigner
from tests.audit.takeover_child import CHILD_EVENTS

ROOT = Path(__file__).resolve().parents[2]
WAIT = 20.0
"""Longest wait for anything a child should do promptly (start, reach its marker, exit)."""


@pytest.fixture
def log(engine: Engine, signer: SoftwareSigner) -> AuditLog:
    return AuditLog(engine=engine, origin=ORIGIN, signer=signer)


@contextmanager
def child(tmp_path: Path, url: str, role: str, arg: str) -> Iterator[Child]:
    """A child process in ``role``; killed on the way out, whatever happened."""
    name = f"{role}-{len(list(tmp_path.glob('*.err')))}"
    marker = tmp_path / f"{name}.marker"
    stderr = (tmp_path / f"{name}.err").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.audit.takeover_child", role, url, str(marker), arg],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )
    running = Child(process, marker, tmp_path / f"{name}.err")
    try:
        yield running
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(WAIT)
        assert process.stdout is not None
        process.stdout.close()
        stderr.close()


class Child:
    def __init__(self, process: subprocess.Popen[bytes], marker: Path, stderr: Path) -> None:
        self.process = process
        self.marker = marker
        self.stderr = stderr

    def reached_marker(self) -> str:
        """Waits until the child created its marker; returns the marker's text."""
        deadline = time.monotonic() + WAIT
        while not self.marker.exists():
            if self.process.poll() is not None:
                pytest.fail(f"the child exited early: {self.stderr.read_text()}")
            assert time.monotonic() < deadline, "the child never reached its marker"
            time.sleep(0.01)
        return self.marker.read_text()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert self.process.wait(WAIT) == -signal.SIGKILL

    def finish(self) -> str:
        """Waits for a clean exit; returns what the child printed."""
        out, _ = self.process.communicate(timeout=WAIT)
        assert self.process.returncode == 0, self.stderr.read_text()
        return out.decode()


def admit(engine: Engine, start: int, count: int, actor: str = "officer") -> list[int]:
    with engine.begin() as connection:
        return [AuditLog.append(connection, event(i, actor)) for i in range(start, start + count)]


def drain(log: AuditLog) -> None:
    """Sequences until nothing is pending. On PostgreSQL the killed sequencer's advisory lock
    goes when its backend notices the client is gone: until then ``sequence`` returns 0."""
    deadline = time.monotonic() + WAIT
    while log.backlog():
        assert time.monotonic() < deadline, "the log was not taken over in time"
        if not log.sequence():
            time.sleep(0.02)


def leaves(engine: Engine) -> tuple[list[int], list[int], list[int]]:
    """Tree indices and their entry ids in index order, and every admitted entry id."""
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT idx, entry_id FROM audit_leaves ORDER BY idx")).all()
        admitted = connection.execute(text("SELECT id FROM audit_entries ORDER BY id"))
        return [int(r[0]) for r in rows], [int(r[1]) for r in rows], [int(i) for (i,) in admitted]


def assert_complete_and_verifiable(log: AuditLog, engine: Engine, signer: SoftwareSigner) -> int:
    """Every admitted entry is in the tree exactly once, at gap-free indices; the log
    verifies, takes a new checkpoint and verifies again. Returns the tree size."""
    indices, placed, admitted = leaves(engine)
    size = len(admitted)
    assert indices == list(range(size)), "tree indices have gaps or duplicates"
    assert sorted(placed) == admitted, "an admitted entry is missing from the tree or twice"
    assert log.backlog() == 0
    verifier = signer.verifier()
    report = log.verify_database([verifier], strict=True)
    assert report.ok, report.message
    assert report.entries_checked == size
    note = log.publish_checkpoint()
    assert note is not None
    opened = open_checkpoint(note, [verifier], origin=ORIGIN).checkpoint
    assert (opened.size, opened.root_hash) == (size, log.root(size))
    report = log.verify_database([verifier], strict=True)
    assert report.ok, report.message
    assert report.checkpoints_checked == len(log.checkpoints())
    return size


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- the sequencer dies inside its transaction ----------------------------------------------


@pytest.mark.parametrize(
    "stage",
    [
        pytest.param("nodes", id="after-leaves-before-nodes"),
        pytest.param("commit", id="before-commit"),
    ],
)
def test_a_sequencer_killed_mid_transaction_is_taken_over(
    tmp_path: Path,
    database_url: str,
    engine: Engine,
    log: AuditLog,
    signer: SoftwareSigner,
    stage: str,
) -> None:
    signed, rest, first = 500, 2000, 777
    admit(engine, 0, signed)
    assert log.publish_checkpoint() is not None  # a signed tree the takeover must extend
    admit(engine, signed, rest)
    pending = rest + 1  # the checkpoint's own event too
    with child(tmp_path, database_url, "sequence-then-hang", f"{stage}:{first}") as sequencer:
        # The child commits one batch of `first`, then stops in the transaction that places
        # all the rest.
        placed = sequencer.reached_marker()
        if stage == "commit":
            assert int(placed) == pending - first
        if engine.dialect.name == "postgresql":
            # The stuck child is the sequencer: this process must not sequence meanwhile,
            # and admission goes on regardless.
            assert log.sequence() == 0
            admit(engine, signed + rest, 100)
            pending += 100
        sequencer.kill()
    # Nothing of the killed transaction is visible: the tree is as the child committed it.
    assert log.size() == signed + first
    assert log.backlog() == pending - first
    drain(log)
    assert assert_complete_and_verifiable(log, engine, signer) == signed + pending


# -- an admitting process dies before its commit -----------------------------------------


def test_an_uncommitted_admission_vanishes_with_its_process(
    tmp_path: Path, database_url: str, engine: Engine, log: AuditLog, signer: SoftwareSigner
) -> None:
    admit(engine, 0, 10)
    with child(tmp_path, database_url, "admit-then-hang", "5:3") as admitter:
        # Five events committed, three more admitted in a transaction that never commits.
        admitter.reached_marker()
        admitter.kill()
    admit(engine, 10, 10)
    drain(log)
    size = assert_complete_and_verifiable(log, engine, signer)
    assert size == 10 + 5 + 10
    for i in range(5):
        assert log.leaf_index(leaf_hash(event(CHILD_EVENTS + i, actor="child").leaf())) is not None
    for i in range(3):
        lost = event(2 * CHILD_EVENTS + i, actor="uncommitted").leaf()
        assert log.leaf_index(leaf_hash(lost)) is None
        with engine.connect() as connection:
            stored = connection.execute(
                text("SELECT count(*) FROM audit_entries WHERE leaf_hash = :h"),
                {"h": leaf_hash(lost)},
            ).scalar_one()
        assert stored == 0


# -- a process dies while its record() callers are in flight -------------------------------


def test_a_process_killed_while_recording_loses_only_unconfirmed_events(
    tmp_path: Path, database_url: str, engine: Engine, log: AuditLog, signer: SoftwareSigner
) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []

    def sequence() -> None:  # this process sequences while the child records
        try:
            while not stop.is_set():
                if not log.sequence(max_batch=200):
                    time.sleep(0.01)
        except BaseException as ex:  # pragma: no cover - reported below
            errors.append(ex)

    sequencer = threading.Thread(target=sequence, daemon=True)
    with child(tmp_path, database_url, "record-forever", "6:100") as recorder:
        sequencer.start()
        try:
            recorder.reached_marker()
            time.sleep(random.uniform(0.05, 0.3))
            recorder.kill()
        finally:
            stop.set()
            sequencer.join(WAIT)
    assert not sequencer.is_alive()
    assert errors == []
    confirmed = [int(n) for n in recorder.marker.with_suffix(".ids").read_text().split()]
    assert len(confirmed) >= 100
    assert len(set(confirmed)) == len(confirmed)
    drain(log)
    _indices, placed, _admitted = leaves(engine)
    # Every event whose record() returned is in the tree (it was durable); events in flight
    # at the kill are either wholly in or wholly out.
    assert set(confirmed) <= set(placed)
    assert_complete_and_verifiable(log, engine, signer)


# -- two sequencer processes, one dies at a random moment ----------------------------------


def test_the_surviving_sequencer_drains_after_its_sibling_is_killed(
    tmp_path: Path, database_url: str, engine: Engine, log: AuditLog, signer: SoftwareSigner
) -> None:
    stop = tmp_path / "stop"
    rounds, per_round = 30, 40
    kill_at = random.randrange(5, rounds - 5)
    with (
        child(tmp_path, database_url, "sequence-until-stopped", str(stop)) as doomed,
        child(tmp_path, database_url, "sequence-until-stopped", str(stop)) as survivor,
    ):
        doomed.reached_marker()
        survivor.reached_marker()
        for r in range(rounds):
            admit(engine, r * per_round, per_round)
            if r == kill_at:
                time.sleep(random.uniform(0, 0.02))
                doomed.kill()
            time.sleep(0.01)
        assert doomed.process.returncode == -signal.SIGKILL
        # This process does not sequence: the survivor must place everything on its own.
        wait_until(lambda: log.backlog() == 0, "the surviving sequencer to drain the log")
        stop.touch()
        survivor_placed = int(survivor.finish())
    total = rounds * per_round
    assert log.size() == total
    assert 0 < survivor_placed <= total
    assert assert_complete_and_verifiable(log, engine, signer) == total
