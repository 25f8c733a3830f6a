"""The audit log inside the running service: its signer, and the sequencer and
checkpoint loops.

Every service process runs both loops. On PostgreSQL only the holder of the advisory
lock sequences at a time, so the others' passes are no-ops until it dies; checkpoints are
only signed for a tree that grew, and always checked for consistency first.

The checkpoint key may be missing when the service starts (``kyso init`` not run yet) or
the HSM may not answer then; the checkpoint loop then looks for the key at every interval
and starts signing as soon as it is there, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine

from audit import AuditError
from audit.events import Action, Actor, AuditEvent, Outcome, Subject
from audit.log import AuditLog
from hsm import BlockingSessionPool, HsmError, KeyInfo, SessionPool
from kyso.audit_signer import HsmNoteSigner, find_audit_key
from kyso.errors import KysoError
from kyso.settings import Settings

log = logging.getLogger("kyso.audit")

SYSTEM = Actor(id="kyso", role="system")
"""The actor of events the service records on its own behalf (set-up, key generation)."""


def open_audit_log(
    settings: Settings, engine: Engine, pool: BlockingSessionPool, keys: list[KeyInfo] | None
) -> tuple[AuditLog, str | None]:
    """The log, with the HSM signer when ``keys`` (the token's, as the caller listed them)
    hold the audit key (``kyso init`` creates it), and the signer's verifier key. ``keys``
    is None when the token could not be listed."""
    signer = None
    key = None if keys is None else find_audit_key(keys)
    if keys is None:
        log.error("the HSM did not list its keys; checkpoints are off until the audit key is found")
    elif key is None:
        log.error(
            "no audit checkpoint key on the token; run 'kyso init'. "
            "Checkpoints are off until it is found."
        )
    else:
        signer = HsmNoteSigner(pool, key, settings.audit_origin)
    audit = AuditLog(engine=engine, origin=settings.audit_origin, signer=signer)
    return audit, signer.vkey() if signer else None


async def adopt_audit_key(
    audit: AuditLog, settings: Settings, pool: SessionPool, show_vkey: Callable[[str], None]
) -> bool:
    """True when ``audit`` can sign checkpoints: it had a signer, or the audit key is on the
    token now and becomes its signer (its verifier key goes to ``show_vkey``). An HSM error
    is logged and the answer is False: the caller asks again later."""
    if audit.signer is not None:
        return True
    try:
        key = find_audit_key(await pool.list_keys())
        signer = None if key is None else HsmNoteSigner(pool.blocking, key, settings.audit_origin)
    except (HsmError, KysoError, AuditError) as ex:
        # HSM messages never carry a PIN (hsm.errors); the code says what to fix.
        log.error(
            "looking for the audit checkpoint key failed; trying again at the next checkpoint: %s",
            ex.message,
            extra={"code": ex.code},
        )
        return False
    if signer is None:
        log.debug("no audit checkpoint key on the token yet")
        return False
    audit.set_signer(signer)
    show_vkey(signer.vkey())
    log.info(
        "audit checkpoint key found; checkpoints are on",
        extra={"key_id": signer.key.key_id.hex()},
    )
    return True


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
            await asyncio.to_thread(audit.sequence)
        except AuditError as ex:
            log.error("audit sequencing failed: %s", ex.message, extra={"code": ex.code})
        await asyncio.sleep(interval)


async def checkpoint_forever(
    audit: AuditLog, interval: float, can_sign: Callable[[], Awaitable[bool]] | None = None
) -> None:
    """Publishes a checkpoint every ``interval`` seconds; when ``can_sign`` (e.g. a partial
    :func:`adopt_audit_key`) is given, only once it says the log has its signer."""
    while True:
        await asyncio.sleep(interval)
        if can_sign is None or await can_sign():
            await publish(audit)


async def publish(audit: AuditLog) -> None:
    try:
        note = await asyncio.to_thread(audit.publish_checkpoint)
    except (AuditError, HsmError) as ex:
        log.error("audit checkpoint failed: %s", ex.message, extra={"code": ex.code})
        return
    if note is not None:
        log.info("audit checkpoint published", extra={"size": int(note.split("\n")[1])})
