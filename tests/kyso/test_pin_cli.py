"""Signing PINs through the real ``kyso`` console script, on SQLite (the PIN logic itself
runs on both databases in tests/pki/test_pins.py): the demo's PINs, ``kyso officer
pin-set`` from a PIN file, ``KYSO_PIN`` and a hidden prompt on a terminal (asked twice),
``kyso officer pin-unlock`` with and without a new PIN, and one-line errors that never
repeat a PIN."""

from __future__ import annotations

import json
import os
import pty
import select
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select as sql_select

from audit.events import Action, Actor, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from kyso import db
from kyso.access.activation import ActivationPolicy, SignatureActivation
from kyso.access.store import AccessStore
from kyso.demo import DEMO_PIN
from kyso.pki_service import make_authority
from pki.authority import Authority
from pki.errors import PinInvalidError, PinLockedError
from tests.conftest import TestToken
from tests.kyso.conftest import KYSO, Kyso
from tests.kyso.test_pki_cli import (
    assert_one_line_error,
    demo_credential_ids,
    init_demo,
    service_settings,
)

FILE_PIN = "Kh0a-Ky-S0"
ENV_PIN = "582039"
TYPED_PIN = "t1p-9-Kyso"
WRONG = "000001"
OFFICER = Actor(id="test:officer", role="officer")


@contextmanager
def in_process(kyso: Kyso, token: TestToken) -> Iterator[Authority]:
    """The authority the commands use, opened here after they have finished (two
    processes opening one SoftHSM2 token at once sometimes miss it)."""
    settings = service_settings(kyso, token)
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        with BlockingSessionPool(settings.hsm_config()) as pool:
            yield make_authority(settings, engine, pool)
    finally:
        engine.dispose()


def cli_pin_events(kyso: Kyso, token: TestToken) -> list[Action]:
    """The pin.* actions the commands recorded (their actor is ``cli:<user>``)."""
    engine = db.make_engine(service_settings(kyso, token).sqlalchemy_url)
    try:
        with engine.connect() as connection:
            leaves = (
                connection.execute(sql_select(audit_entries.c.leaf).order_by(audit_entries.c.id))
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    return [
        event.action
        for event in (AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves)
        if event.action.value.startswith("pin.") and (event.actor.id or "").startswith("cli:")
    ]


def in_terminal(kyso: Kyso, args: list[str], dialogue: list[tuple[str, str]]) -> tuple[int, str]:
    """Run ``kyso`` on a new pseudo-terminal (its controlling terminal, as at a desk),
    answering each prompt that ends in the given text; returns the exit status and all the
    terminal showed."""
    assert KYSO
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec at once, nothing else runs in a forked copy
        os.chdir(kyso.cwd)
        os.execve(KYSO, [KYSO, *args], kyso.env)
    shown = b""
    deadline = time.monotonic() + 60

    def read() -> bool:
        nonlocal shown
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no answer from kyso {' '.join(args)}; shown: {shown!r}")
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            return False
        shown += chunk
        return bool(chunk)

    try:
        seen = 0
        for prompt, answer in dialogue:
            while shown.find(prompt.encode(), seen) < 0:
                assert read(), f"kyso ended before asking {prompt!r}: {shown!r}"
            seen = shown.find(prompt.encode(), seen) + len(prompt)
            os.write(fd, answer.encode() + b"\n")
        while read():
            pass
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), shown.decode("utf-8", "replace")


def pin_line(credential_id: int, failures: int = 0) -> str:
    return f"credential {credential_id}\tPIN set\t{failures} consecutive failure(s)\tnot locked\n"


@pytest.fixture
def demo(kyso: Kyso, token: TestToken, tmp_path: Path) -> dict[str, int]:
    """``kyso init --demo``: the first commune's officer and seal credential ids, after
    checking that demo.json gives the demo PIN of every demo credential, and that it is
    theirs."""
    described, _ = init_demo(kyso, tmp_path)
    pins = described["signing_pins"]
    assert "DEMO ONLY" in pins["warning"]
    assert {int(i) for i in pins["by_credential"]} == demo_credential_ids(described)
    assert set(pins["by_credential"].values()) == {DEMO_PIN}
    with in_process(kyso, token) as authority:
        for credential_id in demo_credential_ids(described):
            authority.check_pin(credential_id, DEMO_PIN, OFFICER)
    first = described["units"][0]
    (officer,) = (p for p in first["people"] if p["role"] == "officer")
    return {"officer": officer["credential_ids"][0], "seal": first["seal_credential_ids"][0]}


