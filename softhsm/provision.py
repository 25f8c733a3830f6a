"""Provision Kyso's embedded SoftHSM2 token (idempotent).

    .venv/bin/python softhsm/provision.py [--data-dir var]

Creates ``<data_dir>/softhsm/softhsm2.conf`` from the template next to this script and
the token directory; on first run generates the token label, SO PIN and user PIN into
``<data_dir>/secrets/`` (mode 0600, directory 0700); initialises the token through
PKCS#11 so that no PIN appears on a command line. Later runs reuse all of it and only
check that the token still accepts the stored user PIN.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

TEMPLATE = Path(__file__).with_name("softhsm2.conf.template")


def _secret(directory: Path, name: str, make: str) -> str:
    path = directory / name
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="utf-8").strip()
        if not value:
            sys.exit(f"provision: {path} is empty; remove it to generate a new one")
        return value
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(make + "\n")
    return make


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("KYSO_DATA_DIR", "var"))
    args = parser.parse_args()
    data_dir = Path(args.data_dir).resolve()
    token_dir = data_dir / "softhsm" / "tokens"
    secrets_dir = data_dir / "secrets"
    for directory in (token_dir, secrets_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)

    conf = data_dir / "softhsm" / "softhsm2.conf"
    text = TEMPLATE.read_text(encoding="utf-8").replace("@TOKENDIR@", str(token_dir))
    if not conf.is_file() or conf.read_text(encoding="utf-8") != text:
        conf.write_text(text, encoding="utf-8")
    os.environ["SOFTHSM2_CONF"] = str(conf)

    label = _secret(secrets_dir, "token-label", f"kyso-{secrets.token_hex(4)}")
    so_pin = _secret(secrets_dir, "so-pin", secrets.token_urlsafe(24))
    user_pin = _secret(secrets_dir, "user-pin", secrets.token_urlsafe(24))

    # Imported late: SOFTHSM2_CONF must be set before the module is loaded.
    from hsm import HsmError
    from hsm.provision import provision_token

    try:
        token, created = provision_token(label=label, so_pin=so_pin, user_pin=user_pin)
    except HsmError as ex:
        print(f"provision: {ex.diagnostics()}", file=sys.stderr)
        return 1
    state = "created" if created else "present"
    print(f"softhsm: token {token.label!r} {state} (serial {token.serial}) in {token_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
