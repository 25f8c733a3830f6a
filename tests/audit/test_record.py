"""Events recorded on their own (:meth:`AuditLog.record`): concurrent callers share commits,
a failed commit reaches every caller it carried, and the log recovers from it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import SQLAlchemyError

from audit.errors import EventError, LogError
from audit.log import AuditLog
from kyso.db import make_engine, upgrade
from tests.audit.conftest import ORIGIN
from tests.audit.conftest import event as audit_event
from tests.audit.signers import SoftwareSigner

JOIN_TIMEOUT = 20.0


@pytest.fixture
def log(engine: Engine, signer: SoftwareSigner) -> Iterator[AuditLog]:
    audit = AuditLog(engine=engine, origin=ORIGIN, signer=signer)
    yield audit
    audit._group.close()  # the kept connection, so that the database can be dropped


@contextlib.contextmanager
def statements(engine: Engine, prefix: str) -> Iterator[list[str]]:
    """The statements sent to the database that start with ``prefix``, as they are sent."""
    seen: list[str] = []

    def keep(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.lstrip().upper().startswith(prefix):
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", keep)


def commits_of_records(engine: Engine) -> contextlib.AbstractContextManager[list[str]]:
    """The transactions ``record`` commits: on PostgreSQL one autocommit INSERT each, on
    SQLite one explicit ``COMMIT`` each (its inserts are sent one row at a time)."""
    if engine.dialect.name == "sqlite":
        return statements(engine, "COMMIT")
    return statements(engine, "INSERT INTO AUDIT_ENTRIES")


def run_threads(target: Callable[[int], None], count: int) -> list[BaseException]:
    """Runs ``target(0..count-1)`` on threads started together; their exceptions."""
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(n: int) -> None:
        try:
            start.wait(JOIN_TIMEOUT)
            target(n)
        except BaseException as ex:
            errors.append(ex)

    threads = [threading.Thread(target=run, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "record() hung"
    return errors


def stored_entry_ids(engine: Engine) -> list[int]:
    with engine.connect() as connection:
        return [
            int(i) for (i,) in connection.execute(text("SELECT id FROM audit_entries ORDER BY id"))
        ]


def test_concurrent_records_share_commits(
    engine: Engine, log: AuditLog, signer: SoftwareSigner
) -> None:
    threads, per_thread = 8, 60
    ids: dict[int, list[int]] = {n: [] for n in range(threads)}

    def record(n: int) -> None:
        for i in range(per_thread):
            ids[n].append(log.record(audit_event(n * per_thread + i, actor=f"t{n}")))

    with commits_of_records(engine) as commits:
        assert run_threads(record, threads) == []
    events = threads * per_thread
    returned = [i for per in ids.values() for i in per]
    assert len(returned) == len(set(returned)) == events
    assert sorted(returned) == sorted(stored_entry_ids(engine))
    # Every returned id holds the event its caller recorded.
    with engine.connect() as connection:
        leaves = dict(connection.execute(text("SELECT id, leaf FROM audit_entries")).all())
    for n, per in ids.items():
        for i, entry_id in enumerate(per):
            assert bytes(leaves[entry_id]) == audit_event(n * per_thread + i, f"t{n}").leaf()
    # Fewer commits than events: some carried several callers' events (one commit per event
    # would mean the group commit never grouped anything).
    assert 0 < len(commits) < events
    assert log.sequence() == events
    assert log.size() == events
    assert log.publish_checkpoint() is not None
    report = log.verify_database([signer.verifier()], strict=True)
    assert report.ok, report.message
    assert report.entries_checked == events


def test_an_invalid_event_is_refused_before_queueing(engine: Engine, log: AuditLog) -> None:
    with statements(engine, "INSERT") as inserts:
        with pytest.raises(EventError, match="only an AuditEvent"):
            log.record("not an event")  # type: ignore[arg-type]
        with pytest.raises(EventError, match="only an AuditEvent"):
            log.record(None)  # type: ignore[arg-type]
    assert inserts == []
    assert log._group._queue == []
    assert log.record(audit_event(1)) > 0
    assert log.backlog() == 1


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _pile_up(audit: AuditLog, callers: int) -> tuple[list[threading.Thread], dict[int, object]]:
    """Starts ``callers`` threads recording one event each, the first alone so that it leads
    and its commit (which must be stuck) holds the others in the queue behind it; returns
    the threads and where each one's id or error lands."""
    outcomes: dict[int, object] = {}

    def record(n: int) -> None:
        try:
            outcomes[n] = audit.record(audit_event(100 + n))
        except Exception as ex:
            outcomes[n] = ex

    threads = [threading.Thread(target=record, args=(n,), daemon=True) for n in range(callers)]
    threads[0].start()
    group = audit._group
    _wait_for(lambda: group._leading and not group._queue, "the leader to take its batch")
    for thread in threads[1:]:
        thread.start()
    _wait_for(lambda: len(group._queue) == callers - 1, "the followers to queue")
    return threads, outcomes


