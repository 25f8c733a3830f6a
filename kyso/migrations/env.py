"""Alembic environment: the engine is handed in by :func:`kyso.db.upgrade`."""

from __future__ import annotations

from alembic import context

from audit.store import metadata as audit_metadata
from kyso.tables import metadata as kyso_metadata
from pki.store import metadata as pki_metadata
from signer.store import metadata as signer_metadata

engine = context.config.attributes["engine"]

with engine.begin() as connection:
    context.configure(
        connection=connection,
        target_metadata=[kyso_metadata, audit_metadata, pki_metadata, signer_metadata],
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()
