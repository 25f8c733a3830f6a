"""Signing batches on SoftHSM and both databases, through the real document registry
(invisible PAdES B-B signatures): per-item results that match the audit log, failures that
do not stop a batch, a clean stop and a crash (another process resumes after the lease),
a batch taken over while an item was in hand — and in none of them a document signed twice.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from audit.events import Action
from hsm.errors import HsmUnavailableError
from signer.batches import (
    BatchItemRequest,
    BatchNotFoundError,
    BatchRunner,
    placement_from_json,
    placement_to_json,
)
from signer.documents import DocumentRegistry, new_document_id
from signer.errors import InvalidRequestError, WrongCredentialError
from signer.placement import AnchorPlacement, FieldPlacement, RectPlacement
from signer.store import (
    MAX_BATCH_ITEMS,
    BatchAction,
    BatchItemStatus,
    BatchStatus,
    signing_batches,
)
from tests.pki.test_authority import audit_events
from tests.signer.test_documents import OFFICER, PadesSigning, World, draft
from tests.signer.test_documents import world as world  # the fixture, used by name

WAIT = 60.0


class Gated:
    """The registry's signing, with a hook before each officer signature (1-based count)."""

    def __init__(self, inner: PadesSigning, before: Callable[[int], None]) -> None:
        self._inner = inner
        self._before = before
        self._count = 0
        self._lock = threading.Lock()

    def officer(
        self, pdf: bytes, credential_id: int, *, placement: object | None, document_id: str
    ) -> bytes:
        with self._lock:
            self._count += 1
            count = self._count
        self._before(count)
        return self._inner.officer(pdf, credential_id, placement=placement, document_id=document_id)

    def seal(
        self, pdf: bytes, credential_id: int, *, number: str, issued_at: datetime, verify_url: str
    ) -> bytes:
        return self._inner.seal(
            pdf, credential_id, number=number, issued_at=issued_at, verify_url=verify_url
        )


@pytest.fixture
def runners(world: World) -> Iterator[list[BatchRunner]]:
    """Runners made by a test, closed after it."""
    made: list[BatchRunner] = []
    yield made
    for runner in made:
        runner.close()


def runner(
    world: World,
    made: list[BatchRunner],
    registry: DocumentRegistry | None = None,
    **options: object,
) -> BatchRunner:
    created = BatchRunner(engine=world.engine, registry=registry or world.registry, **options)  # type: ignore[arg-type]
    made.append(created)
    return created


def drafts(world: World, count: int) -> list[str]:
    return [world.registry.upload(draft(str(i)), world.meta(), OFFICER).id for i in range(count)]


def items(ids: list[str]) -> list[BatchItemRequest]:
    return [BatchItemRequest(document_id=i) for i in ids]


def signed_per_document(world: World) -> Counter[str]:
    return Counter(
        str(event.details["document_id"])
        for event in audit_events(world.engine)
        if event.action is Action.DOCUMENT_SIGNED
    )


def test_a_batch_signs_each_document_once_and_the_log_agrees_or_is_refused(
    world: World, runners: list[BatchRunner]
) -> None:
    ids = drafts(world, 4)
    batches = runner(world, runners)
    accepted = batches.submit(BatchAction.SIGN, world.officer, items(ids), OFFICER)
    assert accepted.total == 4
    assert accepted.action is BatchAction.SIGN

    batch = batches.wait(accepted.id, WAIT)
    assert (batch.status, batch.done, batch.failed) == (BatchStatus.DONE, 4, 0)
    assert [(i.document_id, i.status, i.revision) for i in batch.items] == [
        (i, BatchItemStatus.DONE, 1) for i in ids
    ]
    assert batch.finished_at is not None
    assert batch.finished_at >= batch.created_at
    assert signed_per_document(world) == Counter(ids)
    assert world.signing.calls["officer"] == 4
    assert batches.batch(accepted.id.upper()) == batch
    shown = batch.as_dict()
    assert shown["items"][0] == {"document_id": ids[0], "status": "done", "revision": 1}
    assert (shown["total"], shown["done"], shown["failed"]) == (4, 4, 0)

    sealed = batches.wait(
        batches.submit(BatchAction.SEAL, world.seal, items(ids), OFFICER).id, WAIT
    )
    assert sealed.status is BatchStatus.DONE
    assert [world.registry.document(i).number for i in ids] == [1, 2, 3, 4]
    assert [item.revision for item in sealed.items] == [2, 2, 2, 2]

    # Refused as a whole, before anything is stored.
    (document,) = drafts(world, 1)
    one = items([document])
    for action, credential, requested, error, message in [
        (BatchAction.SIGN, world.officer, [], InvalidRequestError, "1 to 1000"),
        (
            BatchAction.SIGN,
            world.officer,
            items([document]) * (MAX_BATCH_ITEMS + 1),
            InvalidRequestError,
            "1 to 1000",
        ),
        (BatchAction.SIGN, world.officer, one * 2, InvalidRequestError, "already in the batch"),
        (
            BatchAction.SIGN,
            world.officer,
            items(["../../etc/passwd"]),
            InvalidRequestError,
            "not a document id",
        ),
        (
            BatchAction.SEAL,
            world.seal,
            [BatchItemRequest(document_id=document, placement=FieldPlacement(name="X"))],
            InvalidRequestError,
            "takes no placement",
        ),
        (BatchAction.SIGN, world.seal, one, WrongCredentialError, "needs an officer"),
        (BatchAction.SEAL, world.officer, one, WrongCredentialError, "needs a seal"),
    ]:
        with pytest.raises(error, match=message):
            batches.submit(action, credential, requested, OFFICER)
    with world.engine.connect() as connection:
        assert len(connection.execute(select(signing_batches.c.id)).all()) == 2
    for missing in (new_document_id(), "nope", ""):
        with pytest.raises(BatchNotFoundError):
            batches.batch(missing)
    with pytest.raises(InvalidRequestError):
        batches.submit(BatchAction.SIGN, world.officer, one, "officer")  # type: ignore[arg-type]


