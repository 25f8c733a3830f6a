"""The audit log inside the service: events from key generation, the sequencer and
checkpoint loops, the read-only HTTP endpoints, and the CLI commands around them."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audit import merkle
from audit.note import NoteVerifier, open_checkpoint
from hsm import BlockingSessionPool
from kyso import db
from kyso.access.model import Scope
from kyso.access.tokens import ensure_token_key
from kyso.app import create_app
from kyso.audit_signer import ensure_audit_key
from kyso.settings import Settings
from tests.conftest import TestToken
from tests.kyso.conftest import Kyso
from tests.kyso.identities import as_service, as_system_admin


@pytest.fixture
def settings(token: TestToken, tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        hsm_token_label=token.label,
        hsm_pin_file=token.pin_file,
        hsm_acquire_timeout=2,
        hsm_retry_interval=0,
        audit_sequence_interval=0.05,
        audit_checkpoint_interval=3600,
        audit_origin="kyso.test/audit",
    )


def _with_audit_key(token: TestToken) -> None:
    """The audit key, and the access-token key service clients' tokens are signed with."""
    with BlockingSessionPool(token.config(pool_size=1)) as pool:
        ensure_audit_key(pool)
        ensure_token_key(pool)


INIT_EVENTS = 10
"""What ``kyso init`` records: the audit key's generation, the access-token key's, then a
key generation and a certificate issue each for the root CA, issuing CA, OCSP responder
and TSA."""


def test_keygen_events_are_logged_and_provable_over_http(
    kyso_db: Kyso, token: TestToken, settings: Settings
):
    kyso_db.env["KYSO_AUDIT_ORIGIN"] = settings.audit_origin
    kyso_db.ok("init")
    kyso_db.ok("hsm", "keygen", "--type", "ec-p256", "--label", "Nguyễn Văn An")
    note = kyso_db.ok("audit", "checkpoint").stdout
    # init's events and the officer key's.
    assert note.split("\n")[1] == str(INIT_EVENTS + 1)

    with TestClient(create_app(settings)) as client:
        as_system_admin(client)
        vkey = client.get("/audit/public-key").text.strip()
        verifier = NoteVerifier.from_vkey(vkey)
        checkpoint = client.get("/audit/checkpoint")
        assert checkpoint.status_code == 200
        verified = open_checkpoint(checkpoint.text, [verifier], origin=settings.audit_origin)
        size = verified.checkpoint.size
        assert size == INIT_EVENTS + 1
        last = INIT_EVENTS

        entries = client.get("/audit/entries", params={"start": 0, "end": size}).json()["entries"]
        assert [e["index"] for e in entries] == list(range(size))
        assert '"action":"key.generated"' in entries[last]["leaf"]
        assert "Nguyễn Văn An" in entries[last]["leaf"]
        leaf = base64.b64decode(entries[last]["leaf_b64"])

        by_hash = client.get(
            "/audit/proof/inclusion",
            params={"leaf_hash": merkle.leaf_hash(leaf).hex(), "size": size},
        ).json()
        assert by_hash["index"] == last
        proof = [base64.b64decode(h) for h in by_hash["hashes"]]
        merkle.verify_inclusion(
            merkle.leaf_hash(leaf), last, size, proof, verified.checkpoint.root_hash
        )

        consistency = client.get("/audit/proof/consistency", params={"first": 1, "second": 2})
        assert consistency.status_code == 200

        bad = client.get("/audit/proof/inclusion", params={"index": 5, "size": 2})
        assert bad.status_code == 422
        assert bad.json()["error"]["code"].startswith("audit.")
        beyond = client.get("/audit/proof/consistency", params={"first": 1, "second": 99})
        assert beyond.status_code == 422


