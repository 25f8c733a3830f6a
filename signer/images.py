"""The images drawn in visible signatures: each officer's handwritten signature and each
unit's red seal, as PNG blobs, one current image per owner.

An image is checked (:func:`signer.stamps.load_png`: PNG only, bounded bytes and pixels)
before it is stored; replacing one is a security-relevant change and is audited.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from audit.events import Action, Actor
from audit.log import AuditLog
from signer.blobs import BlobStore
from signer.stamps import load_png
from signer.store import StampImageKind, stamp_images


class StampImages:
    """Officers' signature images and units' seal images. Thread-safe; blocking."""

    def __init__(self, *, engine: Engine, blobs: BlobStore) -> None:
        self._engine = engine
        self._blobs = blobs

    def set(self, kind: StampImageKind, owner_id: int, png: bytes, actor: Actor) -> str:
        """Store ``png`` as the current image of ``owner_id`` (a person for
        :attr:`~StampImageKind.OFFICER`, a unit for :attr:`~StampImageKind.SEAL`); returns
        its SHA-256. Raises :class:`~signer.errors.BadImageError` for a bad PNG."""
        load_png(png)
        sha256 = self._blobs.put(png)
        now = datetime.now(UTC)
        with self._engine.begin() as connection:
            key = (stamp_images.c.kind == kind.value) & (stamp_images.c.owner_id == owner_id)
            connection.execute(delete(stamp_images).where(key))
            connection.execute(
                insert(stamp_images).values(
                    kind=kind.value, owner_id=owner_id, sha256=sha256, updated_at=now
                )
            )
            AuditLog.append_event(
                connection,
                Action.CONFIGURATION_CHANGED,
                actor,
                {"change": f"stamp_image.{kind.value}", "owner_id": owner_id, "sha256": sha256},
                time=now,
            )
        return sha256

    def get(self, kind: StampImageKind, owner_id: int) -> bytes | None:
        """The current image, or ``None`` when there is none (stamps draw a placeholder)."""
        with self._engine.connect() as connection:
            sha256 = connection.execute(
                select(stamp_images.c.sha256).where(
                    stamp_images.c.kind == kind.value, stamp_images.c.owner_id == owner_id
                )
            ).scalar_one_or_none()
        return None if sha256 is None else self._blobs.get(sha256)
