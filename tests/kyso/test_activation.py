"""Sole control (``kyso.access.activation``), on SoftHSM and both databases, with the demo's
officers, clerks, seals and accounts: only a credential's holder gets a SAD, with its PIN
and, under PIN + OTP, a fresh one-time code; a SAD signs exactly what it was bound to, once,
within five minutes, on its credential, for its holder; a service client never activates
an officer's key, and seals only with a seal a unit admin bound to it."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from audit.events import Actor
from hsm import BlockingSessionPool
from kyso.access import factors
from kyso.access.activation import (
    ActivationPolicy,
    Binding,
    OtpRequiredError,
    SadRefusedError,
    SignatureActivation,
)
from kyso.access.model import ForbiddenError, InvalidAccessInputError, Scope
from kyso.access.store import AccessStore
from kyso.demo import DEMO_PIN, DEMO_TOTP_SECRETS, create_demo
from pki.authority import Authority
from pki.errors import CredentialUnusableError, PinInvalidError, PinRequiredError
from tests.kyso.test_access_store import actions
from tests.pki.test_authority import ADMIN, make_authority


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


class Demo:
    def __init__(self, authority: Authority, engine: Engine, tmp_path: Path) -> None:
        create_demo(authority, ADMIN, tmp_path / "demo.json")
        data: dict[str, Any] = json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))
        here, other = data["units"]
        self.data = data
        self.authority = authority
        self.clock = Clock()
        self.access = AccessStore(engine, clock=self.clock)
        self.activation = SignatureActivation(
            engine=engine, authority=authority, access=self.access, clock=self.clock
        )
        self.officer = self.access.user("anh.nv").principal(second_factor=True)
        self.other_officer = self.access.user("dung.lh").principal(second_factor=True)
        self.clerk = self.access.user("ngoc.ttb").principal(second_factor=True)
        self.auditor = self.access.user("auditor.hcm").principal(second_factor=True)

        def credential_of(unit: dict[str, Any], role: str) -> int:
            person = next(p for p in unit["people"] if p["role"] == role)
            return int(person["credential_ids"][0])

        self.officer_credential = credential_of(here, "officer")
        self.other_credential = credential_of(other, "officer")
        self.seal = int(here["seal_credential_ids"][0])

    def code(self, username: str) -> str:
        return factors.totp_now(DEMO_TOTP_SECRETS[username], self.clock.now.timestamp())


@pytest.fixture
def demo(engine: Engine, pool: BlockingSessionPool, tmp_path: Path) -> Demo:
    return Demo(make_authority(engine, pool), engine, tmp_path)


def hashes(*texts: str) -> Binding:
    return Binding(
        hashes=tuple(hashlib.sha256(t.encode()).digest() for t in texts), hash_algorithm="sha256"
    )


def test_the_officer_activates_their_credential_for_exactly_what_they_sign(
    demo: Demo, engine: Engine
) -> None:
    activation = demo.activation
    # the demo has an officer credential of each kind, and demo.json says which is which
    assert activation.policy(demo.officer_credential) is ActivationPolicy.PIN_OTP
    assert activation.policy(demo.other_credential) is ActivationPolicy.PIN
    assert activation.policy(demo.seal) is ActivationPolicy.PIN
    listed = demo.data["activation"]["by_credential"]
    assert listed[str(demo.officer_credential)] == "pin+otp"
    assert listed[str(demo.other_credential)] == "pin"
    bound = hashes("CT07 số 1", "CT07 số 2")
    sad = activation.authorize(
        demo.officer, demo.officer_credential, bound, count=2, pin=DEMO_PIN, otp=demo.code("anh.nv")
    )
    assert sad.expires_at - demo.clock.now == timedelta(minutes=5)
    refusals = {
        "other_hashes": (demo.officer, demo.officer_credential, hashes("CT07 số 3")),
        "other_credential": (demo.officer, demo.other_credential, bound),
        "other_holder": (demo.other_officer, demo.officer_credential, bound),
        "over_count": (
            demo.officer,
            demo.officer_credential,
            hashes("CT07 số 1", "CT07 số 2", "x"),
        ),
    }
    for reason, (who, credential, binding) in refusals.items():
        with pytest.raises(SadRefusedError, match=reason.replace("_", " ")):
            activation.consume(who, sad.value, credential, binding)
    # one of the bound hashes is fine; then the SAD is used up
    activation.consume(demo.officer, sad.value, demo.officer_credential, hashes("CT07 số 1"))
    with pytest.raises(SadRefusedError, match="used"):
        activation.consume(demo.officer, sad.value, demo.officer_credential, bound)
    with pytest.raises(SadRefusedError, match="unknown"):
        activation.consume(demo.officer, "x" * 43, demo.officer_credential, bound)
    events = actions(engine)
    assert events.count("sad.issued") == 1
    assert events.count("sad.used") == 1
    assert events.count("sad.refused") == 6


def test_a_sad_expires_after_five_minutes(demo: Demo) -> None:
    bound = hashes("CT08")
    sad = demo.activation.authorize(
        demo.officer, demo.officer_credential, bound, count=1, pin=DEMO_PIN, otp=demo.code("anh.nv")
    )
    demo.clock.now += timedelta(minutes=5)
    with pytest.raises(SadRefusedError, match="expired"):
        demo.activation.consume(demo.officer, sad.value, demo.officer_credential, bound)


def test_pin_and_one_time_code_are_both_required_and_a_code_works_once(demo: Demo) -> None:
    activation, bound = demo.activation, hashes("CT07")
    with pytest.raises(PinRequiredError):
        activation.authorize(demo.officer, demo.officer_credential, bound, count=1, pin=None)
    with pytest.raises(PinInvalidError):
        activation.authorize(
            demo.officer,
            demo.officer_credential,
            bound,
            count=1,
            pin="592817",
            otp=demo.code("anh.nv"),
        )
    with pytest.raises(OtpRequiredError):
        activation.authorize(demo.officer, demo.officer_credential, bound, count=1, pin=DEMO_PIN)
    code = demo.code("anh.nv")
    activation.authorize(
        demo.officer, demo.officer_credential, bound, count=1, pin=DEMO_PIN, otp=code
    )
    with pytest.raises(OtpRequiredError):  # the same code again
        activation.authorize(
            demo.officer, demo.officer_credential, bound, count=1, pin=DEMO_PIN, otp=code
        )
    # under the PIN-only policy the code is not asked
    activation.set_policy(demo.officer_credential, ActivationPolicy.PIN, ADMIN)
    activation.authorize(demo.officer, demo.officer_credential, bound, count=1, pin=DEMO_PIN)
    with pytest.raises(InvalidAccessInputError):  # the count must match what is bound
        activation.authorize(demo.officer, demo.officer_credential, bound, count=2, pin=DEMO_PIN)


def test_only_the_holder_activates_and_a_service_never_an_officer_key(
    demo: Demo, engine: Engine
) -> None:
    activation, bound = demo.activation, hashes("CT07")
    for who, credential in (
        (demo.other_officer, demo.officer_credential),
        (demo.auditor, demo.officer_credential),
        (demo.officer, demo.seal),  # an officer is not the unit's văn thư
        (demo.other_officer, demo.seal),
    ):
        with pytest.raises(ForbiddenError):
            activation.authorize(who, credential, bound, count=1, pin=DEMO_PIN, otp=None)
    # the clerk seals with the seal's PIN
    sad = activation.authorize(demo.clerk, demo.seal, bound, count=1, pin=DEMO_PIN)
    activation.consume(demo.clerk, sad.value, demo.seal, bound)
    # a service client: never an officer's credential; a seal only once bound to it
    client, _ = demo.access.add_client(
        name="Cổng", scopes=frozenset({Scope.SEAL}), unit_id=None, actor=ADMIN
    )
    service = client.principal()
    with pytest.raises(ForbiddenError):
        activation.authorize(service, demo.officer_credential, bound, count=1, pin=DEMO_PIN)
    with pytest.raises(ForbiddenError):
        activation.authorize(service, demo.seal, bound, count=1, pin=None)
    with pytest.raises(ForbiddenError):
        activation.bind_client(demo.officer_credential, client.client_id, ADMIN)
    activation.bind_client(demo.seal, client.client_id, ADMIN)
    sealed = activation.authorize(service, demo.seal, bound, count=1, pin=None)
    activation.consume(service, sealed.value, demo.seal, bound)
    activation.bind_client(demo.seal, None, ADMIN)
    with pytest.raises(ForbiddenError):
        activation.authorize(service, demo.seal, bound, count=1, pin=None)
    assert "configuration.changed" in actions(engine)


def test_a_sad_can_be_bound_to_documents_instead_of_hashes(demo: Demo) -> None:
    documents = Binding(document_ids=("01JDOC0000000000000000000A", "01JDOC0000000000000000000B"))
    sad = demo.activation.authorize(demo.clerk, demo.seal, documents, count=2, pin=DEMO_PIN)
    with pytest.raises(SadRefusedError):
        demo.activation.consume(demo.clerk, sad.value, demo.seal, hashes("x"))
    demo.activation.consume(demo.clerk, sad.value, demo.seal, documents)
    with pytest.raises(InvalidAccessInputError):
        Binding(hashes=(b"short",), hash_algorithm="sha256")
    with pytest.raises(InvalidAccessInputError):
        Binding(hashes=(bytes(32),), hash_algorithm="md5")


def test_a_batch_sad_covers_up_to_a_thousand_documents_and_hashes_a_hundred(demo: Demo) -> None:
    batch = Binding(document_ids=tuple(f"01JDOC{i:020d}" for i in range(1000)))
    sad = demo.activation.authorize(demo.clerk, demo.seal, batch, count=1000, pin=DEMO_PIN)
    assert sad.count == 1000
    too_many = Binding(document_ids=tuple(f"01JDOC{i:020d}" for i in range(1001)))
    with pytest.raises(InvalidAccessInputError, match="1 to 1000"):
        demo.activation.authorize(demo.clerk, demo.seal, too_many, count=1001, pin=DEMO_PIN)
    hundred_and_one = hashes(*(str(i) for i in range(101)))
    with pytest.raises(InvalidAccessInputError, match="1 to 100 "):
        demo.activation.authorize(demo.clerk, demo.seal, hundred_and_one, count=101, pin=DEMO_PIN)


def test_activate_inline_or_with_a_sad_signs_only_what_was_proven(
    demo: Demo, engine: Engine
) -> None:
    """``activate`` (what signing routes call): the PIN and a fresh code in the request
    itself, or a SAD from before; either way used once, for that binding only."""
    activation, officer, credential = demo.activation, demo.officer, demo.officer_credential
    first = Binding(document_ids=("01JDOC0000000000000000000A",))
    with pytest.raises(OtpRequiredError):
        activation.activate(officer, credential, first, pin=DEMO_PIN)
    activated = activation.activate(
        officer, credential, first, pin=DEMO_PIN, otp=demo.code("anh.nv")
    )
    assert activated.id == credential
    with pytest.raises(OtpRequiredError):  # the same code again
        activation.activate(officer, credential, first, pin=DEMO_PIN, otp=demo.code("anh.nv"))
    demo.clock.now += timedelta(seconds=30)
    second = Binding(document_ids=("01JDOC0000000000000000000B",))
    sad = activation.authorize(
        officer, credential, second, count=1, pin=DEMO_PIN, otp=demo.code("anh.nv")
    ).value
    with pytest.raises(SadRefusedError, match="other hashes"):
        activation.activate(officer, credential, first, sad=sad)
    assert activation.activate(officer, credential, second, sad=sad).id == credential
    with pytest.raises(SadRefusedError, match="used"):
        activation.activate(officer, credential, second, sad=sad)
    # a SAD of a credential suspended since is not used up by the refusal
    demo.clock.now += timedelta(seconds=30)
    third = activation.authorize(
        officer, credential, second, count=1, pin=DEMO_PIN, otp=demo.code("anh.nv")
    ).value
    demo.authority.suspend(credential, ADMIN)
    with pytest.raises(CredentialUnusableError):
        activation.activate(officer, credential, second, sad=third)
    events = actions(engine)
    assert events.count("sad.used") == 2


def test_the_console_asks_for_the_holders_code_under_pin_and_otp(demo: Demo) -> None:
    console = Actor(id="cli:operator", role="officer")
    activation = demo.activation
    with pytest.raises(PinInvalidError):
        activation.activate_at_console(
            demo.officer_credential, pin="000000", otp=demo.code("anh.nv"), actor=console
        )
    with pytest.raises(OtpRequiredError):
        activation.activate_at_console(
            demo.officer_credential, pin=DEMO_PIN, otp=None, actor=console
        )
    with pytest.raises(OtpRequiredError):  # another account's code is not the holder's
        activation.activate_at_console(
            demo.officer_credential, pin=DEMO_PIN, otp=demo.code("dung.lh"), actor=console
        )
    code = demo.code("anh.nv")
    activated = activation.activate_at_console(
        demo.officer_credential, pin=DEMO_PIN, otp=code, actor=console
    )
    assert activated.id == demo.officer_credential
    with pytest.raises(OtpRequiredError):
        activation.activate_at_console(
            demo.officer_credential, pin=DEMO_PIN, otp=code, actor=console
        )
    # under the PIN policy the PIN is enough; a seal's code would be a clerk of its unit's
    assert (
        activation.activate_at_console(
            demo.other_credential, pin=DEMO_PIN, otp=None, actor=console
        ).id
        == demo.other_credential
    )
    activation.set_policy(demo.seal, ActivationPolicy.PIN_OTP, ADMIN)
    activation.activate_at_console(
        demo.seal, pin=DEMO_PIN, otp=demo.code("ngoc.ttb"), actor=console
    )


def test_wrong_codes_at_activation_count_and_lock_the_account(demo: Demo) -> None:
    """A stolen session that knows the PIN cannot go on guessing one-time codes: each wrong
    code counts as a failed try of the account, a right one clears the count, and the
    fifth wrong one in a row locks it (and so its sessions and its activations)."""
    activation, officer, credential = demo.activation, demo.officer, demo.officer_credential
    bound = hashes("CT07")
    wrong = f"{(int(demo.code('anh.nv')) + 1) % 10**6:06d}"

    def attempt(code: str) -> None:
        activation.authorize(officer, credential, bound, count=1, pin=DEMO_PIN, otp=code)

    for _ in range(4):
        with pytest.raises(OtpRequiredError):
            attempt(wrong)
    attempt(demo.code("anh.nv"))  # clears the count
    for _ in range(4):
        with pytest.raises(OtpRequiredError):
            attempt(wrong)
    assert not demo.access.user("anh.nv").locked
    with pytest.raises(OtpRequiredError):
        attempt(wrong)
    assert demo.access.user("anh.nv").locked
    demo.clock.now += timedelta(seconds=30)
    with pytest.raises(ForbiddenError, match="locked"):
        attempt(demo.code("anh.nv"))
