"""The signatures of an issued document, as Decree 30/2020 (Phụ lục I) draws them.

:class:`DecreeSigning` is what the document registry calls (its
:class:`~signer.documents.DocumentSigning`): the competent officer signs first, visibly
(the officer's signature image, a placeholder without one) and certifies the document with
DocMDP P=2, reserving the seal's field; the clerk then fills that field with the unit's
seal over the left third of the officer's signature, the agency name, the number and the
time of issue, and the QR link to the public verification page.
"""

from __future__ import annotations

from datetime import datetime

from pki.authority import Authority
from signer.errors import UnsupportedCredentialError
from signer.images import StampImages
from signer.pades import Level
from signer.placement import AnchorPlacement, Document, FieldPlacement, Placement, RectPlacement
from signer.service import SigningService
from signer.stamps import officer_signature, seal_signature
from signer.store import StampImageKind

OFFICER_FIELD = "CanBoKy"
"""Signature field of the competent officer (the one a template may provide, empty)."""

SEAL_FIELD = "CoQuanKy"
"""Signature field of the agency seal, reserved by the officer's certification."""


class DecreeSigning:
    """Officer and seal signatures with their stamps, at the service's PAdES level."""

    def __init__(
        self,
        *,
        service: SigningService,
        authority: Authority,
        images: StampImages,
        level: Level,
    ) -> None:
        self._service = service
        self._authority = authority
        self._images = images
        self._level = level

    def officer(
        self, pdf: bytes, credential_id: int, *, placement: object | None, document_id: str
    ) -> bytes:
        """The officer's certifying signature. Without a ``placement``: the template's empty
        :data:`OFFICER_FIELD` if the PDF has one, else below the officer's position title
        (e.g. "TRƯỞNG CÔNG AN PHƯỜNG") found on the page."""
        credential = self._service.credential(credential_id, level=self._level)
        if credential.person_id is None:
            raise UnsupportedCredentialError(
                f"credential {credential_id} is not an officer's", code="signer.wrong_credential"
            )
        person = self._authority.person(credential.person_id)
        chosen = placement if placement is not None else default_placement(pdf, person.position)
        if not isinstance(chosen, FieldPlacement | RectPlacement | AnchorPlacement):
            raise TypeError("placement must be a signer.placement placement")
        appearance = officer_signature(
            pdf,
            chosen,
            signature_png=self._images.get(StampImageKind.OFFICER, person.id),
            officer_name=person.full_name,
            field_name=chosen.name if isinstance(chosen, FieldPlacement) else OFFICER_FIELD,
            reserve_seal_field=SEAL_FIELD,
        )
        return self._service.sign(
            pdf,
            credential_id,
            level=self._level,
            appearance=appearance,
            certify=True,
            reason=f"Ký ban hành văn bản {document_id}",
        )

    def seal(
        self,
        pdf: bytes,
        credential_id: int,
        *,
        number: str,
        issued_at: datetime,
        verify_url: str,
    ) -> bytes:
        credential = self._service.credential(credential_id, level=self._level)
        if credential.unit_id is None or credential.person_id is not None:
            raise UnsupportedCredentialError(
                f"credential {credential_id} is not a unit's seal", code="signer.wrong_credential"
            )
        unit = self._authority.unit(credential.unit_id)
        appearance = seal_signature(
            pdf,
            officer_field=OFFICER_FIELD,
            seal_png=self._images.get(StampImageKind.SEAL, unit.id),
            agency_name=unit.name,
            signed_at=issued_at,
            verify_url=verify_url,
            field_name=SEAL_FIELD,
            number=number.removeprefix("Số: "),
        )
        return self._service.sign(
            pdf, credential_id, level=self._level, appearance=appearance, reason="Đóng dấu"
        )


def default_placement(pdf: bytes, position: str) -> Placement:
    """Where the officer signs without a placement: the template's empty
    :data:`OFFICER_FIELD` if the PDF has one, else below the officer's position title
    (e.g. "TRƯỞNG CÔNG AN PHƯỜNG")."""
    if Document(pdf).has_field(OFFICER_FIELD):
        return FieldPlacement(name=OFFICER_FIELD)
    return AnchorPlacement(text=position.upper())
