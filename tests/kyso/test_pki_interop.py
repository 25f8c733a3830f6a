"""Independent tools against a real ``kyso serve``: OpenSSL, pyHanko and pyhanko-certvalidator
fetch Kyso's CA certificates, CRLs, OCSP answers and timestamps over HTTP and must accept them.

One server per database engine for the whole module, set up as an operator would:
``KYSO_PUBLIC_URL`` points at the live server before ``kyso init --demo``, so the AIA and CRL
distribution point URLs written into every certificate reach it. Each test that revokes
something enrols its own officer first (admin API), so no test depends on another's order.
The administration API is called as the demo's system administrator, signed in over HTTP
once per server (password and one-time code from ``demo.json``: a code works only once);
the CA's public routes are fetched without a sign-in, as the tools do.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pytest
from asn1crypto import pem, x509
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from pyhanko_certvalidator.policy_decl import (
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from kyso.access.factors import totp_now
from kyso.routers.auth import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import DEFAULT_POSTGRES_URL, POSTGRES_URL_ENV, make_token
from tests.kyso.conftest import KYSO, Kyso

OPENSSL = shutil.which("openssl")
SERVICE_KINDS = {"root-ca", "issuing-ca", "ocsp", "tsa"}
SIGNING_USAGE = {"digital_signature", "non_repudiation"}
_CCCD = itertools.count(1)

pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _pem(der: bytes) -> bytes:
    armored: bytes = pem.armor("CERTIFICATE", der)
    return armored


def _certificates(data: bytes) -> list[x509.Certificate]:
    return [x509.Certificate.load(der) for _, _, der in pem.unarmor(data, multiple=True)]


@dataclass
class Issued:
    """A certificate Kyso's CA issued, as the admin API hands it out."""

    credential_id: int
    kind: str
    path: Path
    """PEM of the certificate alone."""
    certificate: x509.Certificate
    chain: list[x509.Certificate]
    """What ``/api/v1/credentials/{id}/certificate`` returned after the certificate."""


@dataclass
class LiveKyso:
    """A running ``kyso serve`` and the files the tools read."""

    url: str
    kyso: Kyso
    work: Path
    demo: dict[str, Any]
    root: x509.Certificate
    issuing: x509.Certificate
    admin: dict[str, str]
    """Headers of the system administrator's session: its cookie and CSRF token."""

    @property
    def root_pem(self) -> Path:
        return self.work / "root.pem"

    @property
    def issuing_pem(self) -> Path:
        return self.work / "issuing.pem"

    @property
    def chain_pem(self) -> Path:
        """Issuing CA then root: what ``-CAfile`` gets."""
        return self.work / "chain.pem"

    def get(self, path: str) -> httpx.Response:
        """A public route, without a sign-in."""
        return httpx.get(self.url + path, timeout=10)

    def admin_get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.admin, timeout=10)

    def post_json(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """The administration API, as the system administrator."""
        response = httpx.post(self.url + path, json=body or {}, headers=self.admin, timeout=30)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def issued(self, credential_id: int) -> Issued:
        info = self.admin_get(f"/api/v1/credentials/{credential_id}")
        assert info.status_code == 200, info.text
        response = self.admin_get(f"/api/v1/credentials/{credential_id}/certificate")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pem-certificate-chain"
        leaf, *chain = _certificates(response.content)
        path = self.work / f"credential-{credential_id}.pem"
        path.write_bytes(_pem(leaf.dump()))
        return Issued(credential_id, info.json()["kind"], path, leaf, chain)

    def enroll_officer(self) -> Issued:
        """A new officer of the first demo commune, enrolled over the admin API."""
        n = next(_CCCD)
        person = self.post_json(
            "/api/v1/people",
            {
                "unit_id": self.demo["units"][0]["id"],
                "role": "officer",
                "full_name": f"Võ Thị Thu Thử {n}",
                "position": "Cán bộ",
                "cccd": f"079199{n:06d}",
                "email": f"thu.vt{n}@btn.hcm.demo.kyso.vn",
            },
        )
        credential = self.post_json(f"/api/v1/people/{person['id']}/enroll")
        return self.issued(credential["id"])

    def revoke(self, credential_id: int, reason: str = "key_compromise") -> None:
        """Through the CLI, a process other than the server's (its OCSP cache must notice)."""
        out = self.kyso.ok("officer", "revoke", str(credential_id), "--reason", reason).stdout
        assert "\trevoked\t" in out


def openssl(*args: str | Path, cwd: Path) -> str:
    """Run openssl: each ``str`` is split into words, each ``Path`` is one argument. Returns
    ``[exit N]`` and then stdout and stderr together (OCSP writes its verdict on stderr)."""
    assert OPENSSL
    words = [w for a in args for w in ([str(a)] if isinstance(a, Path) else a.split())]
    result = subprocess.run(
        [OPENSSL, *words],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
        check=False,
    )
    return f"[exit {result.returncode}]\n{result.stdout}"


def _ok(output: str) -> str:
    assert output.startswith("[exit 0]"), output
    return output


def _postgres_database() -> tuple[str, str]:
    """A new database on the PostgreSQL test server: (admin URL, database URL)."""
    server = make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)
    name = f"kyso_interop_{secrets.token_hex(4)}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.execute(
                text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
            )
    finally:
        admin.dispose()
    admin_url = server.render_as_string(hide_password=False)
    return admin_url, server.set(database=name).render_as_string(hide_password=False)


