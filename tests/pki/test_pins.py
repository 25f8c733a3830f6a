"""Signing PINs on SoftHSM and both databases: the policy, the argon2id hash, the count of
wrong PINs (committed although the request fails, never lost under concurrency), the lock
on the fifth, the administrator's unlock, renewal, and the audit events — none of which
ever holds the PIN."""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher, Type
from sqlalchemy import Engine, select, update

from audit.events import Action, Actor, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from pki import pins
from pki.authority import Authority, Credential
from pki.crl import RevocationReason
from pki.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    PinInvalidError,
    PinLockedError,
    PinNotSetError,
    PkiError,
)
from pki.store import CredentialKind, pki_credentials
from tests.pki.test_authority import ADMIN, add_officer, commune, make_authority

PIN = "493817"
OTHER_PIN = "Kh0a-Ky-S0"
WRONG = "000001"
OFFICER = Actor(id="officer-7", role="officer", unit="Công an phường Bến Thành")


@pytest.fixture
def authority(engine: Engine, pool: BlockingSessionPool) -> Authority:
    return make_authority(engine, pool)


@pytest.fixture
def credential(authority: Authority) -> Credential:
    """An officer credential with ``PIN`` set."""
    enrolled = authority.enroll_person(add_officer(authority, commune(authority)), ADMIN)
    return authority.set_pin(enrolled.id, PIN, ADMIN)


def pin_events(engine: Engine) -> list[AuditEvent]:
    with engine.connect() as connection:
        leaves = (
            connection.execute(select(audit_entries.c.leaf).order_by(audit_entries.c.id))
            .scalars()
            .all()
        )
    return [
        event
        for event in (AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves)
        if event.action.value.startswith("pin.")
    ]


def wrong_tries(authority: Authority, credential_id: int, count: int) -> list[PkiError]:
    refused: list[PkiError] = []
    for _ in range(count):
        with pytest.raises(PkiError) as raised:
            authority.check_pin(credential_id, WRONG, OFFICER)
        refused.append(raised.value)
    return refused


# -- the policy and the hash (no database) ----------------------------------------------


@pytest.mark.parametrize("pin", ["493817", "Kh0a-Ky-S0", "a" * 5 + "b", "~!@#$%^&*()_+" * 2])
def test_the_policy_accepts(pin: str) -> None:
    assert pins.check_policy(pin) == pin


@pytest.mark.parametrize(
    ("pin", "match"),
    [
        ("12345", "6 to 32"),
        ("1" * 33, "6 to 32"),
        ("12 456", "6 to 32"),
        ("mã-pin-1", "6 to 32"),
        ("4938\n17", "6 to 32"),
        ("", "6 to 32"),
        ("000000", "repeated"),
        ("123456", "consecutive"),
        ("3456789", "consecutive"),
        ("987654", "consecutive"),
    ],
)
def test_the_policy_refuses(pin: str, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match) as raised:
        pins.check_policy(pin)
    assert raised.value.code == "pki.pin_policy"
    if len(pin) >= 4:
        assert pin not in raised.value.message


def test_the_hash_is_argon2id_with_the_documented_parameters() -> None:
    stored = pins.hash_pin(PIN)
    assert stored.startswith("$argon2id$v=19$m=8192,t=2,p=1$")
    assert PIN not in stored
    assert pins.hash_pin(PIN) != stored, "salted"
    assert pins.verify_pin(stored, PIN)
    assert not pins.verify_pin(stored, WRONG)
    assert not pins.verify_pin(None, PIN)
    assert not pins.verify_pin(stored, "\ud800" * 8)
    assert not pins.verify_pin(stored, PIN + "x" * 10_000)
    assert not pins.needs_rehash(stored)
    weaker = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    assert pins.needs_rehash(weaker.hash(PIN))
    assert pins.needs_rehash("not a hash")


class CountingHasher(PasswordHasher):
    """:data:`pins.HASHER` that counts its verifications."""

    def __init__(self) -> None:
        h = pins.HASHER
        super().__init__(
            time_cost=h.time_cost,
            memory_cost=h.memory_cost,
            parallelism=h.parallelism,
            hash_len=h.hash_len,
            salt_len=h.salt_len,
            type=h.type,
        )
        self.verified = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verified += 1
        return super().verify(hash, password)


