"""The stored audit log: admission, sequencing, proofs and signed checkpoints.

Admission (:meth:`AuditLog.append`) is an INSERT in the caller's transaction and takes no
global lock, so any number of requests and processes admit events in parallel. An event that
accompanies no business record is committed by :meth:`AuditLog.record`, which group-commits
concurrent callers: one transaction, hence one flush to disk, for all events queued while the
previous one was being written, and each caller returns only once its event is durable.

One writer at a time (:meth:`AuditLog.sequence`) gives the pending entries gap-free tree
indices and stores the new subtree hashes, all in one transaction:

* on PostgreSQL, whichever process wins ``pg_try_advisory_xact_lock`` sequences; the lock is
  released with the transaction, so if that process dies another one takes over;
* on SQLite, ``BEGIN IMMEDIATE`` takes the database's single write lock up front, so two
  sequencers cannot both read the same tree size.

Before signing a checkpoint the log proves, from its own stored nodes, that the new tree
extends the last signed one; a tampered store makes it refuse (``audit.inconsistent``) rather
than sign two incompatible histories.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter, Gauge
from sqlalchemy import (
    Connection,
    Engine,
    Row,
    and_,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.exc import SQLAlchemyError

from audit.errors import EventError, EventFailure, LogError, LogFailure, ProofError
from audit.events import (
    MAX_LEAF_BYTES,
    Action,
    Actor,
    AuditEvent,
    DetailValue,
    Outcome,
    Subject,
)
from audit.merkle import (
    EMPTY_ROOT,
    Coordinate,
    TreeBuilder,
    consistency_proof,
    consistency_proof_nodes,
    frontier_nodes,
    inclusion_proof,
    inclusion_proof_nodes,
    leaf_hash,
    root_at,
    verify_consistency,
)
from audit.note import Checkpoint, NoteSigner, NoteVerifier, sign_checkpoint
from audit.store import (
    audit_checkpoints,
    audit_entries,
    audit_leaves,
    audit_nodes,
    audit_pending,
    aware,
)
from audit.verify import VerificationReport, check_log

SEQUENCER_LOCK_KEY = 0x4B59534F_41554454  # "KYSOAUDT": one advisory lock per database
"""The PostgreSQL advisory lock key that elects the single sequencer."""

MAX_ENTRIES_PAGE = 1000
"""Most entries :meth:`AuditLog.entries` returns per call."""

DEFAULT_BATCH = 5000
"""Most pending entries one :meth:`AuditLog.sequence` call places in the tree."""

GROUP_COMMIT_MAX = 1000
"""Most events :meth:`AuditLog.record` commits in one transaction."""

_VERIFY_PAGE = 5000
_CHECKPOINT_EVENTS_MAX = 8
"""More new entries than this since the last checkpoint cannot all be checkpoint events (one
per publication, a handful of processes publishing at once)."""

APPENDS = Counter("kyso_audit_appends", "Events admitted to the audit log (before commit)")
SEQUENCED = Counter("kyso_audit_sequenced", "Entries given a tree index by the sequencer")
BACKLOG = Gauge("kyso_audit_backlog", "Admitted entries not yet sequenced, as last seen")
CHECKPOINTS = Counter("kyso_audit_checkpoints", "Checkpoints signed and stored")
TREE_SIZE = Gauge("kyso_audit_tree_size", "Sequenced entries, as last seen by the sequencer")


@dataclass(frozen=True, kw_only=True)
class LogEntry:
    """One sequenced entry."""

    index: int
    """Its position in the tree."""

    leaf: bytes
    """The exact canonical leaf bytes that were hashed."""


@dataclass(frozen=True, kw_only=True)
class StoredCheckpoint:
    """A signed checkpoint as the log stored it."""

    size: int
    """Tree size it commits to."""

    root_hash: bytes
    """Root of the tree at :attr:`size`."""

    note: str
    """The signed note text, as published."""

    created_at: datetime
    """When the log signed it."""


def _storage_error(what: str, ex: SQLAlchemyError) -> LogError:
    original = getattr(ex, "orig", None) or ex
    first_line = str(original).splitlines()[0] if str(original) else type(ex).__name__
    return LogError(f"{what}: {first_line}", reason=LogFailure.STORAGE)


def _fetch_nodes(
    connection: Connection, coordinates: Sequence[Coordinate]
) -> dict[Coordinate, bytes]:
    """Every requested subtree hash in one query (level 0 from leaves, above from nodes)."""
    wanted = set(coordinates)
    leaves = sorted(i for level, i in wanted if level == 0)
    upper = sorted((level, i) for level, i in wanted if level > 0)
    parts = []
    if leaves:
        parts.append(
            select(
                literal(0).label("level"),
                audit_leaves.c.idx.label("idx"),
                audit_leaves.c.leaf_hash.label("hash"),
            ).where(audit_leaves.c.idx.in_(leaves))
        )
    if upper:
        parts.append(
            select(audit_nodes.c.level, audit_nodes.c.idx, audit_nodes.c.hash).where(
                or_(*(and_(audit_nodes.c.level == lv, audit_nodes.c.idx == i) for lv, i in upper))
            )
        )
    if not parts:
        return {}
    query = parts[0] if len(parts) == 1 else union_all(*parts)
    return {(int(lv), int(i)): bytes(h) for lv, i, h in connection.execute(query)}


def _reader(nodes: dict[Coordinate, bytes]) -> _NodeLookup:
    return _NodeLookup(nodes)


class _NodeLookup:
    """A :data:`audit.merkle.NodeReader` over prefetched nodes; a hole is corruption."""

    def __init__(self, nodes: dict[Coordinate, bytes]) -> None:
        self._nodes = nodes

    def __call__(self, level: int, index: int) -> bytes:
        try:
            return self._nodes[level, index]
        except KeyError:
            raise LogError(
                f"subtree ({level}, {index}) is missing from the store",
                reason=LogFailure.INCONSISTENT,
            ) from None


def _tree_size(connection: Connection) -> int:
    highest = connection.execute(select(func.max(audit_leaves.c.idx))).scalar()
    return 0 if highest is None else int(highest) + 1


_INSERT_ENTRY = insert(audit_entries)
"""Built once: per-call ``.values(...)`` costs more than the insert itself on SQLite."""

_INSERT_SQL = "INSERT INTO audit_entries (created_at, leaf, leaf_hash) VALUES {} RETURNING id"


def _entry_row(event: AuditEvent) -> dict[str, object]:
    if not isinstance(event, AuditEvent):
        raise EventError("only an AuditEvent can be appended", reason=EventFailure.INVALID)
    leaf = event.leaf()
    if len(leaf) > MAX_LEAF_BYTES:  # AuditEvent bounds it already; storage relies on it
        raise EventError(
            f"the leaf is {len(leaf)} bytes, the limit is {MAX_LEAF_BYTES}",
            reason=EventFailure.TOO_LARGE,
        )
    return {"created_at": datetime.now(UTC), "leaf": leaf, "leaf_hash": leaf_hash(leaf)}


@dataclass(eq=False)
class _Queued:
    row: dict[str, object]
    done: bool = False
    entry_id: int = 0
    error: BaseException | None = None


class _GroupCommit:
    """Leader/follower group commit of events recorded on their own.

    Callers queue their row; one of them at a time (the leader) writes everything queued, up
    to :data:`GROUP_COMMIT_MAX` rows, in one transaction, and repeats until its own row is
    in; the others wait and return when theirs is. Durability is the same as one
    transaction per event, but a commit's cost is shared by everyone who arrived during the
    previous one. (Measured: two leaders in flight were slower than one.)

    A batch commits or fails as a whole, and when it fails every caller in it gets the
    error: no caller is told "failed" for an event that was stored, nor handed an id for one
    that was not.
    """

    def __init__(self, engine: Engine, sqlite_writer: threading.Lock) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"
        self._sqlite_writer = sqlite_writer
        # What SQLAlchemy would send for the column (SQLite stores datetimes as text).
        processor = audit_entries.c.created_at.type.bind_processor(engine.dialect)
        self._bind_time: Callable[[object], object] = processor or (lambda value: value)
        self._changed = threading.Condition()
        self._queue: list[_Queued] = []
        self._leading = False
        self._connection: Connection | None = None

    def commit(self, row: dict[str, object]) -> int:
        mine = _Queued(row)
        with self._changed:
            self._queue.append(mine)
            while self._leading and not mine.done:
                self._changed.wait()
            leading = not mine.done
            if leading:
                self._leading = True
        if leading:
            try:
                while not mine.done:
                    with self._changed:
                        batch = self._queue[:GROUP_COMMIT_MAX]
                        del self._queue[:GROUP_COMMIT_MAX]
                    self._write(batch)
                    with self._changed:
                        self._changed.notify_all()
            finally:
                with self._changed:
                    self._leading = False
                    self._changed.notify_all()
        error = mine.error
        if isinstance(error, SQLAlchemyError):
            raise _storage_error("recording an audit event failed", error) from error
        if error is not None:
            raise LogError(
                f"recording an audit event failed: {type(error).__name__}",
                reason=LogFailure.STORAGE,
            ) from error
        return mine.entry_id

    def _write(self, batch: list[_Queued]) -> None:
        try:
            ids = self._insert([q.row for q in batch])
            for queued, entry_id in zip(batch, ids, strict=True):
                queued.entry_id = entry_id
        except BaseException as ex:
            # Whatever the failure, each follower must hear of it: a row marked done without
            # an error would hand its caller entry id 0 as a success.
            for queued in batch:
                queued.error = ex
            with contextlib.suppress(SQLAlchemyError):
                self.close(invalidate=True)
            if not isinstance(ex, Exception):
                raise  # an interrupt of the leader's thread goes on up
        else:
            APPENDS.inc(len(batch))
        finally:
            for queued in batch:
                queued.done = True

    def _insert(self, rows: list[dict[str, object]]) -> list[int]:
        if self._connection is None:
            # Kept by the leaders, so no pool check-out, ping or reset is paid per batch.
            self._connection = self._engine.connect().execution_options(
                isolation_level="AUTOCOMMIT"
            )
        # One multi-row INSERT, written for the driver: SQLAlchemy's compiled bulk insert
        # costs about twice the client CPU per batch, and CPU is what bounds the rate.
        # Both engines assign the ids in VALUES order (a sequence or the rowid, taken row by
        # row); RETURNING does not promise its order, so the ids are sorted.
        mark = "?" if self._sqlite else "%s"
        sql = _INSERT_SQL.format(", ".join([f"({mark}, {mark}, {mark})"] * len(rows)))
        stamp = self._bind_time
        params = tuple(
            v for row in rows for v in (stamp(row["created_at"]), row["leaf"], row["leaf_hash"])
        )
        connection = self._connection
        if self._sqlite:
            # pysqlite would open a deferred transaction; BEGIN IMMEDIATE takes the write
            # lock (with the busy timeout) before anything is written. On error the
            # connection is discarded, which rolls the transaction back.
            with self._sqlite_writer:
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                ids = connection.exec_driver_sql(sql, params).scalars().all()
                connection.exec_driver_sql("COMMIT")
        else:
            # In autocommit mode the one statement is atomic and durable in one round trip;
            # BEGIN / INSERT / COMMIT would take three.
            ids = connection.exec_driver_sql(sql, params).scalars().all()
        return sorted(int(i) for i in ids)

    def close(self, *, invalidate: bool = False) -> None:
        """Give the kept connection back (or discard it after an error)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            if invalidate:
                connection.invalidate()
            connection.close()


