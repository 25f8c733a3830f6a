"""Demo data for ``kyso init --demo`` (used by ``make run``): a ministry, one province, two
communes, an officer and a clerk per commune, officer credentials and agency seals, all
issued by Kyso's CA on the token, each with the signing PIN :data:`DEMO_PIN`; and
``var/demo.json`` describing them, that PIN included.

Idempotent: a database that already holds the demo units is left as it is (apart from a
demo credential without a PIN, which gets the demo PIN) and only ``demo.json`` is
rewritten from it. Everything here is clearly marked as demo data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from audit.events import Actor
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


def create_demo(authority: Authority, actor: Actor, path: Path) -> str:
    """Create what is missing of the demo and write ``path``; returns "created" or "present"."""
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
    _write(path, describe(authority))
    return "created" if created else "present"


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


def describe(authority: Authority) -> dict[str, Any]:
    """The demo as ``demo.json`` holds it: ids, names and credential ids."""
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
    }


def _write(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
