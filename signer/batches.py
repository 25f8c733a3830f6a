"""Batches: up to :data:`~signer.store.MAX_BATCH_ITEMS` sign or seal steps of the document
registry, authorised once and worked through in the background.

A batch and each of its items are rows in the database, so its progress survives a restart
and every process of the service reads the same answer. The process that accepted a batch
works on it in a thread of its own, one item at a time, each through
:meth:`~signer.documents.DocumentRegistry.sign` or
:meth:`~signer.documents.DocumentRegistry.seal` (which serialise per document and per unit
themselves) with the idempotency key ``batch:<batch id>:<position>``:

* an item that fails (wrong state, unknown document, HSM outage, TSA failure…) is recorded
  as failed with its error code and message, and the batch goes on with the next one;
* the worker holds the batch by a heartbeat written with each item's result. A batch left
  ``running`` whose heartbeat is older than the lease — its process stopped or died — is
  claimed and resumed by whichever process scans next (:meth:`BatchRunner.resume`). A
  process that stops cleanly lets go of its batches at once. An item whose step committed
  just before its worker died is replayed through its idempotency key: never signed twice;
* an item is ``done`` exactly when the registry committed its step, and with it the step's
  audit events (``document.signed``, or ``document.sealed`` and ``document.issued``); a
  failed item has none.

Authorisation (the credential's PIN, or its successor) belongs to the caller and happens
once, before :meth:`BatchRunner.submit`; the items are then signed in the name of the actor
who submitted the batch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from audit.errors import AuditError
from audit.events import Actor
from audit.store import aware
from hsm import HsmError
from pki.authority import Credential
from pki.errors import PkiError
from pki.store import CredentialKind
from signer.documents import Document, DocumentRegistry, new_document_id
from signer.errors import (
    InvalidRequestError,
    SignerError,
    WrongCredentialError,
)
from signer.placement import (
    DEFAULT_SIGNATURE_SIZE,
    AnchorPlacement,
    FieldPlacement,
    Placement,
    RectPlacement,
)
from signer.store import (
    DOCUMENT_ID_LENGTH,
    MAX_BATCH_ITEMS,
    MAX_ERROR_MESSAGE,
    BatchAction,
    BatchItemStatus,
    BatchStatus,
    RevisionKind,
    database_errors,
    idempotency_keys,
    signing_batch_items,
    signing_batches,
)

log = logging.getLogger("kyso.signer.batches")

DEFAULT_LEASE = 60.0
"""Seconds without a heartbeat after which another process may resume a running batch."""

DEFAULT_WORKERS = 2
"""Batches worked on at once per process (each one item at a time)."""

MAX_PLACEMENT_JSON = 512
"""Longest placement of one item, as stored (JSON)."""

MAX_CONSECUTIVE_OUTAGES = 3
"""Items failing in a row because the HSM, the TSA or the database is down, after which the
rest of the batch is failed without being tried (resubmit them once the service is back)."""

_OUTAGES = frozenset(
    {"signer.storage", "signer.blob_storage", "signer.busy", "signer.timestamp_failed",
     "pki.unavailable"}
)  # fmt: skip
_ID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}", re.ASCII)
_WAIT_STEP = 0.02


class BatchNotFoundError(SignerError):
    """No batch under that id."""

    code = "signer.batch_not_found"


# -- what callers hand in and get back --------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class BatchItemRequest:
    """One document of a batch as the caller asks for it."""

    document_id: str
    """The registry's public id of the document."""

    placement: Placement | None = None
    """Where the officer's signature goes (sign batches only); the registry's default
    (the template's field, else below the officer's title line) when None."""


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    """One document of a batch and what became of it."""

    position: int
    """0-based place in the request."""

    document_id: str
    """The document."""

    status: BatchItemStatus
    """Pending, done or failed."""

    revision: int | None
    """The revision the step produced; set exactly when done."""

    error_code: str | None
    """Stable code of the error that failed the item (e.g. ``signer.invalid_state``)."""

    error_message: str | None
    """Its message (cut at :data:`~signer.store.MAX_ERROR_MESSAGE` characters)."""

    def as_dict(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"document_id": self.document_id, "status": self.status.value}
        if self.revision is not None:
            shown["revision"] = self.revision
        if self.error_code is not None:
            shown["error"] = {"code": self.error_code, "message": self.error_message or ""}
        return shown


