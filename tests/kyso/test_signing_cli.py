"""The signing commands through the real ``kyso`` console script, on SQLite (the registry
and the signing pipeline run on both databases in tests/signer): ``kyso sign`` invisible
and visible, one file and a batch; ``kyso seal`` over an officer's certified signature and
as an attachment's corner stamp; the registry workflow ``kyso issue upload → sign → seal →
show → pdf``; the stamp images. pyHanko (LTV offline where the level has it) and
``pdfsig`` (Kyso's root in an NSS database, Kyso's OCSP responder on the loopback port the
certificates name) check every output.

One token and one ``kyso init --demo`` serve the whole module: every command is its own
process (about 1.5 s of imports), and the commands run one after the other (SoftHSM2
processes that open one token at the same moment sometimes miss it).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import PdfSignatureStatus
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select

from audit.events import Action, AuditEvent
from audit.store import audit_entries
from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from kyso import db
from kyso.access import factors
from kyso.demo import DEMO_PIN
from kyso.pki_service import make_authority
from pki.authority import Authority
from signer.issuing import OFFICER_FIELD, SEAL_FIELD
from tests.conftest import TestToken, make_token
from tests.kyso.conftest import Kyso
from tests.kyso.test_pki_cli import assert_one_line_error, service_settings
from tests.signer.test_ltv import offline_context
from tests.signer.test_pades import tool, validation_context
from tests.signer.test_pdfsig_trust import _OcspHandler, assert_pdfsig_trusts, nss_database
from tests.signer.test_stamps import TITLE, blue_signature_png, draft_pdf, red_seal_png, text_in

WRONG_PIN = "000001"


@dataclass(frozen=True, kw_only=True)
class Demo:
    """``kyso init --demo`` on a fresh token, with the first commune's stamp images set."""

    kyso: Kyso
    token: TestToken
    root: Path
    """The working directory of the commands (inputs and outputs live here)."""
    port: int
    """Loopback port of the public URL, where the OCSP responder is served for pdfsig."""
    officer: int
    """The officer credential of the first demo commune (CAP-BT)."""
    seal: int
    """Its seal credential."""
    unit: int
    """That commune's unit id."""
    outputs: list[str]
    """Everything the commands printed, to check that no PIN ever appears."""

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.kyso(*args, **env)
        self.outputs.append(result.stdout + result.stderr)
        return result

    def ok(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, **env)
        assert result.returncode == 0, f"kyso {' '.join(args)}: {result.stdout}{result.stderr}"
        return result


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def demo(softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Demo:
    root = tmp_path_factory.mktemp("signing-cli")
    token = make_token(softhsm_dir, root)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
    env |= {
        "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
        "KYSO_DATA_DIR": str(root / "data"),
        "KYSO_HSM_TOKEN_LABEL": token.label,
        "KYSO_HSM_PIN_FILE": str(token.pin_file),
        "KYSO_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PYTHONIOENCODING": "utf-8",
    }
    kyso = Kyso(env=env, cwd=root)
    kyso.ok("init", "--demo")
    described = json.loads((root / "data" / "demo.json").read_text("utf-8"))
    first = described["units"][0]
    (officer,) = (p for p in first["people"] if p["role"] == "officer")
    (root / "pin.txt").write_text(DEMO_PIN + "\n")
    (root / "draft.pdf").write_bytes(draft_pdf())
    (root / "signature.png").write_bytes(blue_signature_png())
    (root / "seal.png").write_bytes(red_seal_png())
    made = Demo(
        kyso=kyso,
        token=token,
        root=root,
        port=port,
        officer=officer["credential_ids"][0],
        seal=first["seal_credential_ids"][0],
        unit=first["id"],
        outputs=[],
    )
    image = made.ok("officer", "signature-image", str(officer["id"]), "signature.png").stdout
    assert hashlib.sha256(blue_signature_png()).hexdigest() in image
    made.ok("unit", "seal-image", str(made.unit), "seal.png")
    # The tests sign many times a minute; a one-time code serves once per 30 s step
    # (test_a_pin_otp_credential_needs_its_holders_code puts the code back for itself).
    made.ok("officer", "activation", str(made.officer), "--policy", "pin")
    return made


@contextmanager
def in_process(demo: Demo) -> Iterator[Authority]:
    """The authority the commands used, opened here once they have finished, with its OCSP
    responder answering on the public URL's port (pdfsig asks it)."""
    settings = service_settings(demo.kyso, demo.token)
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        with BlockingSessionPool(settings.hsm_config()) as pool:
            authority = make_authority(settings, engine, pool)
            handler = type(
                "Handler",
                (_OcspHandler,),
                {"responder": authority.ocsp_responder(), "answered": []},
            )
            server = ThreadingHTTPServer(("127.0.0.1", demo.port), handler)
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            try:
                yield authority
            finally:
                server.shutdown()
                server.server_close()
                thread.join(timeout=5)
    finally:
        engine.dispose()


def cli_events(demo: Demo, action: Action) -> list[AuditEvent]:
    engine = db.make_engine(service_settings(demo.kyso, demo.token).sqlalchemy_url)
    try:
        with engine.connect() as connection:
            leaves = connection.execute(
                select(audit_entries.c.leaf).order_by(audit_entries.c.id)
            ).scalars()
            events = [AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves]
    finally:
        engine.dispose()
    return [e for e in events if e.action is action and (e.actor.id or "").startswith("cli:")]


def context_for(reader: PdfFileReader, authority: Authority) -> ValidationContext:
    """Offline, the demo root as the only anchor; B-LT and above: revocation data from the
    document's DSS only, and required."""
    if "/DSS" in reader.root:
        return offline_context(reader, authority)
    return validation_context(authority)


def validated(pdf: bytes, authority: Authority) -> list[tuple[str, PdfSignatureStatus]]:
    """Every signature's field name and status, each required to be intact, valid and
    trusted (:func:`context_for`)."""
    reader = PdfFileReader(BytesIO(pdf))
    context = context_for(reader, authority)
    found = []
    for signature in reader.embedded_regular_signatures:
        status = validate_pdf_signature(signature, context)
        assert status.bottom_line, status.summary()
        found.append((signature.field_name, status))
    return found


def field_rect(pdf: bytes, name: str) -> tuple[float, float, float, float]:
    reader = PdfFileReader(BytesIO(pdf))
    (signature,) = (s for s in reader.embedded_regular_signatures if s.field_name == name)
    x1, y1, x2, y2 = (float(v) for v in signature.sig_field["/Rect"])
    return x1, y1, x2, y2


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_sign_invisible_and_visible_validate_everywhere(demo: Demo) -> None:
    officer = str(demo.officer)
    done = demo.ok(
        "sign", "draft.pdf", "-o", "invisible.pdf", "--credential", officer, "--pin-file", "pin.txt"
    )
    invisible = (demo.root / "invisible.pdf").read_bytes()
    assert f"PAdES B-LT, SHA-256 {sha256(invisible)}" in done.stdout
    demo.ok(
        "sign",
        "draft.pdf",
        "-o",
        "visible.pdf",
        "--credential",
        officer,
        "--anchor",
        TITLE,
        "--level",
        "B-T",
        KYSO_PIN=DEMO_PIN,
    )
    visible = (demo.root / "visible.pdf").read_bytes()

    # Refusals: one line with the code, no output file, nothing signed over an existing one.
    wrong = demo.run(
        "sign", "draft.pdf", "-o", "wrong.pdf", "--credential", officer, KYSO_PIN=WRONG_PIN
    )
    assert WRONG_PIN not in assert_one_line_error(wrong, "pki.pin_invalid")
    assert not (demo.root / "wrong.pdf").exists()
    again = demo.run(
        "sign", "draft.pdf", "-o", "invisible.pdf", "--credential", officer, KYSO_PIN=DEMO_PIN
    )
    assert_one_line_error(again, "kyso.output_exists")
    assert (demo.root / "invisible.pdf").read_bytes() == invisible
    assert not [p.name for p in demo.root.iterdir() if p.name.endswith(".part")]

    with in_process(demo) as authority:
        ((invisible_field, _),) = validated(invisible, authority)
        ((visible_field, _),) = validated(visible, authority)
        nssdir = nss_database(demo.root / "nss-sign", authority)
        for name in ("invisible.pdf", "visible.pdf"):
            report = assert_pdfsig_trusts(demo.root / name, nssdir, signatures=1)
            assert "Nguyễn Văn Ánh" in report
    assert invisible_field == "Signature1"
    assert field_rect(invisible, invisible_field)[2:] == (0.0, 0.0), "no widget area"
    assert visible_field == OFFICER_FIELD
    x1, y1, x2, y2 = field_rect(visible, visible_field)
    # Below the title line (baseline 560, centred on x = 420), with the officer's image.
    assert y2 < 560 < y2 + 20
    assert x1 < 420 < x2
    assert y2 - y1 > 30

    events = {e.subject.document_sha256: e for e in cli_events(demo, Action.DOCUMENT_SIGNED)}
    assert set(events) >= {sha256(invisible), sha256(visible)}
    assert events[sha256(visible)].details["level"] == "B-T"
    assert events[sha256(invisible)].details["credential_id"] == demo.officer
    assert events[sha256(invisible)].details["input_sha256"] == sha256(
        (demo.root / "draft.pdf").read_bytes()
    )
    assert all(DEMO_PIN not in output for output in demo.outputs)


def test_a_pin_otp_credential_needs_its_holders_code(demo: Demo) -> None:
    """Under ``pin+otp`` the console asks for the officer's one-time code as well as the
    PIN: refused without it (no terminal to ask on), with a wrong code or with a code
    already used; signed with a fresh one."""
    officer = str(demo.officer)
    accounts = json.loads((demo.root / "data" / "demo.json").read_text("utf-8"))["accounts"]
    secret = next(a["totp_secret"] for a in accounts if a["username"] == "anh.nv")
    command = ("sign", "draft.pdf", "--credential", officer, "--pin-file", "pin.txt")
    demo.ok("officer", "activation", officer, "--policy", "pin+otp")
    try:
        missing = demo.run(*command, "-o", "otp.pdf")
        assert missing.returncode != 0
        code = factors.totp_now(secret)
        wrong = demo.run(*command, "-o", "otp.pdf", "--otp", f"{(int(code) + 1) % 10**6:06d}")
        assert_one_line_error(wrong, "access.otp_invalid")
        assert not (demo.root / "otp.pdf").exists()
        demo.ok(*command, "-o", "otp.pdf", KYSO_OTP=code)
        assert (demo.root / "otp.pdf").exists()
        replayed = demo.run(*command, "-o", "otp-again.pdf", "--otp", code)
        assert_one_line_error(replayed, "access.otp_invalid")
        assert not (demo.root / "otp-again.pdf").exists()
    finally:
        demo.ok("officer", "activation", officer, "--policy", "pin")


def test_batch_signs_each_document_once(demo: Demo) -> None:
    batch = demo.root / "batch"
    batch.mkdir()
    (batch / "a.pdf").write_bytes(one_page_pdf("Giay xac nhan A"))
    (batch / "b.pdf").write_bytes(draft_pdf())
    (batch / "c.pdf").write_bytes(draft_pdf()[:400])  # truncated
    (batch / "notes.txt").write_text("not a PDF of the batch")
    args = (
        "sign",
        "--batch",
        "batch",
        "-o",
        "signed",
        "--credential",
        str(demo.officer),
        "--level",
        "B-B",
    )

    first = demo.run(*args, KYSO_PIN=DEMO_PIN)
    assert first.returncode == 1, first.stderr
    lines = first.stdout.splitlines()
    assert lines[:2] == ["signed a.pdf", "signed b.pdf"]
    assert lines[2].startswith("FAILED c.pdf: ")
    assert lines[2].endswith("[signer.damaged_pdf]")
    assert lines[3] == "2 signed, 0 already present, 1 failed of 3 PDF(s) into signed"
    outputs = {name: (demo.root / "signed" / name).read_bytes() for name in ("a.pdf", "b.pdf")}
    assert sorted(p.name for p in (demo.root / "signed").iterdir()) == ["a.pdf", "b.pdf"]

    # Run again after the "interruption": nothing is signed twice.
    second = demo.run(*args, KYSO_PIN=DEMO_PIN)
    assert second.returncode == 1
    lines = second.stdout.splitlines()
    assert lines[:2] == ["skipped a.pdf: already in signed", "skipped b.pdf: already in signed"]
    assert lines[-1] == "0 signed, 2 already present, 1 failed of 3 PDF(s) into signed"
    for name, data in outputs.items():
        assert (demo.root / "signed" / name).read_bytes() == data

    signed = [e for e in cli_events(demo, Action.DOCUMENT_SIGNED) if e.details["level"] == "B-B"]
    assert sorted(e.subject.document_sha256 or "" for e in signed) == sorted(
        sha256(data) for data in outputs.values()
    )
    reader = PdfFileReader(BytesIO(outputs["b.pdf"]))
    assert [s.field_name for s in reader.embedded_regular_signatures] == ["Signature1"]


def test_issue_workflow_upload_sign_seal_show_pdf(demo: Demo) -> None:
    upload = (
        "issue",
        "upload",
        "draft.pdf",
        "--type",
        "CT07",
        "--unit",
        str(demo.unit),
        "--service",
        "residence",
        "--subject",
        "079203001234",
        "--idempotency-key",
        "upload-1",
    )
    document_id = demo.ok(*upload).stdout.strip()
    assert len(document_id) == 26
    assert demo.ok(*upload).stdout.strip() == document_id, "same key, same document"

    signed = json.loads(
        demo.ok(
            "issue",
            "sign",
            document_id,
            "--credential",
            str(demo.officer),
            "--json",
            KYSO_PIN=DEMO_PIN,
        ).stdout
    )
    assert signed["status"] == "signed"
    issued = json.loads(
        demo.ok(
            "issue",
            "seal",
            document_id,
            "--credential",
            str(demo.seal),
            "--pin-file",
            "pin.txt",
            "--json",
        ).stdout
    )
    assert (issued["status"], issued["number_text"]) == ("issued", "Số: 01/XN-CAP-BT")
    assert issued["verify_url"] == f"http://127.0.0.1:{demo.port}/v/{document_id}"
    repeated = demo.run(
        "issue", "seal", document_id, "--credential", str(demo.seal), KYSO_PIN=DEMO_PIN
    )
    assert_one_line_error(repeated, "signer.invalid_state")

    shown = demo.ok("issue", "show", document_id).stdout
    assert f"document {document_id}\tissued\tCT07" in shown
    assert "number: Số: 01/XN-CAP-BT" in shown
    revisions = issued["revisions"]
    assert [r["kind"] for r in revisions] == ["draft", "signed", "sealed"]
    for revision in revisions:
        assert f"revision {revision['revision']}\t{revision['kind']}\t{revision['sha256']}" in shown

    demo.ok("issue", "pdf", document_id, "-o", "issued.pdf")
    demo.ok("issue", "pdf", document_id, "-o", "draft-again.pdf", "--revision", "0")
    pdf = (demo.root / "issued.pdf").read_bytes()
    assert sha256(pdf) == revisions[2]["sha256"]
    assert (demo.root / "draft-again.pdf").read_bytes() == (demo.root / "draft.pdf").read_bytes()

    with in_process(demo) as authority:
        found = validated(pdf, authority)
        nssdir = nss_database(demo.root / "nss-issue", authority)
        assert_pdfsig_trusts(demo.root / "issued.pdf", nssdir, signatures=2)
    assert [name for name, _ in found] == [OFFICER_FIELD, SEAL_FIELD]
    assert found[0][1].docmdp_ok
    assert found[1][1].modification_level is ModificationLevel.LTA_UPDATES
    stamp = text_in(pdf, demo.root, field_rect(pdf, SEAL_FIELD))
    assert "Công an phường Bến Thành" in stamp
    assert "Số: 01/XN-CAP-BT" in stamp
    assert tool("qpdf", "--check", demo.root / "issued.pdf").returncode == 0


def test_seal_over_a_certified_signature_and_as_an_attachment(demo: Demo) -> None:
    demo.ok(
        "sign",
        "draft.pdf",
        "-o",
        "certified.pdf",
        "--credential",
        str(demo.officer),
        "--visible",
        "--certify",
        "--level",
        "B-B",
        KYSO_PIN=DEMO_PIN,
    )
    done = demo.ok(
        "seal",
        "certified.pdf",
        "-o",
        "sealed.pdf",
        "--credential",
        str(demo.seal),
        "--number",
        "12/XN-CAP-BT",
        "--level",
        "B-B",
        KYSO_PIN=DEMO_PIN,
    )
    assert done.stdout.startswith("sealed sealed.pdf (")
    demo.ok(
        "seal",
        "draft.pdf",
        "-o",
        "attachment.pdf",
        "--credential",
        str(demo.seal),
        "--attachment",
        "--number",
        "12/XN-CAP-BT",
        KYSO_PIN=DEMO_PIN,
    )
    unnumbered = demo.run(
        "seal",
        "draft.pdf",
        "-o",
        "x.pdf",
        "--credential",
        str(demo.seal),
        "--attachment",
        KYSO_PIN=DEMO_PIN,
    )
    assert "--number" in assert_one_line_error(unnumbered, "kyso.bad_option")

    sealed = (demo.root / "sealed.pdf").read_bytes()
    attachment = (demo.root / "attachment.pdf").read_bytes()
    reader = PdfFileReader(BytesIO(sealed))
    officer_signature, seal_signature = reader.embedded_regular_signatures
    with in_process(demo) as authority:
        context = context_for(reader, authority)
        officer_status = validate_pdf_signature(officer_signature, context)
        seal_status = validate_pdf_signature(seal_signature, context)
        ((attachment_field, _),) = validated(attachment, authority)
    assert (officer_signature.field_name, seal_signature.field_name) == (OFFICER_FIELD, SEAL_FIELD)
    for status in (officer_status, seal_status):
        assert status.bottom_line, status.summary()
    assert officer_status.docmdp_ok
    seal_text = text_in(sealed, demo.root, field_rect(sealed, SEAL_FIELD))
    assert "Số: 12/XN-CAP-BT" in seal_text
    assert attachment_field == SEAL_FIELD
    x1, y1, x2, y2 = field_rect(attachment, SEAL_FIELD)
    assert x2 > 500, "right of page 1"
    assert y2 > 800, "top of page 1"
    corner = text_in(attachment, demo.root, (x1, y1, x2, y2))
    assert "Số: 12/XN-CAP-BT" in corner
    assert "+07:00" in corner

    sealed_events = cli_events(demo, Action.DOCUMENT_SEALED)
    by_document = {e.subject.document_sha256: e.details for e in sealed_events}
    assert by_document[sha256(attachment)]["attachment"] is True
    assert by_document[sha256(sealed)]["number"] == "12/XN-CAP-BT"
    assert all(DEMO_PIN not in output for output in demo.outputs)


def test_images_are_checked_before_they_are_stored(demo: Demo) -> None:
    (demo.root / "not.png").write_bytes(b"GIF89a not a png")
    refused = demo.run("unit", "seal-image", str(demo.unit), "not.png")
    assert_one_line_error(refused, "signer.bad_image")


def test_verify_exit_codes_and_report(demo: Demo) -> None:
    """``kyso verify``: 0 for what Kyso signed, 1 when a signed byte changed, 2 when the
    policy needs revocation data the document lacks, 3 for what is not a PDF."""
    demo.ok("sign", "draft.pdf", "-o", "verify-lt.pdf", "--credential", str(demo.officer),
            "--level", "B-LT", "--pin-file", "pin.txt")  # fmt: skip
    demo.ok("sign", "draft.pdf", "-o", "verify-bb.pdf", "--credential", str(demo.officer),
            "--level", "B-B", "--pin-file", "pin.txt")  # fmt: skip

    passed = demo.run("verify", "verify-lt.pdf", "--json", "--policy", "kyso-ltv")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    report = json.loads(passed.stdout)
    assert report["indication"] == "TOTAL-PASSED"
    (signature,) = report["signatures"]
    assert signature["signer"] == "Nguyễn Văn Ánh"
    for key in ("field", "sub_indication", "signing_time", "timestamp", "modification_level",
                "coverage", "certificate"):  # fmt: skip
        assert key in signature
    assert "hợp lệ" in demo.ok("verify", "verify-lt.pdf").stdout

    tampered = bytearray((demo.root / "verify-bb.pdf").read_bytes())
    assert tampered[9:10] == b"%"  # the binary comment after the header: signed, never parsed
    tampered[11] ^= 0x01
    (demo.root / "tampered.pdf").write_bytes(bytes(tampered))
    failed = demo.run("verify", "tampered.pdf", "--json")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert json.loads(failed.stdout)["indication"] == "TOTAL-FAILED"

    unknown = demo.run("verify", "verify-bb.pdf", "--json", "--policy", "kyso-ltv")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert json.loads(unknown.stdout)["indication"] == "INDETERMINATE"

    (demo.root / "not.pdf").write_bytes(b"hello, not a PDF")
    refused = demo.run("verify", "not.pdf", "--json")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert json.loads(refused.stdout)["error"]["code"].startswith("verifier.")
    assert demo.run("verify", "not.pdf").returncode == 3

    # Kyso's own certificates: status from its CA data, no revocation data in the document
    own = demo.run("verify", "verify-bb.pdf", "--json", "--offline")
    assert own.returncode == 0, own.stdout + own.stderr
    assert json.loads(own.stdout)["signatures"][0]["revocation"]["source"] == "kyso"


def test_verify_reports_and_batch(demo: Demo) -> None:
    """Every report format of ``kyso verify`` in both languages, and ``--batch``."""
    folder = demo.root / "incoming"
    folder.mkdir()
    demo.ok("sign", "draft.pdf", "-o", "incoming/good.pdf", "--credential", str(demo.officer),
            "--level", "B-LT", "--pin-file", "pin.txt")  # fmt: skip
    signed = (folder / "good.pdf").read_bytes()
    (folder / "appended.pdf").write_bytes(signed + b"\n1 0 obj\n<< >>\nendobj\n")
    (folder / "junk.pdf").write_bytes(b"not a PDF at all")

    demo.ok("verify", "incoming/good.pdf", "--html", "vi.html", "--pdf", "vi.pdf",
            "--xml", "report.xml")  # fmt: skip
    demo.ok("verify", "incoming/good.pdf", "--html", "en.html", "--lang", "en")
    vietnamese = (demo.root / "vi.html").read_text(encoding="utf-8")
    assert 'lang="vi"' in vietnamese
    assert "Nguyễn Văn Ánh" in vietnamese
    assert 'lang="en"' in (demo.root / "en.html").read_text(encoding="utf-8")
    assert (demo.root / "vi.pdf").read_bytes().startswith(b"%PDF-")
    text = subprocess.run(
        ["pdftotext", str(demo.root / "vi.pdf"), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert "Nguyễn Văn Ánh" in text
    assert "total-passed" in (demo.root / "report.xml").read_text(encoding="utf-8")
    again = demo.run("verify", "incoming/good.pdf", "--xml", "report.xml")
    assert again.returncode == 1  # an existing output is never overwritten without --force

    batch = demo.run("verify", "--batch", "incoming", "--json")
    assert batch.returncode == 1, batch.stdout + batch.stderr  # one failed: the worst
    rows = {row["file"]: row for row in json.loads(batch.stdout)}
    assert rows["good.pdf"]["report"]["indication"] == "TOTAL-PASSED"
    assert rows["appended.pdf"]["report"]["indication"] == "TOTAL-FAILED"
    assert rows["junk.pdf"]["error"].endswith("[verifier.unreadable_document]")
    table = demo.run("verify", "--batch", "incoming")
    assert "good.pdf" in table.stdout
    assert "KHÔNG hợp lệ" in table.stdout
