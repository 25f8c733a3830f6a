"""Administration of units, people and credentials: ``/api/v1/``, the same operations as the
``kyso unit``, ``kyso officer`` and ``kyso pki`` commands.

Admin-only once access control exists; until then it answers this machine only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kyso.access.activation import ActivationPolicy, SignatureActivation
from kyso.access.matrix import visible_units
from kyso.pki_service import CA_BY_NAME, add_trust_anchor
from kyso.routers.authorise import ActorDep
from kyso.routers.health import RuntimeDep
from kyso.routers.pki import CaName, PkiDep, PkiUnavailableError
from pki.authority import Credential
from pki.certificates import to_pem
from pki.crl import RevocationReason
from pki.errors import NotFoundError
from pki.store import PersonRole, UnitKind

AdminDep = ActorDep
Id = Annotated[int, Path(ge=1, le=2**62)]
router = APIRouter(prefix="/api/v1", tags=["administration"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewUnit(_Body):
    kind: UnitKind
    code: str = Field(min_length=1, max_length=32)
    name: str = Field(min_length=1, max_length=200)
    province: str = Field(min_length=1, max_length=128)
    locality: str = Field(min_length=1, max_length=128)
    parent_id: int | None = Field(None, ge=1, le=2**62)


class NewPerson(_Body):
    unit_id: int = Field(ge=1, le=2**62)
    role: PersonRole = PersonRole.OFFICER
    full_name: str = Field(min_length=1, max_length=64)
    position: str = Field(min_length=1, max_length=128)
    cccd: str = Field(min_length=12, max_length=12)
    email: str = Field(min_length=3, max_length=254)


class Renewal(_Body):
    rekey: bool = False


class CertificateImport(_Body):
    pem: str = Field(min_length=1, max_length=1024 * 1024, description="Certificate, then chain.")


class NewAnchor(_Body):
    pem: str = Field(min_length=1, max_length=64 * 1024)
    name: str = Field(min_length=1, max_length=64)
    intermediate: bool = False


class Revocation(_Body):
    reason: RevocationReason = RevocationReason.UNSPECIFIED


MAX_PIN_INPUT = 256
"""Longest PIN field accepted before the PIN policy (6 to 32 characters) judges it."""


class NewPin(_Body):
    pin: SecretStr = Field(
        min_length=1,
        max_length=MAX_PIN_INPUT,
        description="The signing PIN: 6 to 32 printable ASCII characters without spaces.",
    )


class PinUnlock(_Body):
    new_pin: SecretStr | None = Field(
        None,
        min_length=1,
        max_length=MAX_PIN_INPUT,
        description="Also replace the PIN (for an officer who forgot it).",
    )


@router.get("/units", summary="List units")
async def list_units(request: Request, pki: PkiDep, _admin: AdminDep) -> list[dict[str, Any]]:
    units = await run_in_threadpool(pki.authority.units)
    seen = await run_in_threadpool(visible_units, request.state.principal, units)
    return [u.as_dict() for u in units if seen is None or u.id in seen]


@router.post("/units", status_code=201, summary="Add a unit")
async def add_unit(body: NewUnit, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    unit = await run_in_threadpool(lambda: pki.authority.add_unit(**body.model_dump(), actor=admin))
    return unit.as_dict()


@router.post("/units/{unit_id}/seal", status_code=201, summary="Create the unit's seal credential")
async def enroll_seal(unit_id: Id, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    return (await run_in_threadpool(pki.authority.enroll_seal, unit_id, admin)).as_dict()


@router.get("/people", summary="List officers and clerks")
async def list_people(
    request: Request,
    pki: PkiDep,
    _admin: AdminDep,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> list[dict[str, Any]]:
    people = await run_in_threadpool(lambda: pki.authority.people(unit_id=unit_id))
    units = await run_in_threadpool(pki.authority.units)
    seen = await run_in_threadpool(visible_units, request.state.principal, units)
    return [p.as_dict() for p in people if seen is None or p.unit_id in seen]


@router.post("/people", status_code=201, summary="Register an officer or clerk")
async def add_person(body: NewPerson, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    person = await run_in_threadpool(
        lambda: pki.authority.add_person(**body.model_dump(), actor=admin)
    )
    return person.as_dict()


@router.get("/people/{person_id}", summary="A person and their credentials")
async def show_person(person_id: Id, pki: PkiDep, _admin: AdminDep) -> dict[str, Any]:
    person = await run_in_threadpool(pki.authority.person, person_id)
    credentials = await run_in_threadpool(lambda: pki.authority.credentials(person_id=person_id))
    return person.as_dict() | {"credentials": [c.as_dict() for c in credentials]}


@router.post(
    "/people/{person_id}/enroll", status_code=201, summary="Key on the token, certificate by the CA"
)
async def enroll_person(person_id: Id, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    return (await run_in_threadpool(pki.authority.enroll_person, person_id, admin)).as_dict()


@router.get("/credentials/{credential_id}", summary="A credential")
async def show_credential(credential_id: Id, pki: PkiDep, _admin: AdminDep) -> dict[str, Any]:
    return (await run_in_threadpool(pki.authority.credential, credential_id)).as_dict()


@router.get(
    "/credentials/{credential_id}/certificate",
    summary="Certificate and chain (PEM)",
    response_class=Response,
    responses={
        200: {
            "description": "The certificate, then its chain",
            "content": {"application/pem-certificate-chain": {"schema": {"type": "string"}}},
        }
    },
)
async def credential_certificate(credential_id: Id, pki: PkiDep, _admin: AdminDep) -> Response:
    credential = await run_in_threadpool(pki.authority.credential, credential_id)
    if credential.certificate is None:
        raise NotFoundError(f"credential {credential_id} has no certificate yet")
    chain = credential.chain or await run_in_threadpool(pki.authority.internal_chain)
    pem = b"".join(to_pem(c) for c in (credential.certificate, *chain))
    return Response(pem, media_type="application/pem-certificate-chain")


@router.post("/credentials/{credential_id}/suspend", summary="Suspend (certificateHold)")
async def suspend(credential_id: Id, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    return (await run_in_threadpool(pki.authority.suspend, credential_id, admin)).as_dict()


@router.post("/credentials/{credential_id}/resume", summary="Take off hold")
async def resume(credential_id: Id, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    return (await run_in_threadpool(pki.authority.resume, credential_id, admin)).as_dict()


@router.post("/credentials/{credential_id}/revoke", summary="Revoke for good")
async def revoke(
    credential_id: Id, body: Revocation, pki: PkiDep, admin: AdminDep
) -> dict[str, Any]:
    credential = await run_in_threadpool(pki.authority.revoke, credential_id, body.reason, admin)
    return credential.as_dict()


@router.put("/credentials/{credential_id}/pin", summary="Set or change the signing PIN")
async def set_pin(credential_id: Id, body: NewPin, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    credential = await run_in_threadpool(
        pki.authority.set_pin, credential_id, body.pin.get_secret_value(), admin
    )
    return credential.as_dict()


class Activation(_Body):
    policy: ActivationPolicy = Field(description="pin, or pin+otp (the holder's one-time code too)")


class SealClient(_Body):
    client_id: str | None = Field(
        max_length=64, description="The service client that may seal without a PIN; null: none"
    )


def get_activation(runtime: RuntimeDep) -> SignatureActivation:
    if runtime.activation is None:
        raise PkiUnavailableError("signature activation is not available in this process")
    return runtime.activation


ActivationDep = Annotated[SignatureActivation, Depends(get_activation)]


@router.put(
    "/credentials/{credential_id}/activation",
    summary="How the credential is activated for signing (PIN, or PIN and one-time code)",
)
async def set_activation(
    credential_id: Id, body: Activation, activation: ActivationDep, admin: AdminDep
) -> dict[str, Any]:
    await run_in_threadpool(activation.set_policy, credential_id, body.policy, admin)
    policy = await run_in_threadpool(activation.policy, credential_id)
    return {"credential_id": credential_id, "policy": policy.value}


@router.put(
    "/credentials/{credential_id}/client",
    summary="Bind a unit seal to a service client for automated sealing (or unbind it)",
)
async def set_seal_client(
    credential_id: Id, body: SealClient, activation: ActivationDep, admin: AdminDep
) -> dict[str, Any]:
    await run_in_threadpool(activation.bind_client, credential_id, body.client_id, admin)
    return {"credential_id": credential_id, "client_id": body.client_id}


@router.post(
    "/credentials/{credential_id}/pin/unlock",
    summary="Clear a PIN lock and its failure count (optionally with a new PIN)",
)
async def unlock_pin(
    credential_id: Id,
    pki: PkiDep,
    admin: AdminDep,
    body: Annotated[PinUnlock | None, Body()] = None,
) -> dict[str, Any]:
    new_pin = body.new_pin.get_secret_value() if body and body.new_pin else None
    credential = await run_in_threadpool(
        lambda: pki.authority.unlock_pin(credential_id, admin, new_pin=new_pin)
    )
    return credential.as_dict()


@router.post("/pki/crl/{name}", summary="Sign and publish a new CRL now")
async def publish_crl(name: CaName, pki: PkiDep, _admin: AdminDep) -> dict[str, Any]:
    der = await run_in_threadpool(pki.authority.publish_crl, CA_BY_NAME[name])
    return {"ca": name, "bytes": len(der)}


@router.post("/people/{person_id}/csr", status_code=201, summary="Key and CSR for an external CA")
async def person_csr(person_id: Id, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    credential, pem = await run_in_threadpool(
        lambda: pki.authority.request_certificate(person_id=person_id, actor=admin)
    )
    return credential.as_dict() | {"csr_pem": pem.decode("ascii")}


@router.post("/units/{unit_id}/csr", status_code=201, summary="Seal key and CSR for an external CA")
async def unit_csr(unit_id: Id, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    credential, pem = await run_in_threadpool(
        lambda: pki.authority.request_certificate(unit_id=unit_id, actor=admin)
    )
    return credential.as_dict() | {"csr_pem": pem.decode("ascii")}


@router.get("/credentials/{credential_id}/csr", summary="The CSR of a pending credential again")
async def credential_csr(credential_id: Id, pki: PkiDep, _admin: AdminDep) -> dict[str, str]:
    pem = await run_in_threadpool(pki.authority.csr, credential_id)
    return {"csr_pem": pem.decode("ascii")}


@router.post("/credentials/{credential_id}/certificate", summary="Import the external certificate")
async def import_certificate(
    credential_id: Id, body: CertificateImport, pki: PkiDep, admin: AdminDep
) -> dict[str, Any]:
    def run() -> Credential:
        anchors = pki.trust().current.anchors
        return pki.authority.import_certificate(
            credential_id, body.pem.encode("utf-8"), anchors=anchors, actor=admin
        )

    return (await run_in_threadpool(run)).as_dict()


@router.post("/credentials/{credential_id}/renew", status_code=201, summary="Renew or re-key")
async def renew(credential_id: Id, body: Renewal, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    credential = await run_in_threadpool(
        lambda: pki.authority.renew(credential_id, admin, rekey=body.rekey)
    )
    return credential.as_dict()


@router.get("/pki/expiring", summary="Credentials whose certificate ends soon")
async def expiring(
    request: Request,
    pki: PkiDep,
    _admin: AdminDep,
    days: Annotated[int, Query(ge=0, le=3650)] = 30,
) -> list[dict[str, Any]]:
    found = await run_in_threadpool(pki.authority.expiring, timedelta(days=days))
    units = await run_in_threadpool(pki.authority.units)
    seen = await run_in_threadpool(visible_units, request.state.principal, units)
    people = {p.id: p.unit_id for p in await run_in_threadpool(pki.authority.people)}

    def unit_of(c: Credential) -> int | None:
        return c.unit_id if c.unit_id is not None else people.get(c.person_id or 0)

    return [c.as_dict() for c in found if seen is None or unit_of(c) in seen]


@router.get("/pki/trust", summary="The trust store")
async def trust_list(pki: PkiDep, _admin: AdminDep) -> list[dict[str, Any]]:
    entries = await run_in_threadpool(lambda: pki.trust().list())
    return [e.as_dict() for e in entries]


@router.post("/pki/trust", status_code=201, summary="Trust an external root")
async def trust_add(body: NewAnchor, pki: PkiDep, admin: AdminDep) -> dict[str, Any]:
    entry = await run_in_threadpool(
        lambda: add_trust_anchor(
            pki.trust(),
            pki.authority,
            body.pem.encode("utf-8"),
            name=body.name,
            intermediate=body.intermediate,
            actor=admin,
        )
    )
    return entry.as_dict()