@dataclass(frozen=True, kw_only=True)
class Batch:
    """A batch, its progress and its items."""

    id: str
    """Random public id, 26 characters."""

    action: BatchAction
    """Sign or seal."""

    credential_id: int
    """The credential every item is signed with."""

    status: BatchStatus
    """Running until every item is done or failed; then done or failed-partly."""

    created_at: datetime
    """When the batch was accepted (UTC)."""

    finished_at: datetime | None
    """When its last item was done (UTC); None while running."""

    items: tuple[BatchItem, ...]
    """Every item, in the order of the request."""

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def done(self) -> int:
        return sum(item.status is BatchItemStatus.DONE for item in self.items)

    @property
    def failed(self) -> int:
        return sum(item.status is BatchItemStatus.FAILED for item in self.items)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action.value,
            "credential_id": self.credential_id,
            "status": self.status.value,
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "created_at": self.created_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "items": [item.as_dict() for item in self.items],
        }


# -- placements as stored ------------------------------------------------------------------


def placement_to_json(placement: Placement | None) -> str | None:
    """The stored form of a placement; :func:`placement_from_json` gives back an equal one."""
    if placement is None:
        return None
    value: dict[str, Any]
    if isinstance(placement, FieldPlacement):
        value = {"field": placement.name}
    elif isinstance(placement, RectPlacement):
        value = {"page": placement.page, "rect": [float(v) for v in placement.rect]}
    elif isinstance(placement, AnchorPlacement):
        value = {
            "anchor": placement.text,
            "page": placement.page,
            "size": [float(v) for v in placement.size],
        }
    else:
        raise InvalidRequestError(f"unknown placement {placement!r:.80}")
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, allow_nan=False)
    if len(text) > MAX_PLACEMENT_JSON:
        raise InvalidRequestError(f"a placement must fit in {MAX_PLACEMENT_JSON} characters")
    return text


def placement_from_json(text: str | None) -> Placement | None:
    if text is None:
        return None
    value = json.loads(text)
    if "field" in value:
        return FieldPlacement(name=value["field"])
    if "rect" in value:
        x1, y1, x2, y2 = (float(v) for v in value["rect"])
        return RectPlacement(page=int(value["page"]), rect=(x1, y1, x2, y2))
    width, height = (float(v) for v in value.get("size", DEFAULT_SIGNATURE_SIZE))
    page = value.get("page")
    return AnchorPlacement(
        text=value["anchor"], page=None if page is None else int(page), size=(width, height)
    )


# -- the runner --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Work:
    """What a worker needs of a batch, read once when it starts on it."""

    id: str
    action: BatchAction
    credential_id: int
    actor: Actor


@dataclass(frozen=True, kw_only=True)
class _Result:
    revision: int | None = None
    error_code: str | None = None
    error_message: str | None = None


class _LostClaim(Exception):
    """Another process took the batch over (this one's heartbeat was too old)."""


