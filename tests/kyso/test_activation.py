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
from pki.errors import PinInvalidError, PinRequiredError
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
