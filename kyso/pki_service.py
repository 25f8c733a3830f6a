"""The PKI inside the composition root: the Authority built from settings, the trust
store, and the per-process caches in front of OCSP and the CA certificates."""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from audit.events import Actor
from hsm import BlockingSessionPool, HsmError, KeySpec
from kyso.settings import Settings
from pki.authority import CA_NAMES, Authority, AuthorityConfig
from pki.errors import NotFoundError, PkiError
from pki.ocsp import OcspResponder, OcspResult
from pki.store import CredentialKind
from pki.truststore import ANCHORS, INTERMEDIATES, TrustEntry, TrustStoreHolder
from pki.tsa import TimeStampAuthority

log = logging.getLogger("kyso.pki")

CA_BY_NAME = {name: kind for kind, name in CA_NAMES.items()}
"""The CAs by their URL name (root, issuing)."""

OCSP_CACHE_MAX = 10_000
"""Most cached OCSP responses per process (least recently stored are dropped first)."""


async def watch_expiry(authority: Authority, within: timedelta, interval: float = 3600) -> None:
    """Keep ``kyso_pki_certificates_expiring`` current (credentials ending within ``within``)."""
    while True:
        try:
            await asyncio.to_thread(authority.update_expiry_metric, within)
        except (PkiError, HsmError, SQLAlchemyError) as ex:
            log.warning("expiry check failed: %s", ex)
        await asyncio.sleep(interval)


def make_authority(settings: Settings, engine: Engine, pool: BlockingSessionPool) -> Authority:
    return Authority(
        engine=engine,
        pool=pool,
        config=AuthorityConfig(
            public_url=settings.base_url,
            organisation=settings.pki_organisation,
            key_spec=KeySpec(settings.pki_key_spec),
            officer_validity=timedelta(days=settings.pki_officer_validity_days),
            seal_validity=timedelta(days=settings.pki_seal_validity_days),
            crl_validity=timedelta(hours=settings.pki_crl_validity_hours),
            ocsp_validity=timedelta(minutes=settings.pki_ocsp_validity_minutes),
        ),
    )


def open_trust_store(settings: Settings, authority: Authority) -> TrustStoreHolder:
    """The trust store folder (created empty when missing), with Kyso's own root as an extra
    anchor once ``kyso init`` has created it."""
    for part in (ANCHORS, INTERMEDIATES):
        (settings.trust_path / part).mkdir(parents=True, exist_ok=True)
    try:
        roots = [authority.ca_certificate(CredentialKind.ROOT_CA)]
    except NotFoundError:
        roots = []
    return TrustStoreHolder(settings.trust_path, extra_anchors=roots)


def add_trust_anchor(
    holder: TrustStoreHolder,
    authority: Authority,
    data: bytes,
    *,
    name: str,
    intermediate: bool,
    actor: Actor,
) -> TrustEntry:
    """Trust one more external CA, and audit it (the trust store is files, not rows)."""
    entry = holder.add_anchor(data, name=name, allow_intermediate=intermediate)
    authority.record_change(
        actor,
        "trust.anchor_added",
        fingerprint=entry.fingerprint,
        subject=entry.subject[:200],
        intermediate=intermediate,
    )
    return entry


class PkiServices:
    """OCSP with a response cache, and the TSA, for the HTTP routes of one process.

    An OCSP response without a nonce is cached until its nextUpdate or until any certificate
    status changes (the database's status generation moves), whichever comes first. The
    generation is read once per request: one indexed single-row read instead of a signature.
    """

    def __init__(self, authority: Authority, settings: Settings) -> None:
        self.authority = authority
        self._settings = settings
        self._trust: TrustStoreHolder | None = None
        self._lock = threading.Lock()
        self._responder: OcspResponder | None = None
        self._tsa: TimeStampAuthority | None = None
        self._cache: dict[bytes, tuple[int, OcspResult]] = {}
        self._ca_der: dict[CredentialKind, bytes] = {}

    def ca_certificate(self, kind: CredentialKind) -> bytes:
        """A CA certificate (DER), read once: a CA certificate never changes in place."""
        with self._lock:
            der = self._ca_der.get(kind)
        if der is None:
            der = self.authority.ca_certificate(kind).dump()
            with self._lock:
                self._ca_der[kind] = der
        return der

    def _ocsp(self) -> OcspResponder:
        with self._lock:
            if self._responder is None:
                self._responder = self.authority.ocsp_responder()
            return self._responder

    def trust(self) -> TrustStoreHolder:
        """The trust store, opened on first use (after ``kyso init`` made the root) and
        re-read on every later use, so that anchors another process added count: its
        callers (import, listing, adding an anchor) are rare administrative acts."""
        with self._lock:
            if self._trust is None:
                self._trust = open_trust_store(self._settings, self.authority)
                return self._trust
            holder = self._trust
        holder.reload()
        return holder

    def tsa(self) -> TimeStampAuthority:
        with self._lock:
            if self._tsa is None:
                self._tsa = self.authority.timestamp_authority()
            return self._tsa

    def ocsp(self, request: bytes) -> bytes:
        generation = self.authority.status_generation()
        now = datetime.now(UTC)
        with self._lock:
            cached = self._cache.get(request)
        if cached is not None:
            seen, result = cached
            if seen == generation and result.cache_until is not None and now < result.cache_until:
                return result.der
        result = self._ocsp().respond(request, now=now)
        if result.cache_until is not None:
            with self._lock:
                if len(self._cache) >= OCSP_CACHE_MAX:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[request] = (generation, result)
        return result.der