def test_pin_set_unlock_and_errors_from_the_command_line(
    kyso: Kyso, token: TestToken, tmp_path: Path, demo: dict[str, int]
) -> None:
    officer, seal = str(demo["officer"]), str(demo["seal"])
    # Errors: one line with the code, and never the PIN.
    weak = kyso("officer", "pin-set", officer, KYSO_PIN="123456")
    assert "123456" not in assert_one_line_error(weak, "pki.pin_policy")
    (tmp_path / "huge.pin").write_bytes(b"7" * 5000)
    huge = kyso("officer", "pin-set", officer, "--pin-file", "huge.pin")
    assert "7777" not in assert_one_line_error(huge, "kyso.pin_source")
    unasked = kyso("officer", "pin-unlock", officer, "--pin-file", "huge.pin")
    assert "--new-pin" in assert_one_line_error(unasked, "kyso.pin_source")

    (tmp_path / "pin.txt").write_text(FILE_PIN + "\n")
    assert kyso.ok("officer", "pin-set", officer, "--pin-file", "pin.txt").stdout == pin_line(
        demo["officer"]
    )
    shown = json.loads(kyso.ok("officer", "pin-set", seal, "--json", KYSO_PIN=ENV_PIN).stdout)
    assert shown == {"set": True, "failures": 0, "locked_at": None}

    # At a terminal: hidden, asked twice, and asked again when the two differ.
    status, screen = in_terminal(
        kyso,
        ["officer", "pin-set", seal],
        [
            (f"New PIN for credential {seal}: ", TYPED_PIN),
            ("Repeat for confirmation: ", TYPED_PIN + "x"),
            (f"New PIN for credential {seal}: ", TYPED_PIN),
            ("Repeat for confirmation: ", TYPED_PIN),
        ],
    )
    assert status == 0, screen
    assert "do not match" in screen
    assert TYPED_PIN not in screen, "the PIN is not echoed"
    assert pin_line(demo["seal"]).strip() in screen

    with in_process(kyso, token) as authority:
        authority.check_pin(demo["officer"], FILE_PIN, OFFICER)
        authority.check_pin(demo["seal"], TYPED_PIN, OFFICER)
        with pytest.raises(PinInvalidError):
            authority.check_pin(demo["seal"], ENV_PIN, OFFICER)
        for _ in range(4):
            with pytest.raises(PinInvalidError):
                authority.check_pin(demo["officer"], WRONG, OFFICER)
        with pytest.raises(PinLockedError):
            authority.check_pin(demo["officer"], WRONG, OFFICER)

    locked = kyso("officer", "pin-set", officer, KYSO_PIN=ENV_PIN)
    assert_one_line_error(locked, "pki.pin_locked")
    assert kyso.ok("officer", "pin-unlock", officer).stdout == pin_line(demo["officer"])
    replaced = kyso.ok("officer", "pin-unlock", officer, "--new-pin", KYSO_PIN=ENV_PIN)
    assert replaced.stdout == pin_line(demo["officer"])
    with in_process(kyso, token) as authority:
        authority.check_pin(demo["officer"], ENV_PIN, OFFICER)
    # four demo PINs, the three set here, and the two unlocks
    assert cli_pin_events(kyso, token) == [Action.PIN_SET] * 7 + [Action.PIN_UNLOCKED] * 2


def test_activation_policy_and_seal_binding_from_the_command_line(
    kyso: Kyso, token: TestToken, demo: dict[str, int]
) -> None:
    officer, seal = str(demo["officer"]), str(demo["seal"])
    shown = kyso.ok("officer", "activation", officer).stdout.strip()
    assert shown == f"credential {officer}\tactivation pin+otp"
    changed = kyso.ok("officer", "activation", officer, "--policy", "pin").stdout.strip()
    assert changed == f"credential {officer}\tactivation pin"
    client_id = json.loads(kyso.ok("clients", "add", "Cổng", "--scopes", "seal", "--json").stdout)[
        "client"
    ]["client_id"]
    assert kyso.ok("unit", "seal-client", seal, client_id).stdout.strip() == (
        f"seal {seal}\tbound to {client_id}"
    )
    # an officer's credential is never bound to a service
    assert_one_line_error(kyso("unit", "seal-client", officer, client_id), "access.forbidden")
    with in_process(kyso, token) as authority:
        access = AccessStore(authority.engine)
        activation = SignatureActivation(
            engine=authority.engine, authority=authority, access=access
        )
        assert activation.policy(demo["officer"]) is ActivationPolicy.PIN
        bound = access.client(client_id)
        assert bound is not None
        assert activation.bound_client_id(demo["seal"]) == bound.id
    assert kyso.ok("unit", "seal-client", seal).stdout.strip() == f"seal {seal}\tbound to no client"
