"""The other process of the crash and takeover tests (``tests/audit/test_takeover.py``).

Run as ``python -m tests.audit.takeover_child ROLE URL MARKER [ARG]`` with the repository root
on ``PYTHONPATH``. Each role opens the same database as the test, works on the audit log and
creates ``MARKER`` once it is where the test wants to kill it (with SIGKILL: no ``finally``,
no rollback, no goodbye to the database). The roles that stop there sleep until killed.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event

from audit.log import AuditLog
from kyso.db import make_engine
from tests.audit.conftest import ORIGIN
from tests.audit.conftest import event as audit_event

FOREVER = 120.0
"""How long a child stuck on purpose waits to be killed (the test kills it much sooner)."""

CHILD_EVENTS = 1_000_000
"""Numbers of the events children admit start here, apart from the test's own."""


def _mark(marker: Path, text: str = "") -> None:
    marker.with_suffix(".tmp").write_text(text)
    marker.with_suffix(".tmp").replace(marker)  # appears whole


def _hang(marker: Path, text: str = "") -> None:
    _mark(marker, text)
    time.sleep(FOREVER)
    raise SystemExit("not killed in time")


def sequence_then_hang(log: AuditLog, marker: Path, arg: str) -> None:
    """Sequences ``first`` entries (committed), then starts a second batch and stops inside
    its transaction at ``stage``: before the subtree hashes are written (``nodes``) or after
    every write, right before COMMIT (``commit``)."""
    stage, first = arg.split(":")
    if int(first):
        log.sequence(max_batch=int(first))
    if stage == "commit":
        original: Callable[[AuditLog, Connection, int], int] = AuditLog._sequence

        def then_hang(self: AuditLog, connection: Connection, max_batch: int) -> int:
            placed = original(self, connection, max_batch)
            _hang(marker, str(placed))
            return placed

        AuditLog._sequence = then_hang  # type: ignore[method-assign]
    else:

        def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("INSERT INTO audit_nodes"):
                _hang(marker)

        event.listen(log._engine, "before_cursor_execute", before)
    log.sequence()


def admit_then_hang(log: AuditLog, marker: Path, arg: str) -> None:
    """Commits ``committed`` events of its own, then admits ``pending`` more in a business
    transaction that it never commits."""
    committed, pending = (int(n) for n in arg.split(":"))
    engine = log._engine
    for i in range(committed):
        with engine.begin() as connection:
            AuditLog.append(connection, audit_event(CHILD_EVENTS + i, actor="child"))
    with engine.begin() as connection:
        for i in range(pending):
            AuditLog.append(connection, audit_event(2 * CHILD_EVENTS + i, actor="uncommitted"))
        _hang(marker)


def record_forever(log: AuditLog, marker: Path, arg: str) -> None:
    """``threads`` threads record events in a loop; each id ``record`` returned is appended
    to ``MARKER.ids`` once it returned (so the file lists only committed events)."""
    threads, mark_after = (int(n) for n in arg.split(":"))
    ids = os.open(marker.with_suffix(".ids"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    done = 0
    lock = threading.Lock()

    def run(t: int) -> None:
        nonlocal done
        for i in range(CHILD_EVENTS):
            entry_id = log.record(audit_event(CHILD_EVENTS * (t + 1) + i, actor=f"r{t}"))
            with lock:
                os.write(ids, f"{entry_id}\n".encode())
                done += 1
                if done == mark_after:
                    _mark(marker)

    workers = [threading.Thread(target=run, args=(t,), daemon=True) for t in range(threads)]
    for worker in workers:
        worker.start()
    time.sleep(FOREVER)
    raise SystemExit("not killed in time")


def sequence_until_stopped(log: AuditLog, marker: Path, arg: str) -> None:
    """Sequences in a loop, small batches, until ``stop`` exists and nothing is pending;
    prints how many entries it placed."""
    stop = Path(arg)
    placed = 0
    while True:
        n = log.sequence(max_batch=40)
        placed += n
        if not marker.exists():
            _mark(marker)
        if n == 0:
            if stop.exists() and log.backlog() == 0:
                print(placed, flush=True)
                return
            time.sleep(0.005)


ROLES = {
    "sequence-then-hang": sequence_then_hang,
    "admit-then-hang": admit_then_hang,
    "record-forever": record_forever,
    "sequence-until-stopped": sequence_until_stopped,
}


def main(role: str, url: str, marker: str, arg: str) -> None:
    engine = make_engine(url)
    ROLES[role](AuditLog(engine=engine, origin=ORIGIN), Path(marker), arg)
    engine.dispose()


if __name__ == "__main__":
    main(*sys.argv[1:])
