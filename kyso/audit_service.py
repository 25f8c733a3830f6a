"""The audit log inside the running service: its signer, and the sequencer and
checkpoint loops.

Every service process runs both loops. On PostgreSQL only the holder of the advisory
lock sequences at a time, so the others' passes are no-ops until it dies; checkpoints are
only signed for a tree that grew, and always checked for consistency first.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from fastapi.concurrency import run_in_threadpool
from sqlalchemy import Connection, Engine

from audit import AuditError
from audit.events import Action, Actor, AuditEvent, Outcome, Subject
from audit.log import AuditLog
from hsm import BlockingSessionPool, HsmError, KeyInfo
from kyso.audit_signer import HsmNoteSigner, find_audit_key
from kyso.settings import Settings

log = logging.getLogger("kyso.audit")

SYSTEM = Actor(id="kyso", role="system")
"""The actor of events the service records on its own behalf (set-up, key generation)."""


def open_audit_log(
    settings: Settings, engine: Engine, pool: BlockingSessionPool, keys: list[KeyInfo]
) -> tuple[AuditLog, str | None]:
    """The log, with the HSM signer when ``keys`` (the token's, as the caller listed them)
    hold the audit key (``kyso init`` creates it), and the signer's verifier key."""
    signer = None
    key = find_audit_key(keys)
    if key is None:
        log.error("no audit checkpoint key on the token; run 'kyso init'. Checkpoints are off.")
    else:
        signer = HsmNoteSigner(pool, key, settings.audit_origin)
    audit = AuditLog(engine=engine, origin=settings.audit_origin, signer=signer)
    return audit, signer.vkey() if signer else None


def record_key_generated(connection: Connection, key: KeyInfo, *, actor: Actor = SYSTEM) -> int:
    """The audit event of a key generation, in the caller's transaction."""
    return AuditLog.append(
        connection,
        AuditEvent(
            time=datetime.now(UTC),
            action=Action.KEY_GENERATED,
            actor=actor,
            outcome=Outcome(success=True),
            subject=Subject(key_id=key.key_id.hex()),
            details={"label": key.label, "spec": key.spec.value if key.spec else key.key_type},
        ),
    )


async def sequence_forever(audit: AuditLog, interval: float) -> None:
    while True:
        try:
            await run_in_threadpool(audit.sequence)
        except AuditError as ex:
            log.error("audit sequencing failed: %s", ex.message, extra={"code": ex.code})
        await asyncio.sleep(interval)


async def checkpoint_forever(audit: AuditLog, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        await publish(audit)


async def publish(audit: AuditLog) -> None:
    try:
        note = await run_in_threadpool(audit.publish_checkpoint)
    except (AuditError, HsmError) as ex:
        log.error("audit checkpoint failed: %s", ex.message, extra={"code": ex.code})
        return
    if note is not None:
        log.info("audit checkpoint published", extra={"size": int(note.split("\n")[1])})