class AuditLog:
    """The audit log stored in the application database."""

    def __init__(self, *, engine: Engine, origin: str, signer: NoteSigner | None = None) -> None:
        # Validates the origin the same way a checkpoint will, before anything is stored.
        Checkpoint(origin=origin, size=0, root_hash=EMPTY_ROOT)
        self._engine = engine
        self._origin = origin
        self._signer = signer
        self._sqlite = engine.dialect.name == "sqlite"
        # SQLite has one write lock, and a writer that finds it taken polls for it with
        # sleeps of up to 100 ms (sqlite3_busy_timeout). The log's own writers — the group
        # commit and the sequencer — queue on this lock instead, so within the process the
        # next one starts as soon as the last commits (measured: p99 of record() from 110 ms
        # to a few ms while the sequencer runs every 0.2 s).
        self._sqlite_writer = threading.Lock()
        self._group = _GroupCommit(engine, self._sqlite_writer)

    @property
    def origin(self) -> str:
        """The log's identity, first line of every checkpoint."""
        return self._origin

    @property
    def signer(self) -> NoteSigner | None:
        """The checkpoint signer, or None while the log has none."""
        return self._signer

    def close(self) -> None:
        """Give back the connection :meth:`record` keeps; the log stays usable."""
        self._group.close()

    def set_signer(self, signer: NoteSigner) -> None:
        """Give checkpoints their signer, for a log opened before its key could be found
        (not created yet, or the HSM down at start-up). Checkpoints published from now on
        are signed by it; a checkpoint being signed right now finishes with the old one."""
        self._signer = signer

    # -- admission ---------------------------------------------------------------------------

    @staticmethod
    def append_event(
        connection: Connection,
        action: Action,
        actor: Actor,
        details: Mapping[str, DetailValue],
        *,
        subject: Subject | None = None,
        outcome: Outcome | None = None,
        time: datetime | None = None,
    ) -> int:
        """The event of an operation (successful unless ``outcome`` says otherwise, at
        ``time`` or now), admitted in the operation's own transaction: :meth:`append`."""
        return AuditLog.append(
            connection,
            AuditEvent(
                time=time or datetime.now(UTC),
                action=action,
                actor=actor,
                outcome=outcome or Outcome(success=True),
                subject=subject or Subject(),
                details=details,
            ),
        )

    @staticmethod
    def append(connection: Connection, event: AuditEvent) -> int:
        """Admit ``event`` in the caller's transaction; returns the entry id (not the index).

        The entry exists exactly when the caller commits; it gets its tree index later, from
        :meth:`sequence`.
        """
        # One prepared INSERT; a trigger queues the entry for the sequencer (audit.store).
        result = connection.execute(_INSERT_ENTRY, _entry_row(event))
        primary_key = result.inserted_primary_key
        assert primary_key is not None
        entry_id = int(primary_key[0])
        APPENDS.inc()
        return entry_id

    def record(self, event: AuditEvent) -> int:
        """Durably commit ``event`` on its own (it describes no business record of the
        caller's); returns the entry id once the commit is done.

        Safe from any number of threads: concurrent calls share transactions (group commit).
        """
        return self._group.commit(_entry_row(event))

    # -- the single writer -------------------------------------------------------------------

    @contextlib.contextmanager
    def _writer(self, *, wait: bool) -> Iterator[Connection | None]:
        """A transaction holding the sequencer's lock, or None if another process holds it."""
        if self._sqlite:
            with self._sqlite_writer, self._engine.connect() as raw:
                # pysqlite would otherwise open a deferred transaction on the first write;
                # autocommit lets BEGIN IMMEDIATE take the write lock before anything is read.
                connection = raw.execution_options(isolation_level="AUTOCOMMIT")
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                try:
                    yield connection
                except BaseException:
                    connection.exec_driver_sql("ROLLBACK")
                    raise
                connection.exec_driver_sql("COMMIT")
            return
        with self._engine.begin() as connection:
            if wait:
                connection.execute(select(func.pg_advisory_xact_lock(SEQUENCER_LOCK_KEY)))
            elif not connection.execute(
                select(func.pg_try_advisory_xact_lock(SEQUENCER_LOCK_KEY))
            ).scalar():
                yield None
                return
            yield connection

    def sequence(self, max_batch: int = DEFAULT_BATCH) -> int:
        """Give the oldest pending entries tree indices; returns how many were placed.

        Returns 0 when nothing is pending or, on PostgreSQL, when another process is the
        sequencer right now.
        """
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise LogError("max_batch must be a positive integer", reason=LogFailure.BAD_RANGE)
        try:
            with self._writer(wait=False) as connection:
                if connection is None:
                    return 0
                return self._sequence(connection, max_batch)
        except SQLAlchemyError as ex:
            raise _storage_error("sequencing the audit log failed", ex) from ex

    def _sequence(self, connection: Connection, max_batch: int) -> int:
        pending = connection.execute(
            select(audit_pending.c.entry_id, audit_entries.c.leaf_hash)
            .join(audit_entries, audit_entries.c.id == audit_pending.c.entry_id)
            .order_by(audit_pending.c.entry_id)
            .limit(max_batch)
        ).all()
        if not pending:
            BACKLOG.set(0)
            return 0
        size = _tree_size(connection)
        builder = TreeBuilder.resume(size, _reader(_fetch_nodes(connection, frontier_nodes(size))))
        leaves: list[dict[str, object]] = []
        nodes: list[dict[str, object]] = []
        for entry_id, stored_hash in pending:
            rows = builder.append(bytes(stored_hash))
            leaves.append({"idx": rows[0][1], "entry_id": entry_id, "leaf_hash": rows[0][2]})
            nodes.extend({"level": lv, "idx": i, "hash": h} for lv, i, h in rows[1:])
        connection.execute(insert(audit_leaves), leaves)
        if nodes:
            connection.execute(insert(audit_nodes), nodes)
        connection.execute(
            delete(audit_pending).where(audit_pending.c.entry_id.in_([e for e, _ in pending]))
        )
        SEQUENCED.inc(len(pending))
        TREE_SIZE.set(builder.size)
        if len(pending) < max_batch:
            BACKLOG.set(0)
        return len(pending)

    # -- reads -------------------------------------------------------------------------------

    def backlog(self) -> int:
        """Number of admitted entries waiting for the sequencer."""
        with self._engine.connect() as connection:
            count = int(
                connection.execute(select(func.count()).select_from(audit_pending)).scalar_one()
            )
        BACKLOG.set(count)
        return count

    def size(self) -> int:
        """Number of sequenced entries."""
        with self._engine.connect() as connection:
            return _tree_size(connection)

    def _check_size(self, connection: Connection, size: int, what: str = "tree size") -> int:
        current = _tree_size(connection)
        if isinstance(size, int) and not isinstance(size, bool) and size > current:
            raise LogError(
                f"{what} {size} is beyond the log, which has {current} entries",
                reason=LogFailure.BEYOND_LOG,
            )
        return current

    def root(self, size: int | None = None) -> bytes:
        """Root hash of the tree at ``size`` (default: the current size)."""
        with self._engine.connect() as connection:
            current = self._check_size(connection, size if size is not None else 0)
            size = current if size is None else size
            nodes = _fetch_nodes(connection, frontier_nodes(size))
        return root_at(size, _reader(nodes))

    def entries(self, start: int, end: int) -> list[LogEntry]:
        """Entries ``[start, end)`` in index order; at most :data:`MAX_ENTRIES_PAGE` per call."""
        for value in (start, end):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LogError(
                    f"entry range bounds must be non-negative integers, got {value!r}",
                    reason=LogFailure.BAD_RANGE,
                )
        if end <= start or end - start > MAX_ENTRIES_PAGE:
            raise LogError(
                f"entry range [{start}, {end}) must hold 1 to {MAX_ENTRIES_PAGE} entries",
                reason=LogFailure.BAD_RANGE,
            )
        with self._engine.connect() as connection:
            self._check_size(connection, end, "entry range end")
            rows = connection.execute(
                select(audit_leaves.c.idx, audit_entries.c.leaf)
                .join(audit_entries, audit_entries.c.id == audit_leaves.c.entry_id)
                .where(audit_leaves.c.idx >= start, audit_leaves.c.idx < end)
                .order_by(audit_leaves.c.idx)
            ).all()
        return [LogEntry(index=int(i), leaf=bytes(leaf)) for i, leaf in rows]

    def leaf_index(self, leaf_hash: bytes) -> int | None:
        """Lowest index whose leaf hash is ``leaf_hash``, or None if not sequenced (yet)."""
        with self._engine.connect() as connection:
            found = connection.execute(
                select(func.min(audit_leaves.c.idx)).where(audit_leaves.c.leaf_hash == leaf_hash)
            ).scalar()
        return None if found is None else int(found)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size``."""
        coordinates = inclusion_proof_nodes(index, size)  # validates the arguments
        with self._engine.connect() as connection:
            self._check_size(connection, size)
            nodes = _fetch_nodes(connection, coordinates)
        return inclusion_proof(index, size, _reader(nodes))

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """RFC 9162 consistency proof from tree size ``first`` to ``second``."""
        coordinates = consistency_proof_nodes(first, second)  # validates the arguments
        with self._engine.connect() as connection:
            self._check_size(connection, second, "second tree size")
            nodes = _fetch_nodes(connection, coordinates)
        return consistency_proof(first, second, _reader(nodes))

    # -- checkpoints -------------------------------------------------------------------------

    def publish_checkpoint(self) -> str | None:
        """Sequence what is pending and sign a checkpoint if the tree grew (by more than the
        last checkpoint's own event); returns the note, and records an ``audit.checkpoint``
        event in the same transaction.

        Returns None when the last checkpoint already covers the whole tree. Raises
        :class:`LogError` ``audit.inconsistent`` (and signs nothing) when the stored tree does
        not extend the last signed checkpoint.
        """
        signer = self._signer
        if signer is None:
            raise LogError("this log has no note signer", reason=LogFailure.NO_SIGNER)
        while self.sequence() == DEFAULT_BATCH:
            pass
        try:
            with self._writer(wait=True) as connection:
                assert connection is not None
                note = self._publish(connection, signer)
        except SQLAlchemyError as ex:
            raise _storage_error("publishing a checkpoint failed", ex) from ex
        if note is not None:
            CHECKPOINTS.inc()
        return note

    def _publish(self, connection: Connection, signer: NoteSigner) -> str | None:
        size = _tree_size(connection)
        last = connection.execute(
            select(audit_checkpoints.c.size, audit_checkpoints.c.root_hash)
            .order_by(audit_checkpoints.c.size.desc())
            .limit(1)
        ).first()
        if last is not None and int(last.size) > size:
            raise LogError(
                f"the last signed checkpoint has size {last.size} but the tree has only "
                f"{size} entries: the log was truncated",
                reason=LogFailure.INCONSISTENT,
            )
        if last is not None and self._only_checkpoint_events(connection, int(last.size), size):
            return None
        first = 0 if last is None else int(last.size)
        proof_nodes = consistency_proof_nodes(first, size)
        reader = _reader(_fetch_nodes(connection, [*proof_nodes, *frontier_nodes(size)]))
        root = root_at(size, reader)
        if last is not None:
            try:
                verify_consistency(
                    first, size, bytes(last.root_hash), root, consistency_proof(first, size, reader)
                )
            except ProofError as ex:
                raise LogError(
                    f"the stored tree of size {size} does not extend the signed checkpoint "
                    f"of size {first}: {ex.message}",
                    reason=LogFailure.INCONSISTENT,
                ) from ex
        note = sign_checkpoint(Checkpoint(origin=self._origin, size=size, root_hash=root), [signer])
        now = datetime.now(UTC)
        connection.execute(
            insert(audit_checkpoints).values(size=size, root_hash=root, note=note, created_at=now)
        )
        # The log records its own checkpoints, so the history of what was published is itself
        # provable. The event lands in the next tree, which is therefore never empty of news;
        # _only_checkpoint_events keeps that from calling for a checkpoint of its own.
        self.append(
            connection,
            AuditEvent(
                time=now,
                action=Action.AUDIT_CHECKPOINT,
                actor=Actor(id="kyso", role="system"),
                outcome=Outcome(success=True),
                details={"size": size, "root_hash": root.hex(), "key_id": signer.key_id.hex()},
            ),
        )
        return note

    @staticmethod
    def _only_checkpoint_events(connection: Connection, last_size: int, size: int) -> bool:
        """True when nothing but checkpoint events entered the tree since ``last_size`` (the
        size of the newest signed checkpoint)."""
        if size == last_size:
            return True
        if size - last_size > _CHECKPOINT_EVENTS_MAX:
            return False
        leaves = connection.execute(
            select(audit_entries.c.leaf)
            .join(audit_leaves, audit_leaves.c.entry_id == audit_entries.c.id)
            .where(audit_leaves.c.idx >= last_size, audit_leaves.c.idx < size)
        ).scalars()
        return all(
            AuditEvent.from_leaf(bytes(leaf)).action is Action.AUDIT_CHECKPOINT for leaf in leaves
        )

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The checkpoint with the largest size, or None before the first one."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(audit_checkpoints).order_by(audit_checkpoints.c.size.desc()).limit(1)
            ).first()
        return None if row is None else _stored_checkpoint(row)

    def checkpoints(self) -> list[StoredCheckpoint]:
        """Every stored checkpoint, smallest size first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_checkpoints).order_by(audit_checkpoints.c.size)
            ).all()
        return [_stored_checkpoint(row) for row in rows]

    # -- self-audit --------------------------------------------------------------------------

    def verify_database(
        self, verifiers: Sequence[NoteVerifier], *, strict: bool = False
    ) -> VerificationReport:
        """Recompute the whole tree from the stored entries and check it against the stored
        leaves, nodes and signed checkpoints; reports the first problem found.

        Reads the entries in pages; keeps the recomputed subtree hashes in memory (about n
        of them) to compare with the stored ones.
        """
        with self._engine.connect() as connection:
            notes = [
                (f"size {row.size}", str(row.note), int(row.size))
                for row in connection.execute(
                    select(audit_checkpoints.c.size, audit_checkpoints.c.note).order_by(
                        audit_checkpoints.c.size
                    )
                )
            ]

            def leaves() -> Iterator[tuple[int, bytes, bytes | None]]:
                after = -1
                while True:
                    rows = connection.execute(
                        select(audit_leaves.c.idx, audit_entries.c.leaf, audit_leaves.c.leaf_hash)
                        .join(audit_entries, audit_entries.c.id == audit_leaves.c.entry_id)
                        .where(audit_leaves.c.idx > after)
                        .order_by(audit_leaves.c.idx)
                        .limit(_VERIFY_PAGE)
                    ).all()
                    for idx, leaf, stored in rows:
                        yield int(idx), bytes(leaf), bytes(stored)
                    if len(rows) < _VERIFY_PAGE:
                        return
                    after = int(rows[-1][0])

            def nodes() -> Iterator[tuple[int, int, bytes]]:
                for level, idx, h in connection.execute(
                    select(audit_nodes.c.level, audit_nodes.c.idx, audit_nodes.c.hash)
                ):
                    yield int(level), int(idx), bytes(h)

            return check_log(
                leaves(),
                notes,
                verifiers,
                origin=self._origin,
                strict=strict,
                stored_nodes=nodes(),
            )


def _stored_checkpoint(row: Row[Any]) -> StoredCheckpoint:
    created_at = aware(row.created_at)
    return StoredCheckpoint(
        size=int(row.size),
        root_hash=bytes(row.root_hash),
        note=str(row.note),
        created_at=created_at,
    )
