"""Test services: settings for a throwaway token and database, and a Kyso serving on
loopback for the tests that need a real HTTP client (pyHanko's aiohttp-based CSC signer,
schemathesis): the demo set up as ``kyso init --demo`` does it, then uvicorn in a thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn

from hsm import BlockingSessionPool
from kyso import db
from kyso.access.tokens import ensure_token_key
from kyso.app import create_app
from kyso.audit_signer import ensure_audit_key
from kyso.demo import create_demo
from kyso.pki_service import make_authority
from kyso.settings import Settings
from tests.conftest import TestToken
from tests.kyso.test_pki_http import ADMIN
from tests.kyso.test_signing_cli import free_port


def service_settings(token: TestToken, tmp_path: Path, database_url: str, **extra: Any) -> Settings:
    """A test service's settings: its own data folder, database and throwaway token, quick
    audit sequencing, no checkpoint signing during the test."""
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        hsm_token_label=token.label,
        hsm_pin_file=token.pin_file,
        hsm_acquire_timeout=5,
        hsm_retry_interval=0,
        audit_sequence_interval=0.05,
        audit_checkpoint_interval=3600,
        **extra,
    )


def demo_service(
    token: TestToken, tmp_path: Path, database_url: str, **extra: Any
) -> tuple[Settings, Path]:
    """Settings on a free port, and the database and token set up with the demo (its
    demo.json path returned too)."""
    public_url = f"http://127.0.0.1:{free_port()}"
    settings = service_settings(token, tmp_path, database_url, public_url=public_url, **extra)
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        db.upgrade(engine)
        with BlockingSessionPool(settings.hsm_config()) as pool:
            ensure_audit_key(pool)
            ensure_token_key(pool)
            authority = make_authority(settings, engine, pool)
            authority.ensure_hierarchy(ADMIN)
            create_demo(authority, ADMIN, tmp_path / "demo.json")
    finally:
        engine.dispose()
    return settings, tmp_path / "demo.json"


@contextmanager
def serving(settings: Settings) -> Iterator[str]:
    """The service running at its public URL until the block ends."""
    port = int(settings.base_url.rsplit(":", 1)[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the service did not start"
    try:
        yield settings.base_url
    finally:
        server.should_exit = True
        thread.join(15)