def test_the_service_sequences_and_signs_on_shutdown(token: TestToken, settings: Settings):
    _with_audit_key(token)
    with TestClient(create_app(settings)) as client:
        # Making the reader's account is the one event admitted while the service runs.
        as_system_admin(client)
        assert client.get("/audit/checkpoint").status_code == 404
    # Sequenced and signed at shutdown: the next start serves that checkpoint and its key.
    with TestClient(create_app(settings)) as client:
        as_system_admin(client)  # the same account: nothing more is admitted
        vkey = client.get("/audit/public-key").text.strip()
        assert vkey.startswith("kyso.test/audit+")
        checkpoint = client.get("/audit/checkpoint")
        assert checkpoint.status_code == 200
        verifier = NoteVerifier.from_vkey(vkey)
        verified = open_checkpoint(checkpoint.text, [verifier], origin=settings.audit_origin)
        assert verified.checkpoint.size == 1
        (entry,) = client.get("/audit/entries", params={"start": 0, "end": 1}).json()["entries"]
        assert '"action":"user.changed"' in entry["leaf"]
        assert '"username":"test-sysadmin"' in entry["leaf"]


def test_cli_export_and_offline_verify(kyso_db: Kyso, tmp_path: Path):
    kyso_db.ok("init")
    for n in range(3):
        kyso_db.ok("hsm", "keygen", "--type", "ed25519", "--label", f"khóa {n}")
    kyso_db.ok("audit", "checkpoint")
    vkey = kyso_db.ok("audit", "verify").stdout
    size = INIT_EVENTS + 3
    assert vkey.startswith(f"ok: {size} entries, 1 checkpoints")

    out = tmp_path / "export"
    # The export sequences what is pending: the checkpoint's own event comes last.
    exported = kyso_db.ok("audit", "export", str(out)).stdout
    assert f"exported {size + 1} entries" in exported
    key_text = (out / "public-key.vkey").read_text().strip()
    offline = kyso_db.ok("audit", "verify", "--export", str(out), "--vkey", key_text)
    assert offline.stdout.startswith(f"ok: {size + 1} entries")

    # An entry edited in the export: exit 1, the bad index or range and a reason code.
    lines = (out / "entries.jsonl").read_bytes().split(b"\n")
    lines[INIT_EVENTS + 1] = lines[INIT_EVENTS + 1].replace("khóa 1".encode(), "khóa X".encode())
    (out / "entries.jsonl").write_bytes(b"\n".join(lines))
    tampered = kyso_db("audit", "verify", "--export", str(out), "--vkey", key_text)
    assert tampered.returncode == 1
    assert tampered.stdout.startswith("FAILED at index")
    assert "[audit.verify." in tampered.stdout

    tail = kyso_db.ok("audit", "tail", "-n", "2").stdout.splitlines()
    assert [line.split("\t")[0] for line in tail] == [str(size - 1), str(size)]
    assert "audit.checkpoint" in tail[1]
    proof = kyso_db.ok("audit", "proof", "1").stdout
    assert '"index": 1' in proof
    assert f'"size": {size}' in proof


AUDIT_READS = (
    "/audit/public-key",
    "/audit/checkpoint",
    "/audit/entries?start=0&end=1",
    "/audit/proof/inclusion?index=0&size=1",
    "/audit/proof/consistency?first=1&second=1",
)


def test_audit_endpoints_refuse_who_may_not_read_them(token: TestToken, settings: Settings):
    _with_audit_key(token)
    with TestClient(create_app(settings)) as client:
        for path in AUDIT_READS:
            anonymous = client.get(path)
            assert anonymous.status_code == 401, path
            assert anonymous.json()["error"]["code"] == "access.invalid_token"
        as_service(client, Scope.VERIFY, Scope.DOCUMENTS_READ, Scope.ADMIN)
        for path in AUDIT_READS:
            refused = client.get(path)
            assert refused.status_code == 403, path
            assert refused.json()["error"]["code"] == "access.forbidden"
        reader = as_service(client, Scope.AUDIT_READ).get("/audit/public-key")
        assert reader.status_code == 200
        assert reader.text.startswith("kyso.test/audit+")


def test_database_engine_is_at_the_audit_revision(database_url: str):
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()
