"""Demo data for ``kyso init --demo`` (used by ``make run``): a ministry, one province, two
communes, an officer and a clerk per commune, officer credentials and agency seals, all
issued by Kyso's CA on the token, each with the signing PIN :data:`DEMO_PIN`; a sign-in
account for every role (:data:`DEMO_ACCOUNTS`, password :data:`DEMO_PASSWORD`, fixed TOTP
secrets), a service client for the public-service portal (:data:`DEMO_CLIENT_NAME`); and
``var/demo.json`` describing them, those secrets included.

Idempotent: a database that already holds the demo units is left as it is (apart from a
demo credential without a PIN, which gets the demo PIN, and a missing demo account or
client, which is created) and only ``demo.json`` is rewritten from it. The demo secrets are
constants so that the file stays right however often it is rewritten. Everything here is
clearly marked as demo data.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audit.events import Actor
from kyso.access import factors
from kyso.access.activation import ActivationPolicy, SignatureActivation
from kyso.access.model import Role, format_scopes, parse_scopes
from kyso.access.store import AccessStore, Client, SecretSealer
from pki.authority import Authority, Credential
from pki.store import CredentialKind, CredentialStatus, PersonRole, UnitKind

MINISTRY = ("BCA", "Bộ Công an", "Hà Nội", "Hà Nội")
PROVINCE = (
    "CAT-HCM",
    "Công an Thành phố Hồ Chí Minh",
    "Thành phố Hồ Chí Minh",
    "Thành phố Hồ Chí Minh",
)
COMMUNES = (
    ("CAP-BT", "Công an phường Bến Thành", "Phường Bến Thành"),
    ("CAP-SG", "Công an phường Sài Gòn", "Phường Sài Gòn"),
)
PEOPLE = {
    "CAP-BT": (
        (PersonRole.OFFICER, "Nguyễn Văn Ánh", "Trưởng Công an phường", "079085001234",
         "anh.nv@btn.hcm.demo.kyso.vn"),
        (PersonRole.CLERK, "Trần Thị Bích Ngọc", "Văn thư", "079190004321",
         "ngoc.ttb@btn.hcm.demo.kyso.vn"),
    ),
    "CAP-SG": (
        (PersonRole.OFFICER, "Lê Hoàng Dũng", "Phó Trưởng Công an phường", "079088005678",
         "dung.lh@sgn.hcm.demo.kyso.vn"),
        (PersonRole.CLERK, "Phạm Thị Thu Hương", "Văn thư", "079192008765",
         "huong.ptt@sgn.hcm.demo.kyso.vn"),
    ),
}  # fmt: skip

DEMO_PIN = "482915"
"""The signing PIN of every demo officer and seal credential. Written into ``demo.json``
so that anyone can try the demo; a real PIN is known to its officer only."""

DEMO_PASSWORD = "Kyso-demo-2026"  # noqa: S105 (demo data, published in demo.json)
"""The sign-in password of every demo account (DEMO ONLY, written into ``demo.json``)."""

DEMO_TOTP_SECRETS = {
    "anh.nv": "KYSODEMOANHNV7777777777777777777",
    "ngoc.ttb": "KYSODEMONGOCTTB77777777777777777",
    "dung.lh": "KYSODEMODUNGLH777777777777777777",
    "huong.ptt": "KYSODEMOHUONGPTT7777777777777777",
    "admin.hcm": "KYSODEMOADMINHCM7777777777777777",
    "auditor.hcm": "KYSODEMOAUDITORHCM77777777777777",
    "sysadmin": "KYSODEMOSYSADMIN7777777777777777",
}
"""DEMO ONLY: the TOTP secret (base32, 160 bits, spelling "KYSO DEMO <username>") of each
demo account, by username. Fixed rather than random so that ``demo.json``, rewritten on
every run, still matches the authenticator apps enrolled from it."""

DEMO_CLIENT_NAME = "Cổng dịch vụ công (demo)"
"""The demo service client, found by this name on a re-run."""

DEMO_CLIENT_SCOPES = parse_scopes("sign seal verify documents:read")

DEMO_CLIENT_SECRET = "kyso-demo-client-secret-not-for-production"  # noqa: S105 (demo data)
"""DEMO ONLY: the demo client's secret (no ``:``, so that it fits HTTP Basic as it is)."""


@dataclass(frozen=True, kw_only=True)
class DemoAccount:
    """A demo sign-in account."""

    username: str
    role: Role
    unit: str | None
    """Code of the unit the account's rights are bound to; ``None`` for the system admin."""
    email: str | None
    """E-mail of the demo person (in :data:`PEOPLE`) whose account it is; ``None`` for an
    account that is nobody's officer or clerk record."""
    totp_secret: str


