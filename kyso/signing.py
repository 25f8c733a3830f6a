"""Signing in the running service: one signing service over the HSM pool and Kyso's own
PKI (TSA and OCSP called in process), the Decree-30 stamps, and the document registry."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from hsm import BlockingSessionPool
from kyso.pki_service import PkiServices
from kyso.settings import Settings
from pki.tsa import TimestampResult
from signer.blobs import FilesystemBlobStore
from signer.documents import DocumentRegistry
from signer.images import StampImages
from signer.issuing import DecreeSigning
from signer.service import SigningService
from signer.timestamps import TsaTimestamper, http_tsa

SIGNATURES_HEADROOM = 32 * 1024 * 1024
"""What the signatures of an issued document may add to its draft (two stamps with images of
up to 2 MiB as PNG, CMS, DSS), in bytes."""


@dataclass(frozen=True, kw_only=True)
class SigningServices:
    """What the signing endpoints and commands use."""

    service: SigningService
    """PAdES signing with any credential (one-shot signing, batches)."""
    registry: DocumentRegistry
    """Documents and their officer → seal → issue workflow."""
    images: StampImages
    """Officers' signature images and units' seal images."""
    settings: Settings


def make_signing(
    settings: Settings, engine: Engine, pool: BlockingSessionPool, pki: PkiServices
) -> SigningServices:
    """Built at start-up; nothing here touches the token or the CA until first used, so the
    service starts before ``kyso init`` has made the hierarchy."""

    def own_tsa(request: bytes) -> TimestampResult:
        return pki.tsa().respond(request)

    respond = (
        own_tsa
        if settings.tsa_url is None
        else http_tsa(settings.tsa_url, timeout=settings.tsa_timeout)
    )

    # signing_max_bytes bounds what comes in; each signature then adds its CMS, its stamp
    # images and its validation data, so the officer-signed and sealed revisions are larger.
    revision_max = settings.signing_max_bytes + SIGNATURES_HEADROOM
    blobs = FilesystemBlobStore(settings.blob_path, max_size=revision_max)
    service = SigningService(
        authority=pki.authority,
        pool=pool,
        timestamper=TsaTimestamper(respond=respond),
        max_size=revision_max,
        rsa_pss=settings.signing_rsa_pss,
        own_tsa=settings.tsa_url is None,
    )
    images = StampImages(engine=engine, blobs=blobs)
    registry = DocumentRegistry(
        engine=engine,
        blobs=blobs,
        signing=DecreeSigning(
            service=service,
            authority=pki.authority,
            images=images,
            level=settings.signing_level,
        ),
        authority=pki.authority,
        public_url=settings.base_url,
        max_size=settings.signing_max_bytes,
        max_pages=settings.signing_max_pages,
    )
    return SigningServices(service=service, registry=registry, images=images, settings=settings)
