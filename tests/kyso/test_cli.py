"""The real ``kyso`` console script, run in subprocesses against a test token."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from pkcs11 import Attribute, KeyType
from sqlalchemy import select, text

from audit.errors import NoteError
from audit.merkle import EMPTY_ROOT
from audit.note import Checkpoint, NoteVerifier, open_checkpoint, sign_checkpoint
from hsm import BlockingSessionPool, KeySpec, find_pkcs11_module
from hsm.module import load_module
from kyso import __version__, db
from kyso.audit_signer import HsmNoteSigner, ensure_audit_key
from kyso.tables import hsm_keys
from tests.conftest import TestToken
from tests.kyso.conftest import KYSO, Kyso

VIETNAMESE_LABEL = "Nguyễn Văn An"
LEAKY_ID = b"\x01leaky"


def _make_keys(token: TestToken, *specs: tuple[KeySpec, str]) -> list[str]:
    """Keys generated in this process exactly as ``kyso hsm keygen`` does; their ids."""
    with BlockingSessionPool(token.config(pool_size=1)) as pool:
        return [pool.generate_key(spec, label=label).key_id.hex() for spec, label in specs]


def _migrated(database_url: str) -> None:
    engine = db.make_engine(database_url)
    try:
        db.upgrade(engine)
    finally:
        engine.dispose()


def _recorded_keys(database_url: str) -> list[Any]:
    engine = db.make_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(hsm_keys).order_by(hsm_keys.c.label)))
    finally:
        engine.dispose()


def _assert_one_line_error(result: subprocess.CompletedProcess[str], code: str) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert f"[{code}]" in lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


# -- version, init, db upgrade ----------------------------------------------------------


def test_version(kyso: Kyso):
    result = kyso.ok("version")
    assert result.stdout.strip() == __version__


def test_help_lists_every_command(kyso: Kyso):
    top = kyso.ok("--help").stdout
    for command in ("version", "serve", "init", "db", "hsm"):
        assert command in top
    hsm_help = kyso.ok("hsm", "--help").stdout
    for command in ("info", "keys", "keygen", "selftest"):
        assert command in hsm_help


def test_init_is_idempotent(kyso_db: Kyso, token: TestToken, database_url: str):
    outputs = []
    for state in ("created", "present"):
        result = kyso_db.ok("init")
        outputs.append(result.stdout)
        lines = result.stdout.splitlines()
        assert lines[-1] == "ready"
        assert f"at revision {db.head_revision()}" in lines[0]
        assert f"{token.label!r} serial {token.serial}" in result.stdout
        assert re.search(rf"audit key: [0-9a-f]{{40}} \(ed25519\) {state}", result.stdout)
        assert re.search(rf"access-token key: [0-9a-f]{{40}} \(ec-p256\) {state}", result.stdout)
        # The audit checkpoint key, the access-token key and the four of the CA hierarchy;
        # a second run adds none.
        for kind in ("root-ca", "issuing-ca", "ocsp", "tsa"):
            assert f"{kind}: {state}" in lines
        assert "keys: 6 on the token, 0 refused for signing" in result.stdout
    vkeys = [re.search(r"verifier key: (\S+)", out).group(1) for out in outputs]  # type: ignore[union-attr]
    assert vkeys[0] == vkeys[1]
    assert vkeys[0].startswith("kyso.local/audit+")
    engine = db.make_engine(database_url)
    try:
        assert db.check(engine)
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT label, spec FROM hsm_keys")).all()
        assert sorted(tuple(r) for r in rows) == [
            ("kyso-access-tokens", "ec-p256"),
            ("kyso-audit-checkpoints", "ed25519"),
        ]
    finally:
        engine.dispose()


def test_the_audit_key_signs_checkpoints_an_auditor_verifies(token: TestToken):
    with BlockingSessionPool(token.config()) as pool:
        key, created = ensure_audit_key(pool)
        assert created
        assert ensure_audit_key(pool) == (key, False)
        signer = HsmNoteSigner(pool, key, "kyso.test/audit")
        note = sign_checkpoint(
            Checkpoint(origin="kyso.test/audit", size=0, root_hash=EMPTY_ROOT), [signer]
        )
    # The auditor has the verifier key text only.
    verified = open_checkpoint(note, [NoteVerifier.from_vkey(signer.vkey())])
    assert verified.checkpoint.size == 0
    tampered = note.replace("\n0\n", "\n1\n", 1)
    with pytest.raises(NoteError, match="signature"):
        open_checkpoint(tampered, [NoteVerifier.from_vkey(signer.vkey())])


def test_init_reports_the_database_without_its_password(kyso: Kyso):
    result = kyso("init", KYSO_DATABASE_URL="postgresql+psycopg://kyso:pw-s3cret@127.0.0.1:1/kyso")
    line = _assert_one_line_error(result, "kyso.storage")
    assert "migration failed" in line
    assert "pw-s3cret" not in result.stdout + result.stderr


def test_db_upgrade(kyso_db: Kyso, database_url: str):
    result = kyso_db.ok("db", "upgrade")
    assert result.stdout.strip() == f"database at revision {db.head_revision()}"
    again = kyso_db.ok("db", "upgrade", "head")
    assert again.stdout == result.stdout
    engine = db.make_engine(database_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


# -- hsm info ---------------------------------------------------------------------------


def test_hsm_info_text(kyso: Kyso, token: TestToken):
    out = kyso.ok("hsm", "info").stdout
    assert "SoftHSM" in out
    assert f"token:       {token.label!r} serial {token.serial}" in out
    assert "OS locking on" in out
    mechanisms = next(line for line in out.splitlines() if line.startswith("mechanisms:"))
    assert "ECDSA" in mechanisms.split(": ", 1)[1].split(", ")


def test_hsm_info_json(kyso: Kyso, token: TestToken):
    info = kyso.json("hsm", "info")
    assert info["manufacturer"] == "SoftHSM"
    assert info["module"].endswith("libsofthsm2.so")
    assert info["thread_safe"] is True
    assert info["token"]["label"] == token.label
    assert info["token"]["serial"] == token.serial
    assert "TOKEN_INITIALIZED" in info["token"]["flags"]
    in_slots = [s for s in info["slots"] if s["token"] and s["token"]["serial"] == token.serial]
    assert len(in_slots) == 1
    assert in_slots[0]["slot_id"] == info["token"]["slot_id"]
    for mechanism in ("ECDSA", "RSA_PKCS", "RSA_PKCS_PSS", "EC_KEY_PAIR_GEN"):
        assert mechanism in info["mechanisms"]


# -- hsm keygen and keys ----------------------------------------------------------------


def test_keygen_records_keys_on_both_databases(kyso_db: Kyso, database_url: str, token: TestToken):
    _migrated(database_url)

    ec = kyso_db.json("hsm", "keygen", "--type", "ec-p256", "--label", VIETNAMESE_LABEL)
    rsa = kyso_db.json("hsm", "keygen", "--type", "rsa-2048", "--label", "Con dấu Công an xã")

    assert (ec["spec"], ec["label"], ec["usable"]) == ("ec-p256", VIETNAMESE_LABEL, True)
    assert (rsa["spec"], rsa["key_type"]) == ("rsa-2048", "RSA")
    rows = {row.key_id: row for row in _recorded_keys(database_url)}
    assert set(rows) == {ec["key_id"], rsa["key_id"]}
    for key in (ec, rsa):
        row = rows[key["key_id"]]
        assert row.label == key["label"]
        assert row.spec == key["spec"]
        assert row.token_serial == token.serial
        assert row.public_key == bytes.fromhex(key["public_key"])
        assert row.created_at is not None

    listed = {k["key_id"]: k for k in kyso_db.json("hsm", "keys")}
    assert listed[ec["key_id"]]["label"] == VIETNAMESE_LABEL
    assert listed[ec["key_id"]]["public_key"] == ec["public_key"]
    assert listed[rsa["key_id"]]["label"] == "Con dấu Công an xã"


def test_keygen_text_defaults_to_ec_p256_in_the_data_dir_database(kyso: Kyso, tmp_path: Path):
    sqlite_url = f"sqlite:///{tmp_path / 'data' / 'kyso.db'}"
    _migrated(sqlite_url)
    out = kyso.ok("hsm", "keygen", "--label", VIETNAMESE_LABEL).stdout
    assert "ec-p256" in out
    assert repr(VIETNAMESE_LABEL) in out
    assert "extractable=no" in out
    assert out.rstrip().endswith("usable")
    (row,) = _recorded_keys(sqlite_url)
    assert row.label == VIETNAMESE_LABEL
    public = load_der_public_key(row.public_key)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--type", "bogus", "--label", "x"), "bogus"),
        (("--type", "ec-p256"), "--label"),
    ],
)
def test_keygen_usage_errors(kyso: Kyso, args: tuple[str, ...], message: str):
    result = kyso("hsm", "keygen", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_keygen_refuses_an_unmigrated_database(kyso: Kyso):
    result = kyso("hsm", "keygen", "--label", "x")
    line = _assert_one_line_error(result, "kyso.storage")
    assert "kyso db upgrade" in line
    # Nothing was generated on the token.
    assert kyso.json("hsm", "keys") == []


def test_keygen_rejects_a_bad_label(kyso: Kyso, tmp_path: Path):
    _migrated(f"sqlite:///{tmp_path / 'data' / 'kyso.db'}")
    result = kyso("hsm", "keygen", "--label", "x" * 200)
    _assert_one_line_error(result, "hsm.invalid_request")


def test_hsm_keys_empty(kyso: Kyso):
    assert kyso.ok("hsm", "keys").stdout.strip() == "no keys on the token"
    assert kyso.json("hsm", "keys") == []


def test_hsm_keys_attributes(kyso: Kyso, token: TestToken):
    (key_id,) = _make_keys(token, (KeySpec.EC_P256, VIETNAMESE_LABEL))

    (listed,) = kyso.json("hsm", "keys")
    assert listed["key_id"] == key_id
    assert listed["label"] == VIETNAMESE_LABEL
    assert listed["spec"] == "ec-p256"
    assert listed["extractable"] is False
    assert listed["always_sensitive"] is True
    assert listed["never_extractable"] is True
    assert listed["sensitive"] is True
    assert listed["local"] is True
    assert listed["sign"] is True
    assert listed["usable"] is True
    assert listed["problems"] == []

    text = kyso.ok("hsm", "keys").stdout
    assert key_id in text
    assert repr(VIETNAMESE_LABEL) in text
    assert "extractable=no" in text
    assert "always_sensitive=yes" in text


# -- hsm selftest -----------------------------------------------------------------------


def _generate_extractable_key(token: TestToken, label: str) -> None:
    """A key Kyso would never make, created with raw python-pkcs11 in this process."""
    lib = load_module(find_pkcs11_module()).lib
    pkcs11_token = lib.get_token(token_label=token.label)
    with pkcs11_token.open(rw=True, user_pin=token.user_pin) as session:
        session.generate_keypair(
            KeyType.EC,
            store=True,
            label=label,
            id=LEAKY_ID,
            public_template={
                Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107"),
                Attribute.VERIFY: True,
            },
            private_template={
                Attribute.EXTRACTABLE: True,
                Attribute.SENSITIVE: True,
                Attribute.SIGN: True,
                Attribute.PRIVATE: True,
            },
        )


def test_selftest_passes_with_good_keys(kyso: Kyso, token: TestToken):
    ids = _make_keys(token, (KeySpec.EC_P256, VIETNAMESE_LABEL), (KeySpec.RSA_2048, "rsa"))

    result = kyso.ok("hsm", "selftest")
    assert "2 key(s), 0 problem(s)" in result.stdout
    assert result.stdout.count("verified on the token and with cryptography") == 2

    report = kyso.json("hsm", "selftest")
    assert report["ok"] is True
    assert report["token"] == token.label
    assert {k["key_id"] for k in report["keys"] if k["ok"]} == set(ids)


def test_selftest_fails_on_an_extractable_key(kyso: Kyso, token: TestToken):
    (good,) = _make_keys(token, (KeySpec.EC_P256, "good"))
    _generate_extractable_key(token, "leaky")

    result = kyso("hsm", "selftest")
    assert result.returncode == 1
    assert "2 key(s), 1 problem(s)" in result.stdout
    fail_line = next(line for line in result.stdout.splitlines() if "FAIL" in line)
    assert "'leaky'" in fail_line
    assert "CKA_EXTRACTABLE is true" in fail_line

    report = kyso("hsm", "selftest", "--json")
    assert report.returncode == 1
    body = json.loads(report.stdout)
    assert body["ok"] is False
    by_label = {k["label"]: k for k in body["keys"]}
    assert by_label["leaky"]["ok"] is False
    assert by_label["leaky"]["extractable"] is True
    assert by_label["leaky"]["usable"] is False
    assert by_label["good"]["ok"] is True
    assert by_label["good"]["key_id"] == good

    init = kyso.ok("init")
    # The good key, the refused one, and the audit, access-token and CA hierarchy keys
    # init creates.
    assert "keys: 8 on the token, 1 refused for signing" in init.stdout
    assert f"refused {LEAKY_ID.hex()} 'leaky'" in init.stdout


def test_selftest_with_no_keys(kyso: Kyso):
    result = kyso.ok("hsm", "selftest")
    assert "0 key(s), 0 problem(s)" in result.stdout


# -- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", [("hsm", "keys"), ("init",)])
def test_wrong_pin_is_one_line(kyso: Kyso, token: TestToken, command: tuple[str, ...]):
    wrong = "wrong-pin-8c1f"
    token.pin_file.write_text(wrong + "\n")
    result = kyso(*command)
    line = _assert_one_line_error(result, "hsm.pin_incorrect")
    assert token.label in line
    assert wrong not in result.stderr + result.stdout
    assert token.user_pin not in result.stderr + result.stdout


def test_wrong_pin_from_env_is_one_line(kyso: Kyso, token: TestToken):
    result = kyso("hsm", "keys", KYSO_HSM_PIN="env-wrong-pin-77")
    _assert_one_line_error(result, "hsm.pin_incorrect")
    assert "env-wrong-pin-77" not in result.stderr


def test_debug_shows_the_traceback(kyso: Kyso, token: TestToken):
    token.pin_file.write_text("wrong-pin-8c1f\n")
    result = kyso("--debug", "hsm", "keys")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert "HsmPinIncorrectError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")
    assert "wrong-pin-8c1f" not in result.stderr


def test_missing_token_label(kyso: Kyso):
    del kyso.env["KYSO_HSM_TOKEN_LABEL"]
    result = kyso("hsm", "keys")
    line = _assert_one_line_error(result, "kyso.settings")
    assert "KYSO_HSM_TOKEN_LABEL" in line
    assert "token-label" in line


def test_token_label_from_the_data_dir(kyso: Kyso, token: TestToken, tmp_path: Path):
    del kyso.env["KYSO_HSM_TOKEN_LABEL"]
    del kyso.env["KYSO_HSM_PIN_FILE"]
    secrets_dir = tmp_path / "data" / "secrets"
    secrets_dir.mkdir(parents=True)
    (secrets_dir / "token-label").write_text(token.label + "\n")
    (secrets_dir / "user-pin").write_text(token.user_pin + "\n")
    info = kyso.json("hsm", "info")
    assert info["token"]["serial"] == token.serial


def test_unknown_token(kyso: Kyso):
    result = kyso("hsm", "keys", KYSO_HSM_TOKEN_LABEL="no-such-token")
    line = _assert_one_line_error(result, "hsm.unavailable")
    assert "no-such-token" in line


def test_invalid_setting_is_one_line(kyso: Kyso):
    result = kyso("hsm", "keys", KYSO_HSM_POOL_SIZE="0")
    line = _assert_one_line_error(result, "kyso.settings")
    assert "hsm_pool_size" in line


# -- serve ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _serve(kyso: Kyso, args: list[str], env: dict[str, str], port: int) -> tuple[Any, str]:
    """Start ``kyso serve``, wait for /readyz 200, stop it with SIGTERM; (readyz, log)."""
    stderr_path = kyso.cwd / f"serve-{port}.stderr"
    with stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [KYSO, "serve", *args],
            env=kyso.env | env,
            cwd=kyso.cwd,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            body = _wait_ready(process, f"http://127.0.0.1:{port}/readyz", stderr_path)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=15)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    log = stderr_path.read_text()
    # uvicorn shuts down gracefully, then re-raises the signal so supervisors see it.
    assert returncode in (0, -signal.SIGTERM), log
    assert "Traceback" not in log
    messages = [json.loads(line)["message"] for line in log.splitlines()]
    assert "Application shutdown complete." in messages
    return body, log


def test_serve(kyso: Kyso, database_url: str):
    port = _free_port()
    # The option wins over KYSO_PORT.
    body, log = _serve(
        kyso, ["--port", str(port)], {"KYSO_DATABASE_URL": database_url, "KYSO_PORT": "1"}, port
    )
    assert body["status"] == "ready"
    assert body["checks"]["hsm"]["ok"] is True
    assert body["checks"]["database"]["ok"] is True
    entries = [json.loads(line) for line in log.splitlines()]
    access = [e for e in entries if e["logger"] == "kyso.access"]
    assert any(e["path"] == "/readyz" and e["status"] == 200 and e["request_id"] for e in access)
    started = next(e for e in entries if e["message"] == "Kyso started")
    assert started["database"] == db.describe_url(database_url)
    assert started["version"] == __version__


def test_serve_port_from_env(kyso: Kyso):
    port = _free_port()
    body, _ = _serve(kyso, [], {"KYSO_PORT": str(port)}, port)
    assert body["status"] == "ready"


def _wait_ready(process: subprocess.Popen[bytes], url: str, stderr: Path) -> Any:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"kyso serve exited with {process.returncode}: {stderr.read_text()}")
        try:
            response = httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        if response.status_code == 200:
            return response.json()
        time.sleep(0.1)
    pytest.fail(f"kyso serve not ready within 30 s: {stderr.read_text()}")