def _demo_accounts() -> tuple[DemoAccount, ...]:
    """An account per demo officer and clerk (named after their e-mail), then the province's
    unit admin and auditor and the system admin."""
    people = tuple(
        DemoAccount(
            username=(username := email.partition("@")[0]),
            role=Role(role.value),
            unit=code,
            email=email,
            totp_secret=DEMO_TOTP_SECRETS[username],
        )
        for code, persons in PEOPLE.items()
        for role, _, _, _, email in persons
    )
    staff = tuple(
        DemoAccount(
            username=username,
            role=role,
            unit=unit,
            email=None,
            totp_secret=DEMO_TOTP_SECRETS[username],
        )
        for username, role, unit in (
            ("admin.hcm", Role.UNIT_ADMIN, PROVINCE[0]),
            ("auditor.hcm", Role.AUDITOR, PROVINCE[0]),
            ("sysadmin", Role.SYSTEM_ADMIN, None),
        )
    )
    return people + staff


DEMO_ACCOUNTS = _demo_accounts()


def create_demo(
    authority: Authority, actor: Actor, path: Path, *, sealer: SecretSealer | None = None
) -> str:
    """Create what is missing of the demo and write ``path``; returns "created" (anything
    was) or "present". ``kyso init`` passes the HSM ``sealer`` of the accounts' TOTP
    secrets; without it (tests on a bare database) they are stored in clear."""
    existing = {unit.code: unit for unit in authority.units()}
    created = MINISTRY[0] not in existing
    if created:
        code, name, province, locality = MINISTRY
        ministry = authority.add_unit(
            kind=UnitKind.MINISTRY,
            code=code,
            name=name,
            province=province,
            locality=locality,
            parent_id=None,
            actor=actor,
        )
        code, name, province, locality = PROVINCE
        parent = authority.add_unit(
            kind=UnitKind.PROVINCE,
            code=code,
            name=name,
            province=province,
            locality=locality,
            parent_id=ministry.id,
            actor=actor,
        )
        for code, name, locality in COMMUNES:
            unit = authority.add_unit(
                kind=UnitKind.COMMUNE,
                code=code,
                name=name,
                province=PROVINCE[2],
                locality=locality,
                parent_id=parent.id,
                actor=actor,
            )
            authority.enroll_seal(unit.id, actor)
            for role, full_name, position, cccd, email in PEOPLE[code]:
                person = authority.add_person(
                    unit_id=unit.id,
                    role=role,
                    full_name=full_name,
                    position=position,
                    cccd=cccd,
                    email=email,
                    actor=actor,
                )
                if role is PersonRole.OFFICER:
                    authority.enroll_person(person.id, actor)
    for credential in _demo_credentials(authority):
        # Also a demo made before credentials had PINs.
        if not credential.pin_set and credential.status is CredentialStatus.ACTIVE:
            authority.set_pin(credential.id, DEMO_PIN, actor)
    access = AccessStore(authority.engine, sealer=sealer)
    accounts_created = _ensure_accounts(authority, access, actor)
    client_created = _ensure_client(authority, access, actor)
    activation = SignatureActivation(engine=authority.engine, authority=authority, access=access)
    _ensure_activation(authority, access, activation, actor)
    _write(path, describe(authority, access))
    return "created" if created or accounts_created or client_created else "present"


PIN_ONLY_OFFICER = "CAP-SG"
"""The commune whose officer's credentials are activated with the PIN alone; the other
officer's need the PIN and a one-time code (the default), so the demo shows both. Its seal
is bound to the demo service client, which seals with it without a PIN (automated
sealing)."""


def _ensure_activation(
    authority: Authority, access: AccessStore, activation: SignatureActivation, actor: Actor
) -> None:
    unit = next(u for u in authority.units() if u.code == PIN_ONLY_OFFICER)
    client = _demo_client(access)
    live = {c.id for c in access.clients() if not c.revoked}
    for credential in authority.credentials(unit_id=unit.id):
        if (
            credential.kind is CredentialKind.OFFICER
            and activation.policy(credential.id) is not ActivationPolicy.PIN
        ):
            activation.set_policy(credential.id, ActivationPolicy.PIN, actor)
        if (
            credential.kind is CredentialKind.SEAL
            and client is not None
            and activation.bound_client_id(credential.id) not in live
        ):
            activation.bind_client(credential.id, client.client_id, actor)


def _ensure_accounts(authority: Authority, access: AccessStore, actor: Actor) -> bool:
    """Create the demo accounts that do not exist yet; whether any was. An existing one is
    left as it is, even if its role or password changed since."""
    existing = {user.username for user in access.users()}
    missing = [account for account in DEMO_ACCOUNTS if account.username not in existing]
    if not missing:
        return False
    units = {unit.code: unit.id for unit in authority.units()}
    people = {person.email: person.id for person in authority.people()}
    for account in missing:
        access.add_user(
            username=account.username,
            role=account.role,
            unit_id=units[account.unit] if account.unit is not None else None,
            person_id=people[account.email] if account.email is not None else None,
            password=DEMO_PASSWORD,
            totp_secret=account.totp_secret,
            actor=actor,
        )
    return True


