"""The embedded-token provisioning script, run as `make run` runs it."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "softhsm" / "provision.py"


def provision(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SOFTHSM2_CONF"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_provision_creates_then_reuses_the_token(tmp_path: Path) -> None:
    first = provision(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "created" in first.stdout

    secrets_dir = tmp_path / "secrets"
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    values = {}
    for name in ("token-label", "so-pin", "user-pin"):
        path = secrets_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        values[name] = path.read_text().strip()
    assert values["token-label"].startswith("kyso-")
    assert len(values["user-pin"]) >= 24
    assert values["user-pin"] != values["so-pin"]
    for secret in ("so-pin", "user-pin"):
        assert values[secret] not in first.stdout + first.stderr

    conf = (tmp_path / "softhsm" / "softhsm2.conf").read_text()
    assert f"directories.tokendir = {tmp_path / 'softhsm' / 'tokens'}" in conf

    second = provision(tmp_path)
    assert second.returncode == 0, second.stderr
    assert "present" in second.stdout
    assert values["token-label"] in second.stdout
    assert (secrets_dir / "user-pin").read_text().strip() == values["user-pin"]


def test_provision_refuses_a_user_pin_the_token_rejects(tmp_path: Path) -> None:
    assert provision(tmp_path).returncode == 0
    (tmp_path / "secrets" / "user-pin").write_text("not-the-pin\n")
    result = provision(tmp_path)
    assert result.returncode == 1
    assert "hsm.pin_incorrect" in result.stderr
    assert "not-the-pin" not in result.stderr
    assert "Traceback" not in result.stderr


def test_provision_recreates_a_lost_token_from_the_kept_secrets(tmp_path: Path) -> None:
    assert provision(tmp_path).returncode == 0
    label = (tmp_path / "secrets" / "token-label").read_text().strip()
    for child in (tmp_path / "softhsm" / "tokens").iterdir():
        for f in child.iterdir():
            f.unlink()
        child.rmdir()
    result = provision(tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created" in result.stdout
    assert label in result.stdout