def _assert_all_failed(outcomes: dict[int, object], callers: int, cause: str = "") -> None:
    assert sorted(outcomes) == list(range(callers))
    for n, outcome in outcomes.items():
        assert isinstance(outcome, LogError), f"caller {n} got {outcome!r}"
        assert outcome.code == "audit.log.storage"
        assert outcome.message.startswith(f"recording an audit event failed: {cause}")


def _blocked_inserts(connection: Connection) -> set[int]:
    """PostgreSQL backends whose INSERT into audit_entries waits for a lock."""
    rows = connection.execute(
        text(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO audit_entries%'"
        )
    )
    return {int(pid) for (pid,) in rows}


def test_a_failed_commit_reaches_every_caller_and_the_log_recovers(
    database_url: str, signer: SoftwareSigner
) -> None:
    """Every caller whose event was in a failed commit gets ``LogError``; nobody hangs; the
    next ``record`` works, on a new connection."""
    callers = 8
    sqlite = database_url.startswith("sqlite")
    if sqlite:
        # A short busy timeout: while another writer holds the database, commits fail soon.
        engine = create_engine(database_url, connect_args={"timeout": 1.0})
    else:
        engine = make_engine(database_url)
    upgrade(engine)
    audit = AuditLog(engine=engine, origin=ORIGIN, signer=signer)
    locker = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    terminated: set[int] = set()
    try:
        first = audit.record(audit_event(0))
        kept = audit._group._connection
        assert kept is not None
        # Hold the write side of audit_entries: the leader's commit waits, the other callers
        # pile up behind it; then every commit that reaches the database fails.
        if sqlite:
            locker.exec_driver_sql("BEGIN IMMEDIATE")  # they time out on the lock
        else:
            locker.exec_driver_sql("BEGIN")
            locker.exec_driver_sql("LOCK TABLE audit_entries IN EXCLUSIVE MODE")
        threads, outcomes = _pile_up(audit, callers)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while any(t.is_alive() for t in threads):
            assert time.monotonic() < deadline, "record() hung after a failed commit"
            if not sqlite:
                # Kill the kept connection while it waits: the leader's, then the next
                # leader's (a new one) with all the followers' events.
                with engine.connect() as admin:
                    for pid in _blocked_inserts(admin) - terminated:
                        admin.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
                        terminated.add(pid)
            time.sleep(0.02)
        locker.exec_driver_sql("ROLLBACK")
        _assert_all_failed(outcomes, callers)
        if not sqlite:
            assert 2 <= len(terminated) <= callers
        # None of the failed events was stored; the log works again on a new connection.
        assert stored_entry_ids(engine) == [first]
        again = audit.record(audit_event(999))
        assert audit._group._connection not in (None, kept)
        assert stored_entry_ids(engine) == [first, again]
        assert audit.sequence() == 2
        assert audit.publish_checkpoint() is not None
        assert audit.verify_database([signer.verifier()], strict=True).ok
    finally:
        with contextlib.suppress(SQLAlchemyError):
            locker.exec_driver_sql("ROLLBACK")
        locker.close()
        audit._group.close()
        engine.dispose()


def test_any_failure_of_a_commit_reaches_its_followers(
    monkeypatch: pytest.MonkeyPatch, engine: Engine, log: AuditLog
) -> None:
    """Not only database errors: a follower must never take a failed commit for a success
    (entry id 0), nor the failed event be written later by another leader."""
    callers = 8
    release = threading.Event()
    batches: list[int] = []

    def broken(rows: list[dict[str, object]]) -> list[int]:
        batches.append(len(rows))
        release.wait(JOIN_TIMEOUT)
        raise RuntimeError("boom")

    monkeypatch.setattr(log._group, "_insert", broken)
    threads, outcomes = _pile_up(log, callers)
    release.set()
    for thread in threads:
        thread.join(JOIN_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "record() hung after a failed commit"
    _assert_all_failed(outcomes, callers, "RuntimeError")
    assert isinstance(outcomes[1], LogError)
    assert isinstance(outcomes[1].__cause__, RuntimeError)
    assert batches == [1, callers - 1]
    assert log._group._queue == []
    monkeypatch.undo()
    entry_id = log.record(audit_event(999))
    assert stored_entry_ids(engine) == [entry_id]