def _drop_postgres(admin_url: str, url: str) -> None:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            name = make_url(url).database
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def _admin_session(url: str, demo: dict[str, Any]) -> dict[str, str]:
    """Sign the demo's system administrator in over HTTP, as a browser would; the session's
    headers."""
    (account,) = (a for a in demo["accounts"] if a["username"] == "sysadmin")
    response = httpx.post(
        url + "/api/v1/auth/login",
        json={
            "username": account["username"],
            "password": account["password"],
            "otp": totp_now(account["totp_secret"]),
        },
        timeout=10,
    )
    assert response.status_code == 200, response.text
    signed_in = response.json()
    assert (signed_in["username"], signed_in["role"]) == ("sysadmin", "system-admin")
    return {
        "Cookie": f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}",
        CSRF_HEADER: signed_in["csrf_token"],
    }


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"kyso serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"kyso serve not ready within 30 s: {log.read_text()}")


@pytest.fixture(
    scope="module",
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ],
)
def live(
    request: pytest.FixtureRequest, softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveKyso]:
    work = tmp_path_factory.mktemp(f"interop-{request.param}")
    token = make_token(softhsm_dir, work)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env |= {
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
        "KYSO_DATA_DIR": str(work / "data"),
        "KYSO_HSM_TOKEN_LABEL": token.label,
        "KYSO_HSM_PIN_FILE": str(token.pin_file),
        "KYSO_PUBLIC_URL": url,
        "PYTHONIOENCODING": "utf-8",
    }
    postgres: tuple[str, str] | None = None
    if request.param == "postgresql":
        postgres = _postgres_database()
        env["KYSO_DATABASE_URL"] = postgres[1]
    kyso = Kyso(env=env, cwd=work)
    log = work / "serve.stderr"
    process: subprocess.Popen[bytes] | None = None
    try:
        kyso.ok("init", "--demo")
        demo = json.loads((work / "data" / "demo.json").read_text(encoding="utf-8"))
        assert KYSO
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [KYSO, "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=work,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        _wait_ready(process, url, log)
        cas = {}
        for name in ("root", "issuing"):
            response = httpx.get(f"{url}/pki/ca/{name}.crt", timeout=10)
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/pkix-cert"
            cas[name] = x509.Certificate.load(response.content)
            (work / f"{name}.pem").write_bytes(_pem(response.content))
        server = LiveKyso(
            url=url, kyso=kyso, work=work, demo=demo, admin=_admin_session(url, demo), **cas
        )
        server.chain_pem.write_bytes(server.issuing_pem.read_bytes() + server.root_pem.read_bytes())
        yield server
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if postgres is not None:
            _drop_postgres(*postgres)
    if log.exists():
        assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def issued(live: LiveKyso) -> dict[int, Issued]:
    """Every credential ``kyso init --demo`` made, by id, with its certificate: the CA
    hierarchy's and those ``demo.json`` lists (not the officers the tests enrol)."""
    demo_ids = {
        credential_id
        for unit in live.demo["units"]
        for credential_id in (
            *unit["seal_credential_ids"],
            *(c for person in unit["people"] for c in person["credential_ids"]),
        )
    }
    found: dict[int, Issued] = {}
    for credential_id in itertools.count(1):
        response = live.admin_get(f"/api/v1/credentials/{credential_id}")
        if response.status_code == 404:
            return found
        if credential_id in demo_ids or response.json()["kind"] in SERVICE_KINDS:
            found[credential_id] = live.issued(credential_id)
    raise AssertionError("unreachable")


def _of_kind(issued: dict[int, Issued], kind: str) -> Issued:
    return next(i for i in issued.values() if i.kind == kind)


# -- certificates ---------------------------------------------------------------------------


def test_the_demo_holds_every_kind_of_certificate(issued: dict[int, Issued]):
    kinds = sorted(i.kind for i in issued.values())
    assert kinds == ["issuing-ca", "ocsp", "officer", "officer", "root-ca", "seal", "seal", "tsa"]


@pytest.mark.parametrize(
    ("kind", "purpose"),
    [
        ("officer", "smimesign"),
        ("seal", "smimesign"),
        ("ocsp", "ocsphelper"),
        ("tsa", "timestampsign"),
    ],
)
def test_openssl_verifies_each_issued_chain(
    live: LiveKyso, issued: dict[int, Issued], kind: str, purpose: str
):
    cert = _of_kind(issued, kind)
    # The admin API hands out the chain the public CA URLs serve.
    assert [c.dump() for c in cert.chain] == [live.issuing.dump(), live.root.dump()]
    w = live.work
    text_out = _ok(openssl("x509 -noout -text -in", cert.path, cwd=w))
    for url in ("/pki/ocsp", "/pki/ca/issuing.crt", "/pki/crl/issuing.crl"):
        assert f"URI:{live.url}{url}" in text_out

    base = ("verify -x509_strict -CAfile", live.root_pem, "-untrusted", live.issuing_pem)
    assert f"{cert.path}: OK" in _ok(openssl(*base, "-purpose", purpose, cert.path, cwd=w))
    # -crl_download: OpenSSL itself follows the CRL distribution point to the live server.
    downloaded = openssl(*base, "-crl_download -crl_check", cert.path, cwd=w)
    assert f"{cert.path}: OK" in _ok(downloaded)


def test_openssl_verifies_the_issuing_ca_against_the_root(live: LiveKyso):
    out = _ok(
        openssl("verify -x509_strict -CAfile", live.root_pem, live.issuing_pem, cwd=live.work)
    )
    assert f"{live.issuing_pem}: OK" in out


# -- CRLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "subject"), [("root", "Kyso Root CA"), ("issuing", "Kyso Issuing CA")]
)
def test_openssl_verifies_the_crls_fetched_over_http(live: LiveKyso, name: str, subject: str):
    response = live.get(f"/pki/crl/{name}.crl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    w = live.work
    der = w / f"{name}.crl"
    der.write_bytes(response.content)
    out = _ok(openssl("crl -inform DER -noout -text -in", der, "-CAfile", live.chain_pem, cwd=w))
    assert "verify OK" in out
    assert f"CN = {subject}" in out
    assert "X509v3 CRL Number" in out
    assert "X509v3 Authority Key Identifier" in out
    # Only the right CA's key verifies it: the issuing CA's CRL against the root alone fails.
    if name == "issuing":
        refused = openssl("crl -inform DER -noout -in", der, "-CAfile", live.root_pem, cwd=w)
        assert "verify OK" not in refused


def test_openssl_checks_the_whole_chain_against_both_crls(
    live: LiveKyso, issued: dict[int, Issued]
):
    crl_files: list[str | Path] = []
    for name in ("root", "issuing"):
        der = live.work / f"{name}-all.crl"
        der.write_bytes(live.get(f"/pki/crl/{name}.crl").content)
        crl_files += ["-CRLfile", der]
    leaves = [i.path for i in issued.values() if i.kind not in ("root-ca", "issuing-ca")]
    out = _ok(
        openssl(
            "verify -crl_check_all", *crl_files, "-CAfile", live.root_pem,
            "-untrusted", live.issuing_pem, *leaves, cwd=live.work,
        )
    )  # fmt: skip
    assert out.count(": OK") == len(leaves) == 6


# -- OCSP -----------------------------------------------------------------------------------


def _ocsp(live: LiveKyso, *args: str | Path) -> str:
    return _ok(
        openssl(
            "ocsp -timeout 10 -url", f"{live.url}/pki/ocsp", "-issuer", live.issuing_pem,
            *args, "-CAfile", live.chain_pem, cwd=live.work,
        )
    )  # fmt: skip


@pytest.mark.parametrize("nonce", ["-nonce", "-no_nonce"])
def test_openssl_ocsp_good(live: LiveKyso, issued: dict[int, Issued], nonce: str):
    for kind in ("officer", "seal", "tsa", "ocsp"):
        cert = _of_kind(issued, kind)
        out = _ocsp(live, "-cert", cert.path, nonce)
        assert "Response verify OK" in out
        assert f"{cert.path}: good" in out
        assert "Next Update:" in out
        assert "WARNING" not in out or nonce == "-no_nonce"


def test_openssl_ocsp_unknown_serial(live: LiveKyso):
    out = _ocsp(live, "-serial", "0x1234")
    assert "Response verify OK" in out
    assert "0x1234: unknown" in out


def test_openssl_ocsp_over_get(live: LiveKyso, issued: dict[int, Issued]):
    """RFC 6960 appendix A.1: the DER request, base64 then URL-encoded, as the path."""
    cert = _of_kind(issued, "seal")
    request = live.work / "get-request.der"
    w = live.work
    about = ("-issuer", live.issuing_pem, "-cert", cert.path)
    _ok(openssl("ocsp -no_nonce -reqout", request, *about, cwd=w))
    encoded = quote(base64.b64encode(request.read_bytes()).decode("ascii"), safe="")
    response = live.get(f"/pki/ocsp/{encoded}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/ocsp-response"
    answer = live.work / "get-response.der"
    answer.write_bytes(response.content)
    out = _ok(openssl("ocsp -respin", answer, *about, "-CAfile", live.chain_pem, cwd=w))
    assert "Response verify OK" in out
    assert f"{cert.path}: good" in out


def test_revocation_reaches_ocsp_cache_and_crl(live: LiveKyso):
    officer = live.enroll_officer()
    # A request without a nonce is answered from the server's cache: prime it.
    assert f"{officer.path}: good" in _ocsp(live, "-cert", officer.path, "-no_nonce")
    assert f"{officer.path}: good" in _ocsp(live, "-cert", officer.path, "-nonce")

    live.revoke(officer.credential_id, "key_compromise")

    for nonce in ("-no_nonce", "-nonce"):
        out = _ocsp(live, "-cert", officer.path, nonce)
        assert "Response verify OK" in out
        assert f"{officer.path}: revoked" in out, nonce
        assert "Reason: keyCompromise" in out
        assert "Revocation Time:" in out

    crl = live.work / "after-revocation.crl"
    crl.write_bytes(live.get("/pki/crl/issuing.crl").content)
    w = live.work
    listed = _ok(openssl("crl -inform DER -noout -text -in", crl, "-CAfile", live.chain_pem, cwd=w))
    assert "verify OK" in listed
    serial = format(officer.certificate.serial_number, "X")
    assert re.search(rf"Serial Number: 0*{serial}\s+Revocation Date", listed), listed
    assert "X509v3 CRL Reason Code" in listed
    assert "Key Compromise" in listed

    refused = openssl(
        "verify -crl_download -crl_check -CAfile", live.root_pem,
        "-untrusted", live.issuing_pem, officer.path, cwd=w,
    )  # fmt: skip
    assert "certificate revoked" in refused
    assert not refused.startswith("[exit 0]")
    # The other officers are untouched.
    other = live.issued(live.demo["units"][0]["people"][0]["credential_ids"][0])
    assert f"{other.path}: good" in _ocsp(live, "-cert", other.path, "-no_nonce")


def test_the_responder_vouches_only_for_the_issuing_ca(live: LiveKyso):
    # Its certificate was delegated by the issuing CA, so it may not speak for certificates
    # the root issued (RFC 6960 §4.2.2.2): those are "unknown"; the root's CRL covers them.
    out = openssl(
        "ocsp -timeout 10 -url", f"{live.url}/pki/ocsp", "-issuer", live.root_pem,
        "-cert", live.issuing_pem, "-CAfile", live.root_pem, cwd=live.work,
    )  # fmt: skip
    assert f"{live.issuing_pem}: unknown" in out
    assert ": good" not in out


# -- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize("with_cert", [True, False], ids=["cert", "no-cert"])
def test_openssl_ts_verifies_a_token_from_the_tsa(
    live: LiveKyso, issued: dict[int, Issued], with_cert: bool
):
    data = live.work / "document.txt"
    data.write_text("Giấy xác nhận thông tin về cư trú — mẫu CT07\n", encoding="utf-8")
    query = live.work / f"q-{with_cert}.tsq"
    reply = live.work / f"r-{with_cert}.tsr"
    w = live.work
    _ok(
        openssl(
            "ts -query -sha256", "-cert" if with_cert else "", "-data", data, "-out", query, cwd=w
        )
    )
    response = httpx.post(
        f"{live.url}/tsa",
        content=query.read_bytes(),
        headers={"content-type": "application/timestamp-query"},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/timestamp-reply"
    reply.write_bytes(response.content)

    shown = _ok(openssl("ts -reply -text -in", reply, cwd=w))
    assert "Status: Granted." in shown
    assert "Policy OID: 2.25.239316119438751809800832820847243805729.2.1" in shown
    assert "CN=Kyso Timestamp Authority" in shown

    # Without the certificates in the token, the verifier needs the TSA certificate itself.
    untrusted: list[str | Path] = [] if with_cert else ["-untrusted", _of_kind(issued, "tsa").path]
    against: tuple[str, Path]
    for against in (("-queryfile", query), ("-data", data)):
        out = openssl(
            "ts -verify -in", reply, *against, "-CAfile", live.chain_pem, *untrusted, cwd=w
        )
        assert "Verification: OK" in _ok(out)

    # A token for other data does not verify.
    other = live.work / "other.txt"
    other.write_text("a different document\n")
    out = openssl(
        "ts -verify -in", reply, "-data", other, "-CAfile", live.chain_pem, *untrusted, cwd=w
    )
    assert "Verification: OK" not in out


def _validation_context(
    live: LiveKyso, rule: RevocationCheckingRule | None = None
) -> ValidationContext:
    """Trusting Kyso's root only, fetching revocation data from the live server, hard-fail."""
    if rule is None:
        return ValidationContext(
            trust_roots=[live.root], allow_fetching=True, revocation_mode="hard-fail"
        )
    policy = CertRevTrustPolicy(
        RevocationCheckingPolicy(
            ee_certificate_rule=rule, intermediate_ca_cert_rule=RevocationCheckingRule.CRL_REQUIRED
        )
    )
    return ValidationContext(trust_roots=[live.root], allow_fetching=True, revinfo_policy=policy)


async def test_pyhanko_validates_a_timestamp_from_the_live_tsa(
    live: LiveKyso, issued: dict[int, Issued]
):
    digest = hashlib.sha256("Giấy xác nhận thông tin về cư trú".encode()).digest()
    # pyHanko sends a nonce and checks that the reply echoes it.
    token = await HTTPTimeStamper(f"{live.url}/tsa", timeout=10).async_timestamp(digest, "sha256")
    signed_data = token["content"]
    async with aclosing(_validation_context(live)) as context:
        status = TimestampSignatureStatus(
            **await validate_tst_signed_data(signed_data, context, lambda _algorithm: digest)
        )
        # The TSA certificate's status came from the live OCSP responder, and the issuing
        # CA's from the root CRL.
        assert len(context.ocsps) >= 1
        assert len(context.crls) >= 1
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.signing_cert.dump() == _of_kind(issued, "tsa").certificate.dump()
    assert status.md_algorithm == "sha256"

    # The same token checked against another document: not intact.
    async with aclosing(_validation_context(live)) as context:
        tampered = TimestampSignatureStatus(
            **await validate_tst_signed_data(signed_data, context, lambda _a: bytes(32))
        )
    assert not tampered.intact


@pytest.mark.parametrize(
    "rule",
    [None, RevocationCheckingRule.OCSP_REQUIRED, RevocationCheckingRule.CRL_REQUIRED],
    ids=["default", "ocsp", "crl"],
)
async def test_certvalidator_checks_officers_against_the_live_revocation_data(
    live: LiveKyso, issued: dict[int, Issued], rule: RevocationCheckingRule | None
):
    good = _of_kind(issued, "officer")
    async with aclosing(_validation_context(live, rule)) as context:
        validator = CertificateValidator(
            good.certificate, intermediate_certs=[live.issuing], validation_context=context
        )
        path = await validator.async_validate_usage(set(SIGNING_USAGE))
        assert [c.dump() for c in path.iter_certs(include_root=True)] == [
            live.root.dump(),
            live.issuing.dump(),
            good.certificate.dump(),
        ]
        if rule is RevocationCheckingRule.CRL_REQUIRED:
            assert len(context.crls) == 2
            assert not context.ocsps
        else:
            assert len(context.ocsps) >= 1

    victim = live.enroll_officer()
    live.revoke(victim.credential_id, "key_compromise")
    async with aclosing(_validation_context(live, rule)) as context:
        validator = CertificateValidator(
            victim.certificate, intermediate_certs=[live.issuing], validation_context=context
        )
        with pytest.raises(RevokedError, match="compromised key"):
            await validator.async_validate_usage(set(SIGNING_USAGE))
