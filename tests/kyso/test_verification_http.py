"""``POST /api/v1/verify`` in process, on SoftHSM and both databases: the report in each
format ``Accept`` asks for (the PDF sealed by Kyso's own seal), the audit event, the bad
inputs, and workers that die or overrun: an INDETERMINATE answer with the reason, and the
service keeps serving."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree
from pyhanko.pdf_utils.reader import PdfFileReader

from audit.events import Action
from kyso.routers.verification import report_format
from kyso.settings import Settings
from tests.kyso.identities import sign_in
from tests.kyso.test_documents_http import MAX_BYTES, Demo, audit_events, started
from tests.kyso.test_documents_http import demo as demo
from tests.kyso.test_documents_http import settings as settings
from tests.kyso.test_signing_http import sign_once
from verifier.isolation import VerifierPool


def verify(client: TestClient, pdf: bytes, accept: str = "application/json", **form: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/verify",
        headers={"Accept": accept},
        data=form,
        files={"file": ("in.pdf", pdf, "application/pdf")},
    )


PADDING = 40 * 1024 * 1024


def big_document(signed: bytes) -> bytes:
    """``signed`` with 40 MiB of whitespace after it: still the same verdict, but a worker
    needs a moment to take it in."""
    return signed + b" " * PADDING


def kill_busy_worker(pool: VerifierPool) -> None:
    """SIGKILL the worker that is reading the document (its read bytes jump)."""
    deadline = time.monotonic() + 30
    before = {pid: bytes_read(pid) for pid in pool.worker_pids()}
    while time.monotonic() < deadline:
        for pid, start in before.items():
            if bytes_read(pid) - start > PADDING // 8:
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.0005)


def wait_dead(pid: int) -> None:
    """Until the kernel has ended ``pid`` (a zombie its parent has not reaped yet)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.001)


def bytes_read(pid: int) -> int:
    try:
        lines = Path(f"/proc/{pid}/io").read_text().splitlines()
    except OSError:
        return -1
    return next(int(line.split()[1]) for line in lines if line.startswith("rchar:"))


@pytest.fixture
def sealing(settings: Settings, demo: Demo) -> Iterator[TestClient]:
    """The service with Kyso's own seal for PDF reports (the demo unit's seal)."""
    configured = settings.model_copy(
        update={"report_seal_credential": demo.seal_credential, "verify_max_bytes": MAX_BYTES}
    )
    with started(configured) as client:
        yield client


@pytest.fixture
def signed_pdf(sealing: TestClient, demo: Demo) -> bytes:
    response = sign_once(sign_in(sealing, "anh.nv"), demo.officer_credential, level="B-LT")
    assert response.status_code == 200, response.text
    return bytes(response.content)


VERIFIER = "auditor.hcm"
"""Who verifies: anyone signed in may; the demo's auditor, not the signing officer."""


def test_every_format_and_the_audit_event(
    sealing: TestClient, signed_pdf: bytes, settings: Settings, tmp_path: Path
) -> None:
    answer = verify(sign_in(sealing, VERIFIER), signed_pdf)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    report = answer.json()
    assert report["indication"] == "TOTAL-PASSED"
    assert answer.headers["X-Kyso-Indication"] == "TOTAL-PASSED"
    assert [r["index"] for r in report["revisions"]] == [0, 1, 2]

    html = verify(sealing, signed_pdf, "text/html")
    assert html.headers["content-type"].startswith("text/html")
    assert '<html lang="vi"' in html.text
    assert '<html lang="en"' in verify(sealing, signed_pdf, "text/html", lang="en").text
    assert "data:image/png;base64," in html.text  # the thumbnail of the signed page

    xml = verify(sealing, signed_pdf, "application/xml")
    root = etree.fromstring(xml.content)
    assert root.tag.endswith("ValidationReport")
    assert b"total-passed" in xml.content

    pdf = verify(sealing, signed_pdf, "application/pdf", lang="en")
    assert pdf.headers["content-type"] == "application/pdf"
    (sealed,) = PdfFileReader(BytesIO(pdf.content)).embedded_signatures  # Kyso's seal
    assert sealed.signer_cert.subject.native["common_name"]
    (tmp_path / "report.pdf").write_bytes(pdf.content)
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "report.pdf"), "-"], capture_output=True, text=True, check=True
    ).stdout
    assert "Nguyễn Văn Ánh" in text
    # verifying the sealed report: the report is itself evidence
    assert verify(sealing, pdf.content).json()["indication"] == "TOTAL-PASSED"

    events = [e for e in audit_events(settings) if e.action is Action.VERIFICATION_PERFORMED]
    assert len(events) == 6
    assert {e.details["indication"] for e in events} == {"TOTAL-PASSED"}
    assert events[0].subject.document_sha256 == report["document_sha256"]
    assert events[0].details["policy"] == "kyso-default"
    assert {(e.actor.id, e.actor.role) for e in events} == {(f"user:{VERIFIER}", "auditor")}