def test_failures_are_per_item_and_an_outage_stops_the_batch(
    world: World, runners: list[BatchRunner]
) -> None:
    ids = drafts(world, 5)

    def hsm(count: int) -> None:
        if count in (2, 4):
            raise HsmUnavailableError("the token is unreachable")

    registry = world.new_registry(signing=Gated(world.signing, hsm))
    unknown = new_document_id()
    batches = runner(world, runners, registry)
    accepted = batches.submit(BatchAction.SIGN, world.officer, items([*ids, unknown]), OFFICER)
    batch = batches.wait(accepted.id, WAIT)

    assert batch.status is BatchStatus.FAILED_PARTLY
    codes = [(item.status, item.error_code) for item in batch.items]
    assert codes == [
        (BatchItemStatus.DONE, None),
        (BatchItemStatus.FAILED, "hsm.unavailable"),
        (BatchItemStatus.DONE, None),
        (BatchItemStatus.FAILED, "hsm.unavailable"),
        (BatchItemStatus.DONE, None),
        (BatchItemStatus.FAILED, "signer.document_not_found"),
    ]
    assert batch.items[1].error_message == "the token is unreachable"
    done = [item.document_id for item in batch.items if item.status is BatchItemStatus.DONE]
    assert signed_per_document(world) == Counter(done)

    # Three in a row because the HSM is down: the rest is not even tried.
    ids = drafts(world, 6)
    before = signed_per_document(world)
    attempts: list[int] = []

    def down_after_one(count: int) -> None:
        attempts.append(count)
        if count > 1:
            raise HsmUnavailableError("the token is unreachable")

    registry = world.new_registry(signing=Gated(world.signing, down_after_one))
    batches = runner(world, runners, registry)
    batch = batches.wait(
        batches.submit(BatchAction.SIGN, world.officer, items(ids), OFFICER).id, WAIT
    )

    assert batch.status is BatchStatus.FAILED_PARTLY
    assert attempts == [1, 2, 3, 4]  # the last two were never tried
    assert [(item.status, item.error_code) for item in batch.items] == [
        (BatchItemStatus.DONE, None),
        *[(BatchItemStatus.FAILED, "hsm.unavailable")] * 5,
    ]
    assert batch.items[3].error_message == "the token is unreachable"
    assert batch.items[4].error_message is not None
    assert batch.items[4].error_message.startswith("not attempted: the batch stopped after 3")
    assert signed_per_document(world) - before == Counter(ids[:1])

    # Once the token is back, the failed ones are signed by a new batch, none twice.
    again = runner(world, runners).submit(BatchAction.SIGN, world.officer, items(ids[1:]), OFFICER)
    assert runners[-1].wait(again.id, WAIT).status is BatchStatus.DONE
    assert signed_per_document(world) - before == Counter(ids)


