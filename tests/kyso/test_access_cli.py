"""``kyso users`` and ``kyso clients``: the command line, checked against the access store.

The units and people the accounts are scoped to are made in this process with the
authority (as ``kyso unit add`` does); what the commands print is then checked against
the store itself: a printed TOTP secret must sign its person in, a printed client secret
must authenticate its client.

A ``kyso`` process costs about 1.5 s of imports, and these flows take some twenty
commands per database; so one test runs the installed console script in subprocesses (on
both databases), and the others call the function that script calls, ``kyso.cli.main``,
in this process, with its arguments, environment, exit code and both output streams.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from audit.events import Actor
from hsm import BlockingSessionPool
from kyso import cli, db
from kyso.access import factors
from kyso.access.model import InvalidClientError, InvalidLoginError, Scope
from kyso.access.store import MAX_LOGIN_FAILURES, AccessStore
from kyso.access.tokens import HsmSealer
from kyso.pki_service import make_authority
from pki.store import PersonRole, UnitKind
from tests.conftest import TestToken
from tests.kyso.conftest import Kyso
from tests.kyso.test_pki_cli import assert_one_line_error, ok_json, service_settings

PASSWORD = "mật khẩu đủ dài 2025"
ROLES = ("officer", "clerk", "unit-admin", "auditor", "system-admin")
SETUP = Actor(id="test:setup", role="system-admin")


@dataclass(frozen=True, kw_only=True)
class InProcessKyso:
    """Runs ``kyso.cli.main`` (the console script's function) with the environment of a
    subprocess ``Kyso``; returns what a subprocess would."""

    env: dict[str, str]
    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.capsys.readouterr()
        with self.monkeypatch.context() as patch:
            for name, value in self.env.items():
                if name.startswith("KYSO_"):
                    patch.setenv(name, value)
            patch.setattr(sys, "argv", ["kyso", *args])
            # Settings are loaded once per process; a fresh run loads them again.
            patch.setattr(cli.state, "settings", None)
            patch.setattr(cli.state, "debug", False)
            try:
                cli.main()
                code = 0
            except SystemExit as ex:
                code = ex.code if isinstance(ex.code, int) else 1
        out = self.capsys.readouterr()
        return subprocess.CompletedProcess(["kyso", *args], code, out.out, out.err)


@dataclass(frozen=True, kw_only=True)
class Site:
    """A migrated database with units, and the CLI pointed at it."""

    kyso: Kyso | InProcessKyso
    """The command line: the console script, or its function in this process."""
    engine: Engine
    units: dict[str, int]
    """Unit ids by code: BCA, CAT-HCM, CAP-BT, CAP-SG."""
    people: dict[str, int]
    """Person ids of CAP-BT by role: officer, clerk."""
    password_file: Path
    pool: BlockingSessionPool
    """Open for the test: the store seals and opens TOTP secrets as the CLI does."""

    def store(self) -> AccessStore:
        return AccessStore(self.engine, sealer=HsmSealer(self.pool))


def make_site(
    kyso: Kyso, token: TestToken, tmp_path: Path, run: InProcessKyso | None = None
) -> Iterator[Site]:
    engine = db.make_engine(kyso.env["KYSO_DATABASE_URL"])
    try:
        db.upgrade(engine)
        with BlockingSessionPool(token.config(pool_size=1)) as pool:
            authority = make_authority(service_settings(kyso, token), engine, pool)
            units: dict[str, int] = {}
            for kind, code, name, parent in (
                (UnitKind.MINISTRY, "BCA", "Bộ Công an", None),
                (UnitKind.PROVINCE, "CAT-HCM", "Công an Thành phố Hồ Chí Minh", "BCA"),
                (UnitKind.COMMUNE, "CAP-BT", "Công an phường Bến Thành", "CAT-HCM"),
                (UnitKind.COMMUNE, "CAP-SG", "Công an phường Sài Gòn", "CAT-HCM"),
            ):
                units[code] = authority.add_unit(
                    kind=kind,
                    code=code,
                    name=name,
                    province="Thành phố Hồ Chí Minh",
                    locality="Phường Bến Thành",
                    parent_id=None if parent is None else units[parent],
                    actor=SETUP,
                ).id
            people = {
                role.value: authority.add_person(
                    unit_id=units["CAP-BT"],
                    role=role,
                    full_name=name,
                    position=position,
                    cccd=cccd,
                    email=email,
                    actor=SETUP,
                ).id
                for role, name, position, cccd, email in (
                    (PersonRole.OFFICER, "Nguyễn Văn Ánh", "Trưởng Công an phường",
                     "079085001234", "anh.nv@btn.hcm.gov.vn"),
                    (PersonRole.CLERK, "Trần Thị Bích Ngọc", "Văn thư",
                     "079190004321", "ngoc.ttb@btn.hcm.gov.vn"),
                )
            }  # fmt: skip
            password_file = tmp_path / "password.txt"
            password_file.write_text(PASSWORD + "\nsecond line is not read\n", encoding="utf-8")
            yield Site(
                kyso=run or kyso,
                engine=engine,
                units=units,
                people=people,
                password_file=password_file,
                pool=pool,
            )
    finally:
        engine.dispose()


@pytest.fixture
def script_site(kyso_db: Kyso, token: TestToken, tmp_path: Path) -> Iterator[Site]:
    """The console script in subprocesses, on SQLite and on PostgreSQL."""
    yield from make_site(kyso_db, token, tmp_path)


@pytest.fixture
def site(
    kyso_db: Kyso,
    token: TestToken,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[Site]:
    """``kyso.cli.main`` in this process, on SQLite and on PostgreSQL."""
    run = InProcessKyso(env=kyso_db.env, monkeypatch=monkeypatch, capsys=capsys)
    yield from make_site(kyso_db, token, tmp_path, run)


def add_user(site: Site, username: str, role: str, *extra: str) -> dict[str, Any]:
    printed: dict[str, Any] = ok_json(
        site.kyso(
            "users", "add", username, "--role", role,
            "--password-file", str(site.password_file), "--json", *extra,
        )
    )  # fmt: skip
    return printed


def test_users_of_every_role_lock_unlock_and_sign_in(site: Site):
    added = {}
    for role in ROLES:
        extra = [] if role == "system-admin" else ["--unit", "CAP-BT"]
        if role in site.people:
            extra += ["--person", str(site.people[role])]
        username = f"{role.replace('-', '.')}.bt"
        added[role] = add_user(site, username, role, *extra)
        user = added[role]["user"]
        assert (user["username"], user["role"], user["locked"], user["disabled"]) == (
            username,
            role,
            False,
            False,
        )
        if role == "system-admin":
            assert (user["unit"], user["unit_id"]) == (None, None)
        else:
            assert (user["unit"], user["unit_id"]) == ("CAP-BT", site.units["CAP-BT"])
        assert user["person_id"] == site.people.get(role)
        secret = added[role]["totp_secret"]
        assert added[role]["totp_uri"] == factors.totp_uri(secret, username)
        assert added[role]["totp_uri"].startswith("otpauth://totp/")

    # Five wrong passwords lock the officer's account; the right one is then refused too.
    store = site.store()
    officer = added["officer"]["user"]["username"]
    for _ in range(MAX_LOGIN_FAILURES):
        with pytest.raises(InvalidLoginError):
            store.authenticate(officer, "not the password at all", None, kind="csc")
    with pytest.raises(InvalidLoginError):
        store.authenticate(officer, PASSWORD, None, kind="csc")

    listed = ok_json(site.kyso("users", "list", "--json"))
    assert [(u["username"], u["role"], u["unit"], u["person_id"]) for u in listed] == [
        (a["user"]["username"], role, a["user"]["unit"], site.people.get(role))
        for role, a in added.items()
    ]
    assert {u["username"]: u["locked"] for u in listed} == {
        a["user"]["username"]: role == "officer" for role, a in added.items()
    }
    assert not any(u["disabled"] for u in listed)

    unlocked = ok_json(site.kyso("users", "unlock", officer, "--json"))
    assert (unlocked["username"], unlocked["locked"]) == (officer, False)
    # The secret `users add` printed is the one the account checks: a web sign-in with the
    # password and the current code of that secret succeeds.
    code = factors.totp_now(added["officer"]["totp_secret"])
    signed_in = store.authenticate(officer, PASSWORD, code, kind="web")
    assert (signed_in.username, signed_in.role.value, signed_in.locked) == (
        officer,
        "officer",
        False,
    )


def test_users_refusals_and_changes(site: Site):
    # Only a system admin has no unit.
    refused = assert_one_line_error(
        site.kyso(
            "users", "add", "auditor.nounit", "--role", "auditor",
            "--password-file", str(site.password_file),
        ),
        "access.invalid_input",
    )  # fmt: skip
    assert "unit" in refused
    assert_one_line_error(
        site.kyso(
            "users", "add", "clerk.x", "--role", "clerk", "--unit", "CAP-XX",
            "--password-file", str(site.password_file),
        ),
        "access.not_found",
    )  # fmt: skip
    first = add_user(site, "ngoc.ttb", "clerk", "--unit", "CAP-BT")
    refused = assert_one_line_error(
        site.kyso(
            "users", "add", "ngoc.ttb", "--role", "auditor", "--unit", "CAP-SG",
            "--password-file", str(site.password_file),
        ),
        "access.conflict",
    )  # fmt: skip
    assert PASSWORD not in refused
    store = site.store()
    assert [u.username for u in store.users()] == ["ngoc.ttb"]
    assert store.user("ngoc.ttb").role.value == "clerk"

    new_password = site.password_file.with_name("new-password.txt")
    new_password.write_text("một mật khẩu mới khác\n", encoding="utf-8")
    changed = site.kyso("users", "passwd", "ngoc.ttb", "--password-file", str(new_password))
    assert changed.returncode == 0, changed.stderr
    assert "mật khẩu" not in changed.stdout
    assert store.authenticate("ngoc.ttb", "một mật khẩu mới khác", None, kind="csc")
    with pytest.raises(InvalidLoginError):
        store.authenticate("ngoc.ttb", PASSWORD, None, kind="csc")

    reset = ok_json(site.kyso("users", "reset-totp", "ngoc.ttb", "--json"))
    assert reset["totp_secret"] != first["totp_secret"]
    assert reset["totp_uri"] == factors.totp_uri(reset["totp_secret"], "ngoc.ttb")
    with pytest.raises(InvalidLoginError):
        store.authenticate(
            "ngoc.ttb",
            "một mật khẩu mới khác",
            factors.totp_now(first["totp_secret"]),
            kind="web",
        )

    moved = ok_json(
        site.kyso("users", "role", "ngoc.ttb", "--role", "auditor", "--unit", "CAP-SG", "--json")
    )
    assert (moved["role"], moved["unit"], moved["unit_id"]) == (
        "auditor",
        "CAP-SG",
        site.units["CAP-SG"],
    )

    disabled = site.kyso("users", "disable", "ngoc.ttb")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.startswith("ngoc.ttb\tauditor\tunit CAP-SG\t"), disabled.stdout
    assert disabled.stdout.rstrip().endswith("disabled")
    assert store.user("ngoc.ttb").disabled
    # A disabled account may not sign in, even with the right password and a fresh code.
    with pytest.raises(InvalidLoginError):
        store.authenticate(
            "ngoc.ttb",
            "một mật khẩu mới khác",
            factors.totp_now(reset["totp_secret"]),
            kind="web",
        )


def test_clients_add_rotate_revoke(site: Site):
    refused = assert_one_line_error(
        site.kyso("clients", "add", "Cổng dịch vụ công", "--scopes", "sign teleport"),
        "access.invalid_scope",
    )
    assert "teleport" in refused
    store = site.store()
    assert store.clients() == []

    added = ok_json(
        site.kyso(
            "clients", "add", "Cổng dịch vụ công", "--scopes", "sign verify",
            "--unit", "CAP-BT", "--json",
        )
    )  # fmt: skip
    client_id, first_secret = added["client"]["client_id"], added["client_secret"]
    assert added["client"] | {"created_at": None} == {
        "client_id": client_id,
        "name": "Cổng dịch vụ công",
        "unit": "CAP-BT",
        "unit_id": site.units["CAP-BT"],
        "scopes": "sign verify",
        "revoked": False,
        "created_at": None,
        "rotated_at": None,
    }
    client = store.authenticate_client(client_id, first_secret)
    assert client.scopes == frozenset({Scope.SIGN, Scope.VERIFY})

    rotated = ok_json(site.kyso("clients", "rotate", client_id, "--grace-hours", "2", "--json"))
    new_secret = rotated["client_secret"]
    assert new_secret != first_secret
    # Within the grace period both secrets work.
    assert store.authenticate_client(client_id, new_secret).client_id == client_id
    assert store.authenticate_client(client_id, first_secret).client_id == client_id

    revoked = site.kyso("clients", "revoke", client_id)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.startswith(f"{client_id}\tCổng dịch vụ công\tunit CAP-BT\t")
    assert revoked.stdout.rstrip().endswith("revoked")
    for secret in (new_secret, first_secret):
        with pytest.raises(InvalidClientError):
            store.authenticate_client(client_id, secret)

    listed = ok_json(site.kyso("clients", "list", "--json"))
    assert [(c["client_id"], c["revoked"], c["rotated_at"] is not None) for c in listed] == [
        (client_id, True, True)
    ]
    assert_one_line_error(site.kyso("clients", "rotate", client_id), "access.not_found")


def test_console_script_prints_secrets_once_that_work(script_site: Site):
    site = script_site
    added = site.kyso(
        "users", "add", "anh.nv", "--role", "officer", "--unit", "CAP-BT",
        "--person", str(site.people["officer"]), "--password-file", str(site.password_file),
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    lines = added.stdout.splitlines()
    assert lines[0] == f"anh.nv\tofficer\tunit CAP-BT\tperson {site.people['officer']}\tactive"
    (secret,) = re.findall(r"^TOTP secret \(shown once[^)]*\): ([A-Z2-7]{32})$", added.stdout, re.M)
    assert f"TOTP URI: {factors.totp_uri(secret, 'anh.nv')}" in lines
    assert PASSWORD not in added.stdout + added.stderr
    store = site.store()
    assert store.authenticate("anh.nv", PASSWORD, factors.totp_now(secret), kind="web")

    refused = assert_one_line_error(
        site.kyso(
            "users", "add", "anh.nv", "--role", "officer", "--unit", "CAP-BT",
            "--password-file", str(site.password_file),
        ),
        "access.conflict",
    )  # fmt: skip
    assert "anh.nv" in refused

    client = site.kyso("clients", "add", "Hệ thống cư trú", "--scopes", "seal documents:read")
    assert client.returncode == 0, client.stderr
    first, second = client.stdout.splitlines()
    client_id = first.split("\t")[0]
    assert first == f"{client_id}\tHệ thống cư trú\tunit -\tscopes documents:read seal\tactive"
    client_secret = second.rsplit(" ", 1)[1]
    assert store.authenticate_client(client_id, client_secret).scopes == frozenset(
        {Scope.SEAL, Scope.DOCUMENTS_READ}
    )