def _demo_client(access: AccessStore) -> Client | None:
    """The live demo service client, found by name: its ``client_id`` is random."""
    return next((c for c in access.clients() if c.name == DEMO_CLIENT_NAME and not c.revoked), None)


def _ensure_client(authority: Authority, access: AccessStore, actor: Actor) -> bool:
    """Register the demo service client unless a live one exists; whether it was. A revoked
    demo client is replaced, since the demo would not work with it."""
    if _demo_client(access) is not None:
        return False
    province = next(unit.id for unit in authority.units() if unit.code == PROVINCE[0])
    access.add_client(
        name=DEMO_CLIENT_NAME,
        scopes=DEMO_CLIENT_SCOPES,
        unit_id=province,
        secret=DEMO_CLIENT_SECRET,
        actor=actor,
    )
    return True


def _demo_credentials(authority: Authority) -> list[Credential]:
    """The officer and seal credentials of the demo communes."""
    communes = {code for code, _, _ in COMMUNES}
    return [
        credential
        for unit in authority.units()
        if unit.code in communes
        for credential in authority.credentials(unit_id=unit.id)
        if credential.kind in (CredentialKind.OFFICER, CredentialKind.SEAL)
    ]


def describe(authority: Authority, access: AccessStore) -> dict[str, Any]:
    """The demo as ``demo.json`` holds it: ids, names and credential ids, the demo accounts
    and service client as the database holds them, with their demo secrets."""
    units = []
    for unit in authority.units():
        if unit.code not in {c for c, _, _ in COMMUNES}:
            continue
        seals = [
            c.id for c in authority.credentials(unit_id=unit.id) if c.kind is CredentialKind.SEAL
        ]
        people = [
            {
                "id": person.id,
                "role": person.role.value,
                "full_name": person.full_name,
                "position": person.position,
                "cccd": person.cccd,
                "email": person.email,
                "credential_ids": [c.id for c in authority.credentials(person_id=person.id)],
            }
            for person in authority.people(unit_id=unit.id)
        ]
        units.append(
            {"id": unit.id, "code": unit.code, "name": unit.name, "seal_credential_ids": seals,
             "people": people}
        )  # fmt: skip
    return {
        "demo": True,
        "warning": "DEMO DATA ONLY / DỮ LIỆU DEMO — never use these identities in production.",
        "public_url": authority.config.public_url,
        "ca": {
            "root": f"{authority.config.public_url}/pki/ca/root.crt",
            "issuing": f"{authority.config.public_url}/pki/ca/issuing.crt",
            "ocsp": f"{authority.config.public_url}/pki/ocsp",
            "tsa": f"{authority.config.public_url}/tsa",
        },
        "units": units,
        "signing_pins": {
            "warning": "DEMO ONLY: the PIN the demo set on each of its officer and seal "
            "credentials (by credential id). Anyone who reads this file can sign with them.",
            "by_credential": {
                str(credential.id): DEMO_PIN
                for credential in _demo_credentials(authority)
                if credential.pin_set
            },
        },
        "activation": _describe_activation(authority, access),
        "accounts": _describe_accounts(authority, access),
        "service_client": _describe_client(authority, access),
    }


def _describe_activation(authority: Authority, access: AccessStore) -> dict[str, Any]:
    activation = SignatureActivation(engine=authority.engine, authority=authority, access=access)
    return {
        "note": "How each demo officer and seal credential is activated: 'pin' (its signing "
        "PIN) or 'pin+otp' (the PIN and the holder's one-time code from the TOTP app).",
        "by_credential": {
            str(credential.id): activation.policy(credential.id).value
            for credential in _demo_credentials(authority)
        },
    }


def _describe_accounts(authority: Authority, access: AccessStore) -> list[dict[str, Any]]:
    """The demo accounts that exist, with their demo password and TOTP secret."""
    codes = {unit.id: unit.code for unit in authority.units()}
    return [
        {
            "username": user.username,
            "role": user.role.value,
            "unit": codes.get(user.unit_id) if user.unit_id is not None else None,
            "password": DEMO_PASSWORD,
            "totp_secret": DEMO_TOTP_SECRETS[user.username],
            "totp_uri": factors.totp_uri(DEMO_TOTP_SECRETS[user.username], user.username),
        }
        for user in access.users()
        if user.username in DEMO_TOTP_SECRETS
    ]


def _describe_client(authority: Authority, access: AccessStore) -> dict[str, Any] | None:
    client = _demo_client(access)
    if client is None:
        return None
    activation = SignatureActivation(engine=authority.engine, authority=authority, access=access)
    return {
        "client_id": client.client_id,
        "name": client.name,
        "client_secret": DEMO_CLIENT_SECRET,
        "scopes": format_scopes(client.scopes),
        "token_url": f"{authority.config.public_url}/oauth/token",
        "seal_credential_ids": sorted(activation.bound_seals(client.id)),
    }


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