def test_bad_inputs_are_4xx_and_audited(
    sealing: TestClient, signed_pdf: bytes, settings: Settings
) -> None:
    sealing.cookies.clear()
    anonymous = verify(sealing, signed_pdf)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "access.invalid_token"
    sign_in(sealing, "huong.ptt")  # a clerk of the other commune verifies as well
    junk = verify(sealing, b"hello, not a PDF")
    assert junk.status_code == 422
    assert junk.json()["error"]["code"] == "verifier.unreadable_document"
    large = verify(sealing, b"%PDF-1.7\n" + b"0" * (MAX_BYTES + 100))
    assert large.status_code == 413
    assert verify(sealing, signed_pdf, policy="nonsense").status_code == 422
    tampered = bytearray(signed_pdf)
    tampered[11] ^= 0x01
    failed = verify(sealing, bytes(tampered))
    assert failed.status_code == 200
    assert failed.json()["indication"] == "TOTAL-FAILED"
    events = [e for e in audit_events(settings) if e.action is Action.VERIFICATION_PERFORMED]
    assert [e.outcome.code for e in events] == [
        "verifier.unreadable_document",
        "verifier.input_too_large",
        None,
    ]


def test_dead_and_overrunning_workers_are_indeterminate(
    settings: Settings, demo: Demo, signed_pdf: bytes
) -> None:
    with started(settings) as client:
        sign_in(client, VERIFIER)
        first = verify(client, signed_pdf).json()
        assert first["indication"] == "TOTAL-PASSED", first
        pool = client.app.state.runtime.verification.pool()  # type: ignore[attr-defined]
        # A worker that dies while it works: killed as soon as it has the document.
        killer = threading.Thread(target=kill_busy_worker, args=(pool,))
        killer.start()
        crashed = verify(client, big_document(signed_pdf))
        killer.join()
        assert crashed.status_code == 200, crashed.text
        report = crashed.json()
        assert (report["indication"], report["reasons"][0]["code"]) == (
            "INDETERMINATE",
            "worker_crashed",
        )
        assert client.get("/healthz").status_code == 200
        # a replaced worker serves the next document, and so does one killed while idle
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
            wait_dead(pid)
        after = verify(client, signed_pdf).json()
        assert after["indication"] == "TOTAL-PASSED", after

    slow = settings.model_copy(update={"verify_wall_seconds": 0.001})
    with started(slow) as client:
        sign_in(client, VERIFIER)
        for _ in range(2):
            overran = verify(client, signed_pdf).json()
            assert overran["indication"] == "INDETERMINATE", overran
            assert overran["reasons"][0]["code"] == "time_limit"


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("*/*", "json"),
        ("text/html", "html"),
        ("application/pdf;q=0.5, text/xml", "xml"),
        ("text/html;q=0, application/json", "json"),
        ("image/png", "json"),
    ],
)
def test_accept_chooses_the_format(accept: str | None, expected: str) -> None:
    assert report_format(accept) == expected