class BatchRunner:
    """Accepts batches, works on them in background threads, answers their progress.
    Thread-safe; every method blocks (run it in a thread from async code)."""

    def __init__(
        self,
        *,
        engine: Engine,
        registry: DocumentRegistry,
        workers: int = DEFAULT_WORKERS,
        lease: float = DEFAULT_LEASE,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``lease`` (seconds) must be far longer than one item takes; ``clock`` (aware
        datetimes) is for tests."""
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError("workers must be a positive integer")
        if not math.isfinite(lease) or lease < 0:
            raise ValueError("lease must be a non-negative number of seconds")
        self._engine = engine
        self._registry = registry
        self._lease = timedelta(seconds=lease)
        self._clock = clock or (lambda: datetime.now(UTC))
        # Unique per runner, so that two runners of one process (tests) do not share claims.
        self._worker = secrets.token_hex(8)
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kyso-batch")
        self._lock = threading.Lock()
        self._active: set[str] = set()
        self._closing = threading.Event()

    @property
    def worker(self) -> str:
        """This runner's name in the ``worker`` column of the batches it holds."""
        return self._worker

    # -- submitting ------------------------------------------------------------------------

    def submit(
        self,
        action: BatchAction,
        credential: Credential,
        items: Sequence[BatchItemRequest],
        actor: Actor,
    ) -> Batch:
        """Accept a batch of ``items`` for ``action`` with ``credential`` — which the caller
        has authorised for ``actor`` — and start working on it; returns it as accepted.

        Refused as a whole: an empty batch or one over
        :data:`~signer.store.MAX_BATCH_ITEMS` items, a malformed or repeated document id, a
        placement in a seal batch (``signer.invalid_request``); a credential of the wrong
        kind for the action (``signer.wrong_credential``). Everything else is decided per
        item when it is worked on.
        """
        if not isinstance(action, BatchAction):
            raise InvalidRequestError("action must be a BatchAction")
        if not isinstance(actor, Actor):
            raise InvalidRequestError("actor must be an audit Actor")
        needed = CredentialKind.OFFICER if action is BatchAction.SIGN else CredentialKind.SEAL
        if credential.kind is not needed:
            article = "an" if needed.value[0] in "aeiou" else "a"
            raise WrongCredentialError(
                f"credential {credential.id} is a {credential.kind.value} credential; a "
                f"{action.value} batch needs {article} {needed.value} credential"
            )
        if not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise InvalidRequestError(f"a batch has 1 to {MAX_BATCH_ITEMS} items")
        rows: list[dict[str, object]] = []
        seen: set[str] = set()
        for position, item in enumerate(items):
            document_id = _document_id(item.document_id, position)
            if document_id in seen:
                raise InvalidRequestError(
                    f"item {position}: document {document_id} is already in the batch"
                )
            seen.add(document_id)
            if item.placement is not None and action is BatchAction.SEAL:
                raise InvalidRequestError(
                    f"item {position}: a seal goes into the field the officer reserved; "
                    "it takes no placement"
                )
            rows.append(
                {
                    "position": position,
                    "document_id": document_id,
                    "placement": placement_to_json(item.placement),
                }
            )
        batch_id = new_document_id()
        now = self._clock().astimezone(UTC)
        with database_errors("accepting a batch"), self._engine.begin() as connection:
            connection.execute(
                insert(signing_batches).values(
                    id=batch_id,
                    action=action.value,
                    credential_id=credential.id,
                    actor_id=actor.id,
                    actor_role=actor.role,
                    actor_unit=actor.unit,
                    status=BatchStatus.RUNNING.value,
                    total=len(rows),
                    created_at=now,
                    worker=self._worker,
                    heartbeat_at=now,
                )
            )
            connection.execute(
                insert(signing_batch_items),
                [
                    row
                    | {
                        "batch_id": batch_id,
                        "status": BatchItemStatus.PENDING.value,
                        "updated_at": now,
                    }
                    for row in rows
                ],
            )
        log.info(
            "batch accepted",
            extra={"batch_id": batch_id, "action": action.value, "total": len(rows)},
        )
        accepted = self.batch(batch_id)
        self._start(batch_id)
        return accepted

    # -- reading ---------------------------------------------------------------------------

    def batch(self, batch_id: str) -> Batch:
        """The batch with every item's status."""
        identifier = _batch_id(batch_id)
        with database_errors("reading a batch"), self._engine.connect() as connection:
            row = connection.execute(
                select(signing_batches).where(signing_batches.c.id == identifier)
            ).first()
            if row is None:
                raise BatchNotFoundError(f"no batch {identifier}")
            items = connection.execute(
                select(signing_batch_items)
                .where(signing_batch_items.c.batch_id == identifier)
                .order_by(signing_batch_items.c.position)
            ).all()
        return Batch(
            id=row.id,
            action=BatchAction(row.action),
            credential_id=row.credential_id,
            status=BatchStatus(row.status),
            created_at=aware(row.created_at),
            finished_at=None if row.finished_at is None else aware(row.finished_at),
            items=tuple(
                BatchItem(
                    position=item.position,
                    document_id=item.document_id,
                    status=BatchItemStatus(item.status),
                    revision=item.revision,
                    error_code=item.error_code,
                    error_message=item.error_message,
                )
                for item in items
            ),
        )

    def wait(self, batch_id: str, timeout: float) -> Batch:
        """The batch once it is no longer running, or as it is after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            batch = self.batch(batch_id)
            if batch.status is not BatchStatus.RUNNING or time.monotonic() >= deadline:
                return batch
            time.sleep(_WAIT_STEP)

    # -- resuming and stopping ------------------------------------------------------------

    def resume(self) -> list[str]:
        """Claim the running batches that no live process holds (no heartbeat within the
        lease, or let go of) and start working on them; returns their ids."""
        if self._closing.is_set():
            return []
        now = self._clock().astimezone(UTC)
        unheld = and_(
            signing_batches.c.status == BatchStatus.RUNNING.value,
            or_(
                signing_batches.c.heartbeat_at.is_(None),
                signing_batches.c.heartbeat_at < now - self._lease,
            ),
        )
        claimed = []
        with database_errors("resuming batches"):
            with self._engine.connect() as connection:
                found = (
                    connection.execute(
                        select(signing_batches.c.id)
                        .where(unheld)
                        .order_by(signing_batches.c.created_at)
                        .limit(100)
                    )
                    .scalars()
                    .all()
                )
            for batch_id in found:
                with self._lock:
                    if batch_id in self._active:
                        continue
                # The same condition again: of two processes scanning at once, one wins.
                with self._engine.begin() as connection:
                    won = connection.execute(
                        update(signing_batches)
                        .where(signing_batches.c.id == batch_id, unheld)
                        .values(worker=self._worker, heartbeat_at=now)
                    ).rowcount
                if won == 1:
                    claimed.append(batch_id)
                    log.info("batch resumed", extra={"batch_id": batch_id})
                    self._start(batch_id)
        return claimed

    def close(self) -> None:
        """Stop: each worker finishes the item in hand and lets go of its batch, which the
        next process to start (or scan) resumes at once."""
        self._closing.set()
        self._executor.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            unstarted = list(self._active)
        for batch_id in unstarted:
            self._release(batch_id)

    # -- working ---------------------------------------------------------------------------

    def _start(self, batch_id: str) -> None:
        with self._lock:
            if batch_id in self._active or self._closing.is_set():
                return
            self._active.add(batch_id)
        # RuntimeError: shut down meanwhile; close() lets go of the claim.
        with contextlib.suppress(RuntimeError):
            self._executor.submit(self._run, batch_id)

    def _run(self, batch_id: str) -> None:
        try:
            work = self._work(batch_id)
            outages = 0
            while not self._closing.is_set():
                pending = self._next_pending(batch_id)
                if pending is None:
                    self._finish(work)
                    return
                position, document_id, placement = pending
                result = self._item(work, position, document_id, placement)
                self._record(work, position, result)
                outages = outages + 1 if _is_outage(result.error_code) else 0
                if outages >= MAX_CONSECUTIVE_OUTAGES:
                    # The HSM, TSA or database is down: every remaining item would wait for
                    # its own timeout and fail the same way. Stop, and say so per item.
                    assert result.error_code is not None
                    self._abandon(work, result.error_code, result.error_message or "")
            self._release(batch_id)
        except _LostClaim:
            log.warning("batch taken over by another process", extra={"batch_id": batch_id})
        except Exception:
            # The batch stays running without a heartbeat: resumed after the lease.
            log.exception("batch worker failed", extra={"batch_id": batch_id})
        finally:
            with self._lock:
                self._active.discard(batch_id)

    def _work(self, batch_id: str) -> _Work:
        with database_errors("reading a batch"), self._engine.connect() as connection:
            row = connection.execute(
                select(signing_batches).where(signing_batches.c.id == batch_id)
            ).one()
        return _Work(
            id=row.id,
            action=BatchAction(row.action),
            credential_id=row.credential_id,
            actor=Actor(id=row.actor_id, role=row.actor_role, unit=row.actor_unit),
        )

    def _next_pending(self, batch_id: str) -> tuple[int, str, Placement | None] | None:
        with database_errors("reading a batch"), self._engine.connect() as connection:
            row = connection.execute(
                select(
                    signing_batch_items.c.position,
                    signing_batch_items.c.document_id,
                    signing_batch_items.c.placement,
                )
                .where(
                    signing_batch_items.c.batch_id == batch_id,
                    signing_batch_items.c.status == BatchItemStatus.PENDING.value,
                )
                .order_by(signing_batch_items.c.position)
                .limit(1)
            ).first()
        if row is None:
            return None
        return row.position, row.document_id, placement_from_json(row.placement)

    def _item(
        self, work: _Work, position: int, document_id: str, placement: Placement | None
    ) -> _Result:
        key = f"batch:{work.id}:{position}"
        try:
            if work.action is BatchAction.SIGN:
                document = self._registry.sign(
                    document_id,
                    work.credential_id,
                    work.actor,
                    idempotency_key=key,
                    placement=placement,
                )
            else:
                document = self._registry.seal(
                    document_id, work.credential_id, work.actor, idempotency_key=key
                )
        except (SignerError, PkiError, HsmError, AuditError) as ex:
            code, message = ex.code, ex.message
        except Exception as ex:
            log.exception("batch item failed unexpectedly", extra={"batch_id": work.id})
            code, message = "signer.error", f"unexpected {type(ex).__name__}; see the log"
        else:
            return _Result(revision=_produced(document, work.action))
        # The step may have committed before the error (reading the document back after
        # the commit failed, say): its idempotency key then tells what it produced.
        committed = self._committed(work, key)
        if committed is not None:
            return _Result(revision=committed)
        return _Result(error_code=code[:64], error_message=message[:MAX_ERROR_MESSAGE])

    def _committed(self, work: _Work, key: str) -> int | None:
        # The registry scopes idempotency keys by operation and actor id.
        scope = f"{work.action.value}:{work.actor.id or ''}"
        try:
            with self._engine.connect() as connection:
                revision: int | None = connection.execute(
                    select(idempotency_keys.c.revision).where(
                        idempotency_keys.c.scope == scope, idempotency_keys.c.key == key
                    )
                ).scalar()
        except SQLAlchemyError:
            return None
        return revision

    def _record(self, work: _Work, position: int, result: _Result) -> None:
        now = self._clock().astimezone(UTC)
        status = BatchItemStatus.DONE if result.revision is not None else BatchItemStatus.FAILED
        with database_errors("recording a batch item"), self._engine.begin() as connection:
            self._heartbeat(connection, work, now)
            connection.execute(
                update(signing_batch_items)
                .where(
                    signing_batch_items.c.batch_id == work.id,
                    signing_batch_items.c.position == position,
                    signing_batch_items.c.status == BatchItemStatus.PENDING.value,
                )
                .values(
                    status=status.value,
                    revision=result.revision,
                    error_code=result.error_code,
                    error_message=result.error_message,
                    updated_at=now,
                )
            )

    def _abandon(self, work: _Work, code: str, message: str) -> None:
        """Fail every pending item of the batch as not attempted, after an outage."""
        now = self._clock().astimezone(UTC)
        reason = (
            f"not attempted: the batch stopped after {MAX_CONSECUTIVE_OUTAGES} consecutive "
            f"failures ({message})"
        )[:MAX_ERROR_MESSAGE]
        with database_errors("recording a batch item"), self._engine.begin() as connection:
            self._heartbeat(connection, work, now)
            connection.execute(
                update(signing_batch_items)
                .where(
                    signing_batch_items.c.batch_id == work.id,
                    signing_batch_items.c.status == BatchItemStatus.PENDING.value,
                )
                .values(
                    status=BatchItemStatus.FAILED.value,
                    error_code=code,
                    error_message=reason,
                    updated_at=now,
                )
            )
        log.warning(
            "batch stopped after consecutive failures",
            extra={"batch_id": work.id, "code": code},
        )

    def _heartbeat(self, connection: Connection, work: _Work, now: datetime) -> None:
        held = connection.execute(
            update(signing_batches)
            .where(
                signing_batches.c.id == work.id,
                signing_batches.c.worker == self._worker,
                signing_batches.c.status == BatchStatus.RUNNING.value,
            )
            .values(heartbeat_at=now)
        ).rowcount
        if held != 1:
            raise _LostClaim

    def _finish(self, work: _Work) -> None:
        now = self._clock().astimezone(UTC)
        with database_errors("finishing a batch"), self._engine.begin() as connection:
            failed = connection.execute(
                select(func.count())
                .select_from(signing_batch_items)
                .where(
                    signing_batch_items.c.batch_id == work.id,
                    signing_batch_items.c.status == BatchItemStatus.FAILED.value,
                )
            ).scalar_one()
            status = BatchStatus.FAILED_PARTLY if failed else BatchStatus.DONE
            finished = connection.execute(
                update(signing_batches)
                .where(
                    signing_batches.c.id == work.id,
                    signing_batches.c.worker == self._worker,
                    signing_batches.c.status == BatchStatus.RUNNING.value,
                )
                .values(status=status.value, finished_at=now, worker=None, heartbeat_at=None)
            ).rowcount
        if finished != 1:
            raise _LostClaim
        log.info(
            "batch finished",
            extra={"batch_id": work.id, "status": status.value, "failed": failed},
        )

    def _release(self, batch_id: str) -> None:
        try:
            with self._engine.begin() as connection:
                connection.execute(
                    update(signing_batches)
                    .where(
                        signing_batches.c.id == batch_id,
                        signing_batches.c.worker == self._worker,
                        signing_batches.c.status == BatchStatus.RUNNING.value,
                    )
                    .values(worker=None, heartbeat_at=None)
                )
        except SQLAlchemyError as ex:
            # Resumed after the lease instead of at once.
            log.warning("could not let go of batch %s: %s", batch_id, type(ex).__name__)


def _is_outage(code: str | None) -> bool:
    """Whether an item failed because a service it needs is down, not because of its
    document."""
    return code is not None and (code.startswith(("hsm.", "audit.")) or code in _OUTAGES)


def _produced(document: Document, action: BatchAction) -> int:
    kind = RevisionKind.SIGNED if action is BatchAction.SIGN else RevisionKind.SEALED
    return next(r.revision for r in document.revisions if r.kind is kind)


def _document_id(value: object, position: int) -> str:
    if isinstance(value, str) and len(value) == DOCUMENT_ID_LENGTH:
        normalised = value.lower()
        if _ID.fullmatch(normalised):
            return normalised
    raise InvalidRequestError(f"item {position}: {value!r:.40} is not a document id")


def _batch_id(value: object) -> str:
    if isinstance(value, str) and len(value) == DOCUMENT_ID_LENGTH:
        normalised = value.lower()
        if _ID.fullmatch(normalised):
            return normalised
    raise BatchNotFoundError(f"no batch {value!r:.40}")
