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
from signer.timestamps import TsaTimestamper


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

    def respond(request: bytes) -> TimestampResult:
        return pki.tsa().respond(request)

    blobs = FilesystemBlobStore(settings.blob_path, max_size=settings.signing_max_bytes)
    service = SigningService(
        authority=pki.authority,
        pool=pool,
        timestamper=TsaTimestamper(respond=respond),
        max_size=settings.signing_max_bytes,
        rsa_pss=settings.signing_rsa_pss,
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
