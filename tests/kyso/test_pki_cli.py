"""The PKI commands through the real ``kyso`` console script: ``kyso init --demo``, units,
officers and their credentials (enrolment, re-key, suspension, resumption, revocation), an
external CA's certificate, the trust store, CRLs, expiry and the one-line errors.

Every command is its own process and costs about 1.5 s of imports, so there are two flows:
the commands that write the credential records and query expiry run on both databases; the
second ``init``, the listings, exports, trust store, external certificate and errors run on
the default SQLite. The commands run one after the other: SoftHSM2 processes that open the
same token at the same moment sometimes fail to find it (``[hsm.unavailable]``).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from asn1crypto import crl as asn1_crl
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import select

from kyso import db
from kyso.app import create_app
from kyso.settings import Settings
from pki.store import pki_units
from tests.conftest import TestToken
from tests.kyso.conftest import Kyso
from tests.kyso.identities import sign_in
from tests.kyso.test_pki_http import sign_request
from tests.pki.certs import TestCa, run_openssl

PROVINCE = "Thành phố Hồ Chí Minh"
OFFICER = "Đặng Thị Thu Hà"
GOVERNMENT = "Cơ quan chứng thực số chuyên dùng Chính phủ"
CLERK = "Trần Thị Bích Ngọc"
DEMO_PEOPLE = {"Nguyễn Văn Ánh", CLERK, "Lê Hoàng Dũng", "Phạm Thị Thu Hương"}
SERVICE_KINDS = ("root-ca", "issuing-ca", "ocsp", "tsa")
ONE_LINE_ERROR = re.compile(r"^error: .+ \[(?P<code>[a-z_.]+)\]$")


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    match = ONE_LINE_ERROR.match(lines[0])
    assert match is not None, lines[0]
    assert match["code"] == code
    return lines[0]


def demo_json(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "data" / "demo.json").read_text("utf-8"))
    return data


def key_count(init_output: str) -> int:
    (count,) = re.findall(r"^keys: (\d+) on the token", init_output, flags=re.MULTILINE)
    return int(count)


def init_demo(kyso: Kyso, tmp_path: Path) -> tuple[dict[str, Any], str]:
    """``kyso init --demo`` on an empty database and token: demo.json (checked) and what
    the command printed."""
    first = kyso.ok("init", "--demo").stdout
    # Audit key, access-token key, root, issuing CA, OCSP responder, TSA; two seals and two
    # officers.
    assert key_count(first) == 10
    for kind in SERVICE_KINDS:
        assert f"{kind}: created" in first
    assert "demo: created" in first
    demo = demo_json(tmp_path)
    assert demo["demo"] is True
    assert demo["ca"]["root"].endswith("/pki/ca/root.crt")
    assert [unit["code"] for unit in demo["units"]] == ["CAP-BT", "CAP-SG"]
    assert {p["full_name"] for unit in demo["units"] for p in unit["people"]} == DEMO_PEOPLE
    for unit in demo["units"]:
        assert len(unit["seal_credential_ids"]) == 1
        for person in unit["people"]:
            expected = 1 if person["role"] == "officer" else 0
            assert len(person["credential_ids"]) == expected, person
    return demo, first


def demo_credential_ids(demo: dict[str, Any]) -> set[int]:
    return {
        credential_id
        for unit in demo["units"]
        for credential_id in [
            *unit["seal_credential_ids"],
            *(c for person in unit["people"] for c in person["credential_ids"]),
        ]
    }


def service_settings(kyso: Kyso, token: TestToken) -> Settings:
    """The settings the commands ran with, for the HTTP service in this process."""
    return Settings(
        data_dir=Path(kyso.env["KYSO_DATA_DIR"]),
        database_url=kyso.env.get("KYSO_DATABASE_URL"),
        hsm_token_label=token.label,
        hsm_pin_file=token.pin_file,
        hsm_retry_interval=0,
        audit_checkpoint_interval=3600,
    )


def test_a_credential_life_cycle(kyso_db: Kyso, token: TestToken, tmp_path: Path):
    kyso = kyso_db
    demo, _ = init_demo(kyso, tmp_path)
    # The province from the database: a `unit list` would cost a process (listed elsewhere).
    engine = db.make_engine(kyso.env["KYSO_DATABASE_URL"])
    try:
        with engine.connect() as connection:
            province_id = connection.execute(
                select(pki_units.c.id).where(pki_units.c.code == "CAT-HCM")
            ).scalar_one()
    finally:
        engine.dispose()

    unit = ok_json(
        kyso(
            "unit", "add", "--kind", "commune", "--code", "CAP-TD",
            "--name", "Công an phường Tân Định", "--province", PROVINCE,
            "--locality", "Phường Tân Định", "--parent", str(province_id), "--json",
        )
    )  # fmt: skip
    assert (unit["kind"], unit["code"], unit["name"], unit["parent_id"]) == (
        "commune",
        "CAP-TD",
        "Công an phường Tân Định",
        province_id,
    )
    person = ok_json(
        kyso(
            "officer", "add", "--unit", str(unit["id"]), "--name", OFFICER,
            "--position", "Cán bộ Công an phường", "--cccd", "079301004567",
            "--email", "ha.dtt@tdh.hcm.gov.vn", "--json",
        )
    )  # fmt: skip
    assert (person["full_name"], person["role"], person["unit_id"], person["cccd"]) == (
        OFFICER,
        "officer",
        unit["id"],
        "079301004567",
    )
    enrolled = ok_json(kyso("officer", "enroll", str(person["id"]), "--json"))
    assert (enrolled["kind"], enrolled["status"], enrolled["person_id"]) == (
        "officer",
        "active",
        person["id"],
    )
    assert OFFICER in enrolled["subject"]
    renewed = ok_json(kyso("officer", "renew", str(enrolled["id"]), "--rekey", "--json"))
    assert (renewed["replaces_id"], renewed["status"]) == (enrolled["id"], "active")
    assert renewed["key_id"] != enrolled["key_id"], "--rekey makes a new key"
    assert renewed["serial"] != enrolled["serial"]

    # Every active credential ends within ten years, soonest first; the superseded one is
    # not counted.
    expiring = ok_json(kyso("pki", "expiring", "--days", "3650", "--json"))
    expiring_ids = [c["id"] for c in expiring]
    assert demo_credential_ids(demo) | {renewed["id"]} <= set(expiring_ids)
    assert enrolled["id"] not in expiring_ids
    assert {c["status"] for c in expiring} == {"active"}
    ends = [c["not_after"] for c in expiring]
    assert ends == sorted(ends), "soonest first"

    credential = str(renewed["id"])
    for change, status in (("suspend", "suspended"), ("resume", "active")):
        line = kyso.ok("officer", change, credential).stdout
        assert line.startswith(f"credential {credential}\tofficer\t{status}\t"), line
        assert OFFICER in line
    revoked = kyso.ok("officer", "revoke", credential, "--reason", "key_compromise").stdout
    assert revoked.startswith(f"credential {credential}\tofficer\trevoked\t"), revoked

    # The service sees the records the commands wrote (to the province's unit admin, whose
    # reach covers the new commune), and publishes both certificates on its CRL: the
    # re-keyed one as superseded.
    with TestClient(create_app(service_settings(kyso, token))) as client:
        shown = sign_in(client, "admin.hcm").get(f"/api/v1/people/{person['id']}").json()
        served = client.get("/pki/crl/issuing.crl")
    assert [(c["id"], c["status"]) for c in shown["credentials"]] == [
        (enrolled["id"], "superseded"),
        (renewed["id"], "revoked"),
    ]
    assert served.status_code == 200
    crl = asn1_crl.CertificateList.load(served.content, strict=True)
    assert {
        format(entry["user_certificate"].native, "x"): entry.crl_reason_value.native
        for entry in crl["tbs_cert_list"]["revoked_certificates"]
    } == {enrolled["serial"]: "superseded", renewed["serial"]: "key_compromise"}


def test_demo_listings_exports_trust_and_errors(kyso: Kyso, token: TestToken, tmp_path: Path):
    demo, first = init_demo(kyso, tmp_path)
    again = kyso.ok("init", "--demo").stdout
    for kind in SERVICE_KINDS:
        assert f"{kind}: present" in again
    assert "demo: present" in again
    assert demo_json(tmp_path) == demo, "a second init changes nothing"
    assert key_count(again) == key_count(first), "no key added"

    units = ok_json(kyso("unit", "list", "--json"))
    ministry, province, *communes = units
    assert [(u["kind"], u["code"], u["parent_id"]) for u in units] == [
        ("ministry", "BCA", None),
        ("province", "CAT-HCM", ministry["id"]),
        ("commune", "CAP-BT", province["id"]),
        ("commune", "CAP-SG", province["id"]),
    ]
    assert [c["name"] for c in communes] == ["Công an phường Bến Thành", "Công an phường Sài Gòn"]
    people = ok_json(kyso("officer", "list", "--json"))
    assert {p["full_name"] for p in people} == DEMO_PEOPLE
    assert {p["role"] for p in people} == {"officer", "clerk"}
    (clerk,) = (p for p in people if p["full_name"] == CLERK)

    root_pem = kyso.ok("pki", "export-root").stdout
    root = x509.load_pem_x509_certificate(root_pem.encode("ascii"))
    assert root.issuer == root.subject
    published = kyso.ok("pki", "crl", "--out", "issuing.crl").stdout
    crl_der = (tmp_path / "issuing.crl").read_bytes()
    assert published.strip() == f"published a new issuing CRL ({len(crl_der)} bytes)"
    assert asn1_crl.CertificateList.load(crl_der, strict=True).crl_number_value.native == 2
    assert ok_json(kyso("pki", "expiring", "--days", "0", "--json")) == []

    # An external CA: trust its root, certify the clerk's request, import the answer.
    government = TestCa.create(GOVERNMENT)
    (tmp_path / "gov-root.pem").write_bytes(
        government.cert.public_bytes(serialization.Encoding.PEM)
    )
    trusted = kyso.ok("pki", "trust", "add", "gov-root.pem", "--name", "gov-root").stdout
    assert trusted.startswith("trusted ")
    assert GOVERNMENT in trusted
    requested = kyso("officer", "csr", "--person", str(clerk["id"]), "--out", "clerk.csr")
    assert requested.returncode == 0, requested.stderr
    assert requested.stdout == ""
    said = re.search(r"pending credential (\d+)", requested.stderr)
    assert said is not None, requested.stderr
    csr_pem = (tmp_path / "clerk.csr").read_text("ascii")
    csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    assert csr.is_signature_valid
    assert CLERK in csr.subject.rfc4514_string()
    certificate = sign_request(government, csr_pem, serial=0x0C_C0D0)
    (tmp_path / "clerk.pem").write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + government.cert.public_bytes(serialization.Encoding.PEM)
    )
    imported = ok_json(kyso("officer", "import-cert", said[1], "clerk.pem", "--json"))
    assert (imported["id"], imported["status"], imported["external"]) == (
        int(said[1]),
        "active",
        True,
    )
    assert imported["serial"] == format(certificate.serial_number, "x")
    assert imported["id"] not in demo_credential_ids(demo)
    shown = ok_json(kyso("officer", "show", str(clerk["id"]), "--json"))
    assert (shown["full_name"], shown["role"]) == (CLERK, "clerk")
    assert shown["credentials"] == [imported]
    trust = ok_json(kyso("pki", "trust", "list", "--json"))
    anchors = [entry["subject"] for entry in trust if entry["anchor"]]
    assert len(anchors) == 2, "Kyso's root and the government root"
    assert any(GOVERNMENT in subject for subject in anchors)

    # Errors: one line naming the code on stderr, nothing on stdout, exit status 1.
    bad_cccd = kyso(
        "officer", "add", "--unit", str(communes[0]["id"]), "--name", "Võ Văn Tần",
        "--position", "Cán bộ", "--cccd", "999301004567", "--email", "tan.vv@ca.gov.vn",
    )  # fmt: skip
    assert_one_line_error(bad_cccd, "pki.invalid_cccd")
    unknown = assert_one_line_error(kyso("officer", "suspend", "987654"), "pki.not_found")
    assert "987654" in unknown

    # What the commands exported is what the service publishes, and openssl agrees.
    with TestClient(create_app(service_settings(kyso, token))) as client:
        served_root = client.get("/pki/ca/root.crt")
        served_issuing = client.get("/pki/ca/issuing.crt")
        served_crl = client.get("/pki/crl/issuing.crl")
        listed = sign_in(client, "sysadmin").get("/api/v1/people").json()
        assert listed == people, "the bad CCCD added nobody"
    assert served_root.status_code == served_issuing.status_code == served_crl.status_code == 200
    assert served_root.content == root.public_bytes(serialization.Encoding.DER)
    assert served_crl.content == crl_der, "the latest CRL"
    (tmp_path / "root.pem").write_text(root_pem)
    issuing = x509.load_der_x509_certificate(served_issuing.content)
    (tmp_path / "issuing.pem").write_bytes(issuing.public_bytes(serialization.Encoding.PEM))
    done = run_openssl("verify", "-CAfile", "root.pem", "issuing.pem", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = run_openssl(
        "crl", "-inform", "DER", "-in", "issuing.crl", "-CAfile", "issuing.pem", "-noout",
        cwd=tmp_path,
    )  # fmt: skip
    assert "verify OK" in done.stderr, done.stderr