def test_every_answer_costs_one_hash(
    authority: Authority, credential: Credential, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = CountingHasher()
    monkeypatch.setattr(pins, "HASHER", hasher)
    no_pin = authority.enroll_seal(credential.unit_id or 0, ADMIN)
    tries: list[tuple[int, str, type[Exception] | None]] = [
        (credential.id, PIN, None),
        (credential.id, WRONG, PinInvalidError),
        (credential.id, "x", PinInvalidError),
        (no_pin.id, PIN, PinNotSetError),
        (987_654, PIN, NotFoundError),
    ]
    for credential_id, pin, expected in tries:
        before = hasher.verified
        if expected is None:
            authority.check_pin(credential_id, pin, OFFICER)
        else:
            with pytest.raises(expected):
                authority.check_pin(credential_id, pin, OFFICER)
        assert hasher.verified == before + 1, (credential_id, expected)


def test_a_right_pin_is_remembered_a_while_but_never_a_wrong_one_or_past_a_lock(
    authority: Authority, credential: Credential, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = CountingHasher()
    monkeypatch.setattr(pins, "HASHER", hasher)

    def hashes(pin: str, expected: type[Exception] | None = None) -> int:
        before = hasher.verified
        if expected is None:
            authority.check_pin(credential.id, pin, OFFICER)
        else:
            with pytest.raises(expected):
                authority.check_pin(credential.id, pin, OFFICER)
        return hasher.verified - before

    assert hashes(PIN) == 1
    assert hashes(PIN) == 0  # remembered
    assert hashes(WRONG, PinInvalidError) == 1  # never remembered, always counted
    assert hashes(PIN) == 1  # a failure since: hashed again (and the count cleared)
    assert hashes(PIN) == 0
    authority.set_pin(credential.id, "817394", ADMIN)  # a new PIN forgets the old one
    assert hashes(PIN, PinInvalidError) == 1
    for _ in range(pins.MAX_FAILURES - 1):
        hashes(WRONG, (PinInvalidError, PinLockedError))  # type: ignore[arg-type]
    assert hashes("817394", PinLockedError) == 1  # locked: refused, remembered or not


def test_remembered_pins_expire_and_are_bounded() -> None:
    memo = pins.VerifiedPins(ttl=0.05, capacity=2)
    memo.remember(1, "stored", PIN)
    assert memo.knows(1, "stored", PIN)
    assert not memo.knows(1, "stored", WRONG)
    assert not memo.knows(2, "stored", PIN)
    assert not memo.knows(1, "other", PIN)
    memo.remember(2, "stored", PIN)
    memo.remember(3, "stored", PIN)
    assert not memo.knows(1, "stored", PIN)  # the oldest made room
    time.sleep(0.06)
    assert not memo.knows(3, "stored", PIN)


# -- counting, locking, unlocking -------------------------------------------------------


def test_wrong_pins_count_lock_on_the_fifth_and_only_unlock_lifts_it(
    authority: Authority, credential: Credential, engine: Engine
) -> None:
    authority.check_pin(credential.id, PIN, OFFICER)
    first, second = wrong_tries(authority, credential.id, 2)
    assert getattr(second, "remaining", None) == 3
    assert isinstance(first, PinInvalidError)
    assert (first.code, first.remaining) == ("pki.pin_invalid", 4)
    assert "4 tries left" in first.message
    assert authority.credential(credential.id).pin_failures == 2
    # The right PIN clears the count: the failures must be consecutive to lock.
    authority.check_pin(credential.id, PIN, OFFICER)
    assert authority.credential(credential.id).pin_failures == 0

    refused = wrong_tries(authority, credential.id, 5)
    assert [getattr(e, "remaining", None) for e in refused[:4]] == [4, 3, 2, 1]
    assert "1 try left" in refused[3].message
    assert isinstance(refused[4], PinLockedError)
    assert refused[4].code == "pki.pin_locked"
    assert "an administrator must unlock it" in refused[4].message
    locked = authority.credential(credential.id)
    assert locked.pin_failures == 5
    assert locked.pin_locked_at is not None
    assert locked.as_dict()["pin"] == {
        "set": True,
        "failures": 5,
        "locked_at": locked.pin_locked_at.isoformat(),
    }

    # Locked: the right PIN is refused, a wrong one is no longer counted, and the PIN
    # cannot be changed around the lock.
    with pytest.raises(PinLockedError):
        authority.check_pin(credential.id, PIN, OFFICER)
    wrong_tries(authority, credential.id, 1)
    assert authority.credential(credential.id).pin_failures == 5
    with pytest.raises(PinLockedError):
        authority.set_pin(credential.id, OTHER_PIN, OFFICER)

    unlocked = authority.unlock_pin(credential.id, ADMIN)
    assert (unlocked.pin_failures, unlocked.pin_locked_at, unlocked.pin_set) == (0, None, True)
    authority.check_pin(credential.id, PIN, OFFICER)

    events = pin_events(engine)
    counts = Counter(
        (event.action, event.outcome.code, event.details.get("remaining")) for event in events
    )
    assert counts == {
        (Action.PIN_SET, None, None): 1,
        (Action.PIN_FAILED, "pki.pin_invalid", 4): 2,
        (Action.PIN_FAILED, "pki.pin_invalid", 3): 2,
        (Action.PIN_FAILED, "pki.pin_invalid", 2): 1,
        (Action.PIN_FAILED, "pki.pin_invalid", 1): 1,
        (Action.PIN_FAILED, "pki.pin_invalid", 0): 1,
        (Action.PIN_LOCKED, None, None): 1,
        # the right PIN and the wrong one tried while locked
        (Action.PIN_FAILED, "pki.pin_locked", 0): 2,
        (Action.PIN_UNLOCKED, None, None): 1,
    }
    for event in events:
        assert event.details["credential_id"] == credential.id
        assert event.subject.key_id == credential.key_id
        assert event.actor == (
            ADMIN if event.action.value in ("pin.set", "pin.unlocked") else OFFICER
        )
    (unlock,) = (e for e in events if e.action is Action.PIN_UNLOCKED)
    assert dict(unlock.details) == {
        "credential_id": credential.id,
        "failures": 5,
        "replaced": False,
        "was_locked": True,
    }


def test_unlock_with_a_new_pin_and_set_pin(authority: Authority, credential: Credential) -> None:
    wrong_tries(authority, credential.id, 5)
    authority.unlock_pin(credential.id, ADMIN, new_pin=OTHER_PIN)
    with pytest.raises(PinInvalidError):
        authority.check_pin(credential.id, PIN, OFFICER)
    authority.check_pin(credential.id, OTHER_PIN, OFFICER)
    # Changing the PIN starts the count again.
    wrong_tries(authority, credential.id, 3)
    changed = authority.set_pin(credential.id, PIN, OFFICER)
    assert (changed.pin_failures, changed.pin_set) == (0, True)
    authority.check_pin(credential.id, PIN, OFFICER)


def test_who_has_a_pin(authority: Authority, credential: Credential) -> None:
    root = next(c for c in authority.credentials() if c.kind is CredentialKind.ROOT_CA)
    with pytest.raises(InvalidInputError, match="only officer and seal"):
        authority.set_pin(root.id, PIN, ADMIN)
    with pytest.raises(PinNotSetError, match="no signing PIN") as raised:
        authority.check_pin(root.id, PIN, OFFICER)
    assert raised.value.code == "pki.pin_not_set"
    seal = authority.set_pin(authority.enroll_seal(credential.unit_id or 0, ADMIN).id, PIN, ADMIN)
    authority.check_pin(seal.id, PIN, OFFICER)
    with pytest.raises(NotFoundError):
        authority.set_pin(987_654, PIN, ADMIN)
    with pytest.raises(InvalidInputError) as weak:
        authority.set_pin(credential.id, "111111", ADMIN)
    assert weak.value.code == "pki.pin_policy"
    authority.revoke(seal.id, RevocationReason.UNSPECIFIED, ADMIN)
    with pytest.raises(ConflictError, match="never sign again"):
        authority.set_pin(seal.id, OTHER_PIN, ADMIN)


def test_renewal_keeps_the_pin_and_the_lock(authority: Authority, credential: Credential) -> None:
    renewed = authority.renew(credential.id, ADMIN)
    authority.check_pin(renewed.id, PIN, OFFICER)
    wrong_tries(authority, renewed.id, 5)
    rekeyed = authority.renew(renewed.id, ADMIN, rekey=True)
    assert rekeyed.pin_locked_at is not None
    with pytest.raises(PinLockedError):
        authority.check_pin(rekeyed.id, PIN, OFFICER)


def test_concurrent_wrong_pins_are_all_counted(
    authority: Authority, credential: Credential, engine: Engine
) -> None:
    tries = 12
    start = threading.Barrier(tries)

    def wrong(_: int) -> PkiError:
        start.wait(timeout=30)
        try:
            authority.check_pin(credential.id, WRONG, OFFICER)
        except PkiError as ex:
            return ex
        raise AssertionError("a wrong PIN was accepted")

    with ThreadPoolExecutor(tries) as workers:
        refused = list(workers.map(wrong, range(tries)))
    remaining = sorted(e.remaining for e in refused if isinstance(e, PinInvalidError))
    # Every count is distinct: no two requests read the same number of failures.
    assert remaining == [1, 2, 3, 4]
    assert sum(isinstance(e, PinLockedError) for e in refused) == tries - 4
    assert authority.credential(credential.id).pin_failures == pins.MAX_FAILURES
    counts = Counter((e.action, e.outcome.code) for e in pin_events(engine))
    assert counts[Action.PIN_FAILED, "pki.pin_invalid"] == 5
    assert counts[Action.PIN_LOCKED, None] == 1
    assert counts[Action.PIN_FAILED, "pki.pin_locked"] == tries - 5


def test_the_pin_is_never_in_an_event_or_an_error(
    authority: Authority, credential: Credential, engine: Engine
) -> None:
    messages: list[str] = []
    for attempt in (WRONG, "5" * 40, PIN + "0"):
        with pytest.raises(PkiError) as raised:
            authority.check_pin(credential.id, attempt, OFFICER)
        messages.append(raised.value.diagnostics())
    with pytest.raises(PkiError) as raised:
        authority.set_pin(credential.id, "654321", ADMIN)
    messages.append(raised.value.diagnostics())
    authority.unlock_pin(credential.id, ADMIN, new_pin=OTHER_PIN)
    with engine.connect() as connection:
        leaves: list[Any] = (
            connection.execute(select(audit_entries.c.leaf).order_by(audit_entries.c.id))
            .scalars()
            .all()
        )
    secrets = (PIN, OTHER_PIN, WRONG, "5" * 40, "654321")
    for text in [*messages, *(bytes(leaf).decode("utf-8") for leaf in leaves)]:
        for secret in secrets:
            assert secret not in text, text
    for shown in (str(authority.credential(credential.id)), str(credential.as_dict())):
        assert "argon2" not in shown


def test_an_old_hash_is_renewed_at_the_next_right_pin(
    authority: Authority, credential: Credential, engine: Engine
) -> None:
    weaker = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    with engine.begin() as connection:
        connection.execute(
            update(pki_credentials)
            .where(pki_credentials.c.id == credential.id)
            .values(pin_hash=weaker.hash(PIN))
        )
    with pytest.raises(PinInvalidError):
        authority.check_pin(credential.id, WRONG, OFFICER)
    authority.check_pin(credential.id, PIN, OFFICER)
    with engine.connect() as connection:
        stored = connection.execute(
            select(pki_credentials.c.pin_hash).where(pki_credentials.c.id == credential.id)
        ).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=8192,t=2,p=1$")
    assert pins.verify_pin(stored, PIN)
    assert authority.credential(credential.id).pin_failures == 0
