"""What every benchmark sets up: a throwaway SoftHSM2 directory and token, and an officer
enrolled under a throwaway CA hierarchy.

``hsm`` reads ``SOFTHSM2_CONF`` when the PKCS#11 module is loaded, so nothing here imports
it (or anything that does) at module level.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from audit.events import Actor
    from pki.authority import Authority, Credential


def throwaway_softhsm() -> Path:
    """A fresh SoftHSM2 token directory, made the one ``SOFTHSM2_CONF`` points at."""
    root = Path(tempfile.mkdtemp(prefix="kyso-bench-softhsm-"))
    (root / "tokens").mkdir(mode=0o700)
    (root / "softhsm2.conf").write_text(
        f"directories.tokendir = {root / 'tokens'}\n"
        "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    os.environ["SOFTHSM2_CONF"] = str(root / "softhsm2.conf")
    return root


def softhsm_version() -> str:
    try:
        out = subprocess.run(
            ["softhsm2-util", "--version"], capture_output=True, text=True, timeout=5, check=False
        )
    except OSError:
        return "unknown"
    return out.stdout.strip() or "unknown"


def new_token(root: Path) -> tuple[str, Path]:
    """A new token with random PINs; returns its label and a 0600 file with the user PIN."""
    from hsm.provision import provision_token

    label = f"bench-{secrets.token_hex(4)}"
    user_pin = secrets.token_hex(8)
    provision_token(label=label, so_pin=secrets.token_hex(8), user_pin=user_pin)
    pin_file = root / f"{label}.pin"
    pin_file.write_text(user_pin + "\n")
    pin_file.chmod(0o600)
    return label, pin_file


def enroll_officer(authority: Authority, actor: Actor) -> Credential:
    """The CA hierarchy, a ministry → province → commune, and one enrolled officer."""
    from pki.store import PersonRole, UnitKind

    authority.ensure_hierarchy(actor)
    ministry = authority.add_unit(
        kind=UnitKind.MINISTRY, code="BCA", name="Bộ Công an", province="Hà Nội",
        locality="Hà Nội", parent_id=None, actor=actor,
    )  # fmt: skip
    province = authority.add_unit(
        kind=UnitKind.PROVINCE, code="CAT-HCM", name="Công an Thành phố Hồ Chí Minh",
        province="Thành phố Hồ Chí Minh", locality="Thành phố Hồ Chí Minh",
        parent_id=ministry.id, actor=actor,
    )  # fmt: skip
    commune = authority.add_unit(
        kind=UnitKind.COMMUNE, code="CAP-BT", name="Công an phường Bến Thành",
        province="Thành phố Hồ Chí Minh", locality="Phường Bến Thành",
        parent_id=province.id, actor=actor,
    )  # fmt: skip
    person = authority.add_person(
        unit_id=commune.id, role=PersonRole.OFFICER, full_name="Nguyễn Văn Ánh",
        position="Trưởng Công an phường", cccd="079085001234",
        email="anh.nv@btn.hcm.bench.kyso.vn", actor=actor,
    )  # fmt: skip
    officer = authority.enroll_person(person.id, actor)
    assert officer.certificate is not None
    return officer