def test_a_clean_stop_lets_go_and_the_next_start_resumes_at_once(
    world: World, runners: list[BatchRunner]
) -> None:
    ids = drafts(world, 3)
    inside, release = threading.Event(), threading.Event()

    def first_waits(count: int) -> None:
        if count == 1:
            inside.set()
            assert release.wait(WAIT)

    registry = world.new_registry(signing=Gated(world.signing, first_waits))
    stopping = BatchRunner(engine=world.engine, registry=registry)
    batch = stopping.submit(BatchAction.SIGN, world.officer, items(ids), OFFICER)
    assert inside.wait(WAIT)
    closer = threading.Thread(target=stopping.close)
    closer.start()
    release.set()
    closer.join(WAIT)
    assert not closer.is_alive()

    # The item in hand was finished; the rest waits, held by no one.
    stopped = stopping.batch(batch.id)
    assert stopped.status is BatchStatus.RUNNING
    assert [item.status for item in stopped.items] == [
        BatchItemStatus.DONE,
        BatchItemStatus.PENDING,
        BatchItemStatus.PENDING,
    ]
    with world.engine.connect() as connection:
        held = connection.execute(
            select(signing_batches.c.worker, signing_batches.c.heartbeat_at)
        ).one()
    assert tuple(held) == (None, None)

    restarted = runner(world, runners)  # lease 60 s: no waiting needed for a released batch
    assert restarted.resume() == [batch.id]
    assert restarted.wait(batch.id, WAIT).status is BatchStatus.DONE
    assert signed_per_document(world) == Counter(ids)


def test_a_crashed_batch_is_resumed_after_the_lease_and_signs_nothing_twice(
    world: World, runners: list[BatchRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = drafts(world, 3)
    crashed = runner(world, runners)
    # The process accepts the batch and dies before its worker starts.
    monkeypatch.setattr(crashed, "_start", lambda batch_id: None)
    batch = crashed.submit(BatchAction.SIGN, world.officer, items(ids), OFFICER)
    # ... but not before its first step had committed (the registry's transaction).
    world.registry.sign(ids[0], world.officer.id, OFFICER, idempotency_key=f"batch:{batch.id}:0")
    assert signed_per_document(world) == Counter(ids[:1])

    other = runner(world, runners)
    assert other.resume() == []  # the heartbeat is fresh: the batch may still be worked on
    later = datetime.now(UTC) + timedelta(seconds=61)
    after_lease = runner(world, runners, clock=lambda: later)
    assert after_lease.resume() == [batch.id]
    assert after_lease.resume() == []  # held now
    resumed = after_lease.wait(batch.id, WAIT)

    assert resumed.status is BatchStatus.DONE
    assert [item.revision for item in resumed.items] == [1, 1, 1]
    assert signed_per_document(world) == Counter(ids)
    assert world.signing.calls["officer"] == 3


def test_a_batch_taken_over_mid_item_is_not_signed_twice(
    world: World, runners: list[BatchRunner]
) -> None:
    ids = drafts(world, 2)
    inside, release = threading.Event(), threading.Event()

    def first_waits(count: int) -> None:
        if count == 1:
            inside.set()
            assert release.wait(WAIT)

    registry = world.new_registry(signing=Gated(world.signing, first_waits))
    slow = runner(world, runners, registry)
    batch = slow.submit(BatchAction.SIGN, world.officer, items(ids), OFFICER)
    assert inside.wait(WAIT)
    # Its heartbeat looked stale to another process, which took the batch over.
    with world.engine.begin() as connection:
        connection.execute(update(signing_batches).values(worker=None, heartbeat_at=None))
    taker = runner(world, runners)
    assert taker.resume() == [batch.id]
    release.set()

    finished = taker.wait(batch.id, WAIT)
    assert finished.status is BatchStatus.DONE
    assert signed_per_document(world) == Counter(ids)


@pytest.mark.parametrize(
    "placement",
    [
        None,
        FieldPlacement(name="CanBoKy"),
        RectPlacement(page=2, rect=(72, 100.5, 240, 170)),
        AnchorPlacement(text="TRƯỞNG CÔNG AN PHƯỜNG"),
        AnchorPlacement(text="Chủ tịch", page=3, size=(120, 50)),
    ],
)
def test_placements_survive_storage_exactly(
    placement: FieldPlacement | RectPlacement | AnchorPlacement | None,
) -> None:
    stored = placement_to_json(placement)
    again = placement_from_json(stored)
    # Equal, and equal in repr: the registry's idempotency fingerprint is the repr.
    assert again == placement
    if placement is not None:
        assert repr(placement_from_json(placement_to_json(again))) == repr(again)
