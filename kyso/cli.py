"""The ``kyso`` command line.

Errors print a one-line diagnosis and exit 1; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import Engine, insert
from sqlalchemy.exc import SQLAlchemyError

from audit import AuditError, merkle
from audit.events import Actor
from audit.log import AuditLog
from audit.note import NoteVerifier
from audit.verify import VerificationReport, export, verify_export
from hsm import (
    BlockingSessionPool,
    HashAlg,
    HsmError,
    KeyInfo,
    KeySpec,
    SignScheme,
    default_scheme,
)
from kyso import __version__, db
from kyso.audit_service import open_audit_log, record_key_generated
from kyso.audit_signer import HsmNoteSigner, ensure_audit_key
from kyso.demo import create_demo
from kyso.errors import KysoError
from kyso.pki_service import CA_BY_NAME, add_trust_anchor, make_authority, open_trust_store
from kyso.runtime import report_key_problems
from kyso.settings import Settings, load_settings
from kyso.tables import hsm_keys
from pki.authority import Authority, Credential, Person, Unit
from pki.certificates import to_pem
from pki.crl import RevocationReason
from pki.errors import PkiError
from pki.store import CredentialKind, PersonRole, UnitKind

app = typer.Typer(
    help="Kyso (ký số): HSM-backed signing, PKI, verification and audit core.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
hsm_app = typer.Typer(help="PKCS#11 token: information, keys, self-test.", no_args_is_help=True)
app.add_typer(db_app, name="db")
audit_app = typer.Typer(help="The audit log: export, verify, tail, proofs.", no_args_is_help=True)
app.add_typer(hsm_app, name="hsm")
app.add_typer(audit_app, name="audit")
unit_app = typer.Typer(help="Units: ministry, province and commune police.", no_args_is_help=True)
officer_app = typer.Typer(
    help="Officers and clerks, and their signing credentials.", no_args_is_help=True
)
pki_app = typer.Typer(help="The certificate authority: root, CRLs, trust.", no_args_is_help=True)
app.add_typer(unit_app, name="unit")
app.add_typer(officer_app, name="officer")
app.add_typer(pki_app, name="pki")

T = TypeVar("T")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


class _State:
    debug = False
    settings: Settings | None = None


state = _State()


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    state.debug = debug


def settings() -> Settings:
    if state.settings is None:
        state.settings = load_settings()
        state.settings.apply_softhsm_conf()
    return state.settings


@contextmanager
def open_pool() -> Iterator[BlockingSessionPool]:
    with BlockingSessionPool(settings().hsm_config()) as pool:
        yield pool


def echo_json(value: Any) -> None:
    typer.echo(json.dumps(value, ensure_ascii=False, indent=2))


@app.command()
def version() -> None:
    """Print the Kyso version."""
    typer.echo(__version__)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address (KYSO_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port (KYSO_PORT).")] = None,
) -> None:
    """Run the HTTP service."""
    import uvicorn

    from kyso.app import create_app

    current = settings()
    uvicorn.run(
        create_app(current),
        host=host or current.host,
        port=port or current.port,
        log_config=None,
        proxy_headers=False,
    )


@app.command()
def init(
    demo: Annotated[
        bool, typer.Option("--demo", help="Also create the demo units, people and credentials.")
    ] = False,
) -> None:
    """Idempotent set-up: migrate the database, create the audit key and the CA hierarchy
    (root, issuing CA, OCSP responder, TSA), audit the token's keys."""
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.upgrade(engine)
        typer.echo(
            f"database: {db.describe_url(current.sqlalchemy_url)} at revision "
            f"{db.current_revision(engine)}"
        )
        with open_pool() as pool:
            token = pool.token_info()
            typer.echo(f"token: {token.label!r} serial {token.serial} ({token.model})")
            audit_key, created = ensure_audit_key(pool)
            if created:
                record_key(engine, token.serial, audit_key)
            signer = HsmNoteSigner(pool, audit_key, current.audit_origin)
            state = "created" if created else "present"
            assert audit_key.spec is not None
            typer.echo(
                f"audit key: {audit_key.key_id.hex()} ({audit_key.spec.value}) {state}; "
                f"verifier key: {signer.vkey()}"
            )
            authority = make_authority(current, engine, pool)
            created_kinds = authority.ensure_hierarchy(cli_actor())
            for kind in (
                CredentialKind.ROOT_CA,
                CredentialKind.ISSUING_CA,
                CredentialKind.OCSP,
                CredentialKind.TSA,
            ):
                made = "created" if kind in created_kinds else "present"
                typer.echo(f"{kind.value}: {made}")
            if demo:
                path = current.data_path / "demo.json"
                typer.echo(f"demo: {create_demo(authority, cli_actor(), path)} ({path})")
            keys = pool.list_keys()
            refused = report_key_problems(keys)
            typer.echo(f"keys: {len(keys)} on the token, {len(refused)} refused for signing")
            for key in refused:
                typer.echo(f"  refused {key.key_id.hex()} {key.label!r}: {'; '.join(key.problems)}")
    finally:
        engine.dispose()
    typer.echo("ready")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply database migrations."""
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.upgrade(engine, revision)
        typer.echo(f"database at revision {db.current_revision(engine)}")
    finally:
        engine.dispose()


@hsm_app.command("info")
def hsm_info(as_json: JsonOption = False) -> None:
    """Module, slots, tokens and mechanisms."""
    with open_pool() as pool:
        info = pool.module_info()
        token = pool.token_info()
    if as_json:
        echo_json(
            {
                "module": info.path,
                "manufacturer": info.manufacturer,
                "description": info.description,
                "library_version": info.library_version,
                "cryptoki_version": info.cryptoki_version,
                "thread_safe": info.thread_safe,
                "token": vars(token) | {"flags": list(token.flags)},
                "slots": [
                    {
                        "slot_id": s.slot_id,
                        "description": s.description,
                        "token": None
                        if s.token is None
                        else vars(s.token) | {"flags": list(s.token.flags)},
                    }
                    for s in info.slots
                ],
                "mechanisms": list(info.mechanisms),
            }
        )
        return
    typer.echo(f"module:      {info.path}")
    typer.echo(f"library:     {info.manufacturer} — {info.description} {info.library_version}")
    typer.echo(
        f"cryptoki:    {info.cryptoki_version}, OS locking {'on' if info.thread_safe else 'off'}"
    )
    typer.echo(f"token:       {token.label!r} serial {token.serial} in slot {token.slot_id}")
    typer.echo("slots:")
    for slot in info.slots:
        label = (
            "(no token)"
            if slot.token is None
            else f"{slot.token.label!r} serial {slot.token.serial}"
        )
        typer.echo(f"  {slot.slot_id}: {label}")
    typer.echo(f"mechanisms:  {', '.join(info.mechanisms)}")


def _key_line(key: KeyInfo) -> str:
    flags = ", ".join(
        f"{name}={'yes' if value else 'no'}"
        for name, value in (
            ("sensitive", key.sensitive),
            ("always_sensitive", key.always_sensitive),
            ("extractable", key.extractable),
            ("never_extractable", key.never_extractable),
            ("local", key.local),
            ("sign", key.sign),
        )
    )
    spec = key.spec.value if key.spec else key.key_type
    status = "usable" if key.usable else "REFUSED: " + "; ".join(key.problems)
    return f"{key.key_id.hex()}  {spec:<9} {key.label!r}\n    {flags}\n    {status}"


@hsm_app.command("keys")
def hsm_keys_command(as_json: JsonOption = False) -> None:
    """List the private keys on the token with their attributes."""
    with open_pool() as pool:
        keys = pool.list_keys()
    if as_json:
        echo_json(
            [
                k.as_dict() | {"public_key": k.public_key.hex() if k.public_key else None}
                for k in keys
            ]
        )
        return
    if not keys:
        typer.echo("no keys on the token")
    for key in keys:
        typer.echo(_key_line(key))


def record_key(engine: Engine, token_serial: str, key: KeyInfo) -> None:
    """Record a key Kyso generated; the token stays the source of truth."""
    assert key.public_key is not None
    assert key.spec is not None
    try:
        with engine.begin() as connection:
            connection.execute(
                insert(hsm_keys).values(
                    key_id=key.key_id.hex(),
                    token_serial=token_serial,
                    label=key.label,
                    spec=key.spec.value,
                    public_key=key.public_key,
                    created_at=datetime.now(UTC),
                )
            )
            # Same transaction: the key is recorded with its audit event or not at all.
            record_key_generated(connection, key)
    except SQLAlchemyError as ex:
        raise KysoError(
            f"key {key.key_id.hex()} was generated on the token but not recorded: "
            f"{type(ex).__name__}"
        ) from ex


@hsm_app.command("keygen")
def hsm_keygen(
    label: Annotated[str, typer.Option(help="Key label (UTF-8).")],
    key_type: Annotated[KeySpec, typer.Option("--type", help="Key type.")] = KeySpec.EC_P256,
    as_json: JsonOption = False,
) -> None:
    """Generate a non-extractable key pair on the token and record it."""
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        with open_pool() as pool:
            token = pool.token_info()
            key = pool.generate_key(key_type, label=label)
        record_key(engine, token.serial, key)
    finally:
        engine.dispose()
    assert key.public_key is not None
    if as_json:
        echo_json(key.as_dict() | {"public_key": key.public_key.hex()})
    else:
        typer.echo(_key_line(key))


def verify_independently(key: KeyInfo, pool: BlockingSessionPool) -> None:
    """Sign with the token and verify with ``cryptography``; raises on a mismatch."""
    assert key.public_key is not None
    public = load_der_public_key(key.public_key)
    digest = hashlib.sha256(b"kyso selftest " + key.key_id).digest()
    if isinstance(public, ed25519.Ed25519PublicKey):
        public.verify(pool.sign_message(key.key_id, digest), digest)
        return
    scheme = default_scheme(key)
    signature = pool.sign_digest(key.key_id, digest, scheme=scheme, hash_alg=HashAlg.SHA256)
    prehashed = utils.Prehashed(hashes.SHA256())
    if isinstance(public, rsa.RSAPublicKey):
        public.verify(signature, digest, padding.PKCS1v15(), prehashed)
        pss = pool.sign_digest(
            key.key_id, digest, scheme=SignScheme.RSA_PSS, hash_alg=HashAlg.SHA256
        )
        public.verify(pss, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32), prehashed)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(signature, digest, ec.ECDSA(prehashed))
    else:
        raise InvalidSignature("unsupported public key type")


@hsm_app.command("selftest")
def hsm_selftest(as_json: JsonOption = False) -> None:
    """Sign and verify with every key; exit 1 on any refused key or failure."""
    rows = []
    with open_pool() as pool:
        token = pool.token_info()
        for result in pool.selftest():
            ok, detail = result.ok, result.detail
            if ok:
                try:
                    verify_independently(result.key, pool)
                    detail = "signed; verified on the token and with cryptography"
                except (InvalidSignature, HsmError) as ex:
                    ok, detail = False, f"independent verification failed: {ex}"
            rows.append((result.key, ok, detail))
    failed = [r for r in rows if not r[1]]
    if as_json:
        echo_json(
            {
                "token": token.label,
                "ok": not failed,
                "keys": [k.as_dict() | {"ok": ok, "detail": d} for k, ok, d in rows],
            }
        )
    else:
        typer.echo(f"token {token.label!r}: {len(rows)} key(s), {len(failed)} problem(s)")
        for key, ok, detail in rows:
            typer.echo(f"  {'ok  ' if ok else 'FAIL'} {key.key_id.hex()} {key.label!r}: {detail}")
    if failed:
        raise typer.Exit(1)


@contextmanager
def open_audit() -> Iterator[tuple[AuditLog, str | None]]:
    """The audit log with its HSM signer (if the key exists), for one CLI command."""
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        with open_pool() as pool:
            yield open_audit_log(current, engine, pool, pool.list_keys())
    finally:
        engine.dispose()


def _print_report(report: VerificationReport) -> None:
    if report.ok:
        typer.echo(
            f"ok: {report.entries_checked} entries, {report.checkpoints_checked} checkpoints "
            f"verified (tree size {report.tree_size})"
        )
        return
    where = "" if report.first_bad_index is None else f" at index {report.first_bad_index}"
    typer.echo(f"FAILED{where}: {report.message} [{report.code}]")
    raise typer.Exit(1)


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sequence what is pending and sign a checkpoint now (if the log grew)."""
    with open_audit() as (audit, _vkey):
        note = audit.publish_checkpoint()
        latest = audit.latest_checkpoint()
    if note is None:
        typer.echo("the log did not grow since the last checkpoint")
    if latest is not None:
        typer.echo(latest.note, nl=False)


@audit_app.command("export")
def audit_export(
    directory: Annotated[Path, typer.Argument(help="Folder to write (created if missing).")],
) -> None:
    """Write entries, checkpoints and the verifier key as plain files for offline audit."""
    with open_audit() as (audit, vkey):
        audit.sequence()
        count = export(audit, directory, vkey=vkey)
    typer.echo(f"exported {count} entries to {directory}")


@audit_app.command("verify")
def audit_verify(
    export_dir: Annotated[
        Path | None, typer.Option("--export", help="Verify an export folder, offline.")
    ] = None,
    vkey: Annotated[
        str | None,
        typer.Option(help="Verifier key text or a file holding it (default: the token's key)."),
    ] = None,
    strict: Annotated[bool, typer.Option(help="Also parse every leaf as an event.")] = False,
) -> None:
    """Recompute the tree, check every checkpoint signature and their consistency; exit 0
    only if everything holds, else print the first bad index and why."""
    if vkey is not None and Path(vkey).is_file():
        vkey = Path(vkey).read_text(encoding="utf-8").strip()
    if export_dir is not None:
        # Offline: no database and no HSM; the verifier key must come from the auditor.
        _print_report(verify_export(export_dir, vkey, strict=strict))
        return
    with open_audit() as (audit, token_vkey):
        key = vkey or token_vkey
        if key is None:
            raise KysoError("no verifier key: pass --vkey or run 'kyso init'")
        report = audit.verify_database([NoteVerifier.from_vkey(key)], strict=strict)
    _print_report(report)


@audit_app.command("tail")
def audit_tail(
    count: Annotated[int, typer.Option("-n", min=1, max=1000, help="How many entries.")] = 20,
) -> None:
    """Print the last entries (index and canonical JSON)."""
    with open_audit() as (audit, _vkey):
        audit.sequence()
        size = audit.size()
        found = audit.entries(max(0, size - count), size) if size else []
    for entry in found:
        typer.echo(f"{entry.index}\t{entry.leaf.decode('utf-8')}")


@audit_app.command("proof")
def audit_proof(
    index: Annotated[int, typer.Argument(min=0, help="Entry index.")],
    size: Annotated[
        int | None, typer.Option(help="Tree size (default: the latest checkpoint's).")
    ] = None,
) -> None:
    """Inclusion proof of an entry against a checkpoint, verified before printing."""
    with open_audit() as (audit, _vkey):
        latest = audit.latest_checkpoint()
        if size is None:
            if latest is None:
                raise KysoError("no checkpoint yet: run 'kyso audit checkpoint' or pass --size")
            size = latest.size
        proof = audit.inclusion_proof(index, size)
        root = audit.root(size)
        entry = audit.entries(index, index + 1)[0]
    merkle.verify_inclusion(merkle.leaf_hash(entry.leaf), index, size, proof, root)
    echo_json(
        {
            "index": index,
            "size": size,
            "leaf_hash": merkle.leaf_hash(entry.leaf).hex(),
            "root_hash": root.hex(),
            "hashes": [h.hex() for h in proof],
            "checkpoint": latest.note if latest is not None and latest.size == size else None,
        }
    )


# -- PKI: units, officers, credentials, the CA ---------------------------------------------


def cli_actor() -> Actor:
    """Who acts from the command line: the operating-system account, as an administrator."""
    return Actor(id=f"cli:{getpass.getuser()}", role="system-admin")


@contextmanager
def open_authority() -> Iterator[Authority]:
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        with open_pool() as pool:
            yield make_authority(current, engine, pool)
    finally:
        engine.dispose()


def _unit_line(unit: Unit) -> str:
    parent = "-" if unit.parent_id is None else str(unit.parent_id)
    return f"{unit.id}\t{unit.kind.value}\t{unit.code}\t{unit.name}\t(parent {parent})"


def _person_line(person: Person) -> str:
    return (
        f"{person.id}\t{person.role.value}\tunit {person.unit_id}\t{person.full_name}\t"
        f"{person.position}\t{person.email}"
    )


def _show_credential(credential: Credential, *, as_json: bool) -> None:
    if as_json:
        echo_json(credential.as_dict())
    else:
        typer.echo(_credential_line(credential))


def _credential_line(credential: Credential) -> str:
    data = credential.as_dict()
    return (
        f"credential {data['id']}\t{data['kind']}\t{data['status']}\tserial {data['serial']}\t"
        f"until {data['not_after']}\t{data['subject']}"
    )


@unit_app.command("add")
def unit_add(
    kind: Annotated[UnitKind, typer.Option(help="ministry, province or commune.")],
    code: Annotated[str, typer.Option(help="Short stable code, e.g. CAP-BT.")],
    name: Annotated[str, typer.Option(help="Name, e.g. 'Công an phường Bến Thành'.")],
    province: Annotated[str, typer.Option(help="Province (ST of subjects).")],
    locality: Annotated[str, typer.Option(help="Locality (L of subjects).")],
    parent: Annotated[int | None, typer.Option(min=1, max=2**62, help="Parent unit id.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Add a unit to the tree (ministry → province → commune)."""
    with open_authority() as authority:
        unit = authority.add_unit(
            kind=kind,
            code=code,
            name=name,
            province=province,
            locality=locality,
            parent_id=parent,
            actor=cli_actor(),
        )
    typer.echo(json.dumps(unit.as_dict(), ensure_ascii=False) if as_json else _unit_line(unit))


@unit_app.command("list")
def unit_list(as_json: JsonOption = False) -> None:
    """List the units."""
    with open_authority() as authority:
        units = authority.units()
    if as_json:
        echo_json([u.as_dict() for u in units])
        return
    for unit in units:
        typer.echo(_unit_line(unit))


@unit_app.command("seal")
def unit_seal(
    unit_id: Annotated[int, typer.Argument(min=1, max=2**62, help="Unit id.")],
    as_json: JsonOption = False,
) -> None:
    """Create the unit's agency seal credential (key on the token, certificate by the CA)."""
    with open_authority() as authority:
        credential = authority.enroll_seal(unit_id, cli_actor())
    _show_credential(credential, as_json=as_json)


@officer_app.command("add")
def officer_add(
    unit: Annotated[int, typer.Option(min=1, max=2**62, help="Unit id.")],
    name: Annotated[str, typer.Option(help="Full name, e.g. 'Nguyễn Văn Ánh'.")],
    position: Annotated[str, typer.Option(help="Position or title.")],
    cccd: Annotated[str, typer.Option(help="12-digit citizen identity number.")],
    email: Annotated[str, typer.Option(help="Official e-mail address.")],
    role: Annotated[PersonRole, typer.Option(help="officer or clerk (văn thư).")] = (
        PersonRole.OFFICER
    ),
    as_json: JsonOption = False,
) -> None:
    """Register an officer or clerk of a unit."""
    with open_authority() as authority:
        person = authority.add_person(
            unit_id=unit,
            role=role,
            full_name=name,
            position=position,
            cccd=cccd,
            email=email,
            actor=cli_actor(),
        )
    typer.echo(
        json.dumps(person.as_dict(), ensure_ascii=False) if as_json else _person_line(person)
    )


@officer_app.command("list")
def officer_list(
    unit: Annotated[int | None, typer.Option(min=1, max=2**62, help="Only this unit.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List officers and clerks."""
    with open_authority() as authority:
        people = authority.people(unit_id=unit)
    if as_json:
        echo_json([p.as_dict() for p in people])
        return
    for person in people:
        typer.echo(_person_line(person))


@officer_app.command("show")
def officer_show(
    person_id: Annotated[int, typer.Argument(min=1, max=2**62, help="Person id.")],
    as_json: JsonOption = False,
) -> None:
    """Show a person and their credentials."""
    with open_authority() as authority:
        person = authority.person(person_id)
        credentials = authority.credentials(person_id=person_id)
    if as_json:
        echo_json(person.as_dict() | {"credentials": [c.as_dict() for c in credentials]})
        return
    typer.echo(_person_line(person))
    for credential in credentials:
        typer.echo("  " + _credential_line(credential))


@officer_app.command("enroll")
def officer_enroll(
    person_id: Annotated[int, typer.Argument(min=1, max=2**62, help="Person id.")],
    as_json: JsonOption = False,
) -> None:
    """Generate the person's key on the token and have Kyso's CA issue the certificate."""
    with open_authority() as authority:
        credential = authority.enroll_person(person_id, cli_actor())
    _show_credential(credential, as_json=as_json)


CredentialArg = Annotated[int, typer.Argument(min=1, max=2**62, help="Credential id.")]


@officer_app.command("suspend")
def officer_suspend(credential_id: CredentialArg) -> None:
    """Put a credential on hold (certificateHold); it cannot sign until resumed."""
    with open_authority() as authority:
        typer.echo(_credential_line(authority.suspend(credential_id, cli_actor())))


@officer_app.command("resume")
def officer_resume(credential_id: CredentialArg) -> None:
    """Take a suspended credential off hold."""
    with open_authority() as authority:
        typer.echo(_credential_line(authority.resume(credential_id, cli_actor())))


@officer_app.command("revoke")
def officer_revoke(
    credential_id: CredentialArg,
    reason: Annotated[RevocationReason, typer.Option(help="RFC 5280 reason.")] = (
        RevocationReason.UNSPECIFIED
    ),
) -> None:
    """Revoke a credential's certificate for good."""
    with open_authority() as authority:
        typer.echo(_credential_line(authority.revoke(credential_id, reason, cli_actor())))


@officer_app.command("csr")
def officer_csr(
    person: Annotated[
        int | None, typer.Option(min=1, max=2**62, help="Officer: new key and request.")
    ] = None,
    unit: Annotated[
        int | None, typer.Option(min=1, max=2**62, help="Agency seal: new key and request.")
    ] = None,
    credential: Annotated[
        int | None,
        typer.Option(min=1, max=2**62, help="Export the request of a pending credential again."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the PEM here, not to stdout.")] = None,
) -> None:
    """Generate a key on the token and a PKCS#10 request for an external CA."""
    if sum(x is not None for x in (person, unit, credential)) != 1:
        raise KysoError("give exactly one of --person, --unit or --credential")
    with open_authority() as authority:
        if credential is not None:
            pem = authority.csr(credential)
            credential_id = credential
        else:
            pending, pem = authority.request_certificate(
                person_id=person, unit_id=unit, actor=cli_actor()
            )
            credential_id = pending.id
    if out is None:
        sys.stdout.write(pem.decode("ascii"))
    else:
        out.write_bytes(pem)
    typer.echo(
        f"pending credential {credential_id}: send the request to the CA, then run "
        f"'kyso officer import-cert {credential_id} FILE'",
        err=True,
    )


@officer_app.command("import-cert")
def officer_import_cert(
    credential_id: CredentialArg,
    file: Annotated[Path, typer.Argument(help="PEM: the certificate, then its chain.")],
    as_json: JsonOption = False,
) -> None:
    """Activate a pending credential with the certificate an external CA returned; it must
    match the key on the token and chain to an anchor of the trust store."""
    data = file.read_bytes()
    with open_authority() as authority:
        anchors = open_trust_store(settings(), authority).current.anchors
        imported = authority.import_certificate(
            credential_id, data, anchors=anchors, actor=cli_actor()
        )
    _show_credential(imported, as_json=as_json)


@officer_app.command("renew")
def officer_renew(
    credential_id: CredentialArg,
    rekey: Annotated[bool, typer.Option(help="New key too (the old certificate is revoked).")] = (
        False
    ),
    as_json: JsonOption = False,
) -> None:
    """Issue a new certificate (and with --rekey a new key) replacing an active credential."""
    with open_authority() as authority:
        renewed = authority.renew(credential_id, cli_actor(), rekey=rekey)
    _show_credential(renewed, as_json=as_json)


# -- signing PINs ------------------------------------------------------------------------

PIN_ENV = "KYSO_PIN"
"""Environment variable holding a credential's signing PIN, for scripts."""

MAX_PIN_FILE = 1024
"""Bytes read from a PIN file at most; a PIN is far shorter."""

PinFileOption = Annotated[
    Path | None,
    typer.Option(
        "--pin-file",
        dir_okay=False,
        help=f"Read the PIN from this file (trailing newline ignored) instead of {PIN_ENV} "
        "or a prompt.",
    ),
]


class PinSourceError(KysoError):
    """A PIN could not be read from where the command was told to read it."""

    code = "kyso.pin_source"


def read_pin(pin_file: Path | None, *, prompt: str, confirm: bool) -> str:
    """A credential's PIN from ``--pin-file``, else ``KYSO_PIN``, else a hidden prompt
    (asked twice with ``confirm``). Never from the command line: argv is visible to every
    user of the machine. Errors name the source, never what it holds."""
    if pin_file is not None:
        try:
            with pin_file.open("rb") as source:
                data = source.read(MAX_PIN_FILE + 1)
        except OSError as ex:
            raise PinSourceError(f"cannot read the PIN file {pin_file}: {ex.strerror}") from None
        if len(data) > MAX_PIN_FILE:
            raise PinSourceError(f"the PIN file {pin_file} is larger than {MAX_PIN_FILE} bytes")
        try:
            return data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise PinSourceError(f"the PIN file {pin_file} is not UTF-8 text") from None
    from_env = os.environ.get(PIN_ENV)
    if from_env:
        return from_env
    pin: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return pin


def _pin_line(credential: Credential) -> str:
    state = "set" if credential.pin_set else "not set"
    locked = (
        f"locked since {credential.pin_locked_at.isoformat()}"
        if credential.pin_locked_at
        else "not locked"
    )
    return (
        f"credential {credential.id}\tPIN {state}\t{credential.pin_failures} consecutive "
        f"failure(s)\t{locked}"
    )


@officer_app.command("pin-set")
def officer_pin_set(
    credential_id: CredentialArg, pin_file: PinFileOption = None, as_json: JsonOption = False
) -> None:
    """Set or change the signing PIN of an officer or seal credential (from a prompt with
    confirmation, KYSO_PIN or --pin-file); a locked PIN needs pin-unlock instead."""
    pin = read_pin(pin_file, prompt=f"New PIN for credential {credential_id}", confirm=True)
    with open_authority() as authority:
        credential = authority.set_pin(credential_id, pin, cli_actor())
    typer.echo(json.dumps(credential.as_dict()["pin"]) if as_json else _pin_line(credential))


@officer_app.command("pin-unlock")
def officer_pin_unlock(
    credential_id: CredentialArg,
    new_pin: Annotated[
        bool,
        typer.Option("--new-pin", help="Also replace the PIN (prompt, KYSO_PIN or --pin-file)."),
    ] = False,
    pin_file: PinFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Clear a credential's PIN lock and failure count, as its administrator (audited)."""
    if pin_file is not None and not new_pin:
        raise PinSourceError("--pin-file is read only with --new-pin")
    pin = (
        read_pin(pin_file, prompt=f"New PIN for credential {credential_id}", confirm=True)
        if new_pin
        else None
    )
    with open_authority() as authority:
        credential = authority.unlock_pin(credential_id, cli_actor(), new_pin=pin)
    typer.echo(json.dumps(credential.as_dict()["pin"]) if as_json else _pin_line(credential))


CaOption = Annotated[Literal["root", "issuing"], typer.Option("--ca", help="Which CA.")]


@pki_app.command("export-root")
def pki_export_root() -> None:
    """Print the root CA certificate (PEM) to standard output."""
    with open_authority() as authority:
        certificate = authority.ca_certificate(CredentialKind.ROOT_CA)
    sys.stdout.write(to_pem(certificate).decode("ascii"))


@pki_app.command("crl")
def pki_crl(
    ca: CaOption = "issuing",
    out: Annotated[Path | None, typer.Option(help="Also write the DER CRL to this file.")] = None,
) -> None:
    """Sign and publish a new CRL now."""
    with open_authority() as authority:
        der = authority.publish_crl(CA_BY_NAME[ca])
    if out is not None:
        out.write_bytes(der)
    typer.echo(f"published a new {ca} CRL ({len(der)} bytes)")


@pki_app.command("expiring")
def pki_expiring(
    days: Annotated[int | None, typer.Option(min=0, max=3650, help="Window in days.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Active credentials whose certificate ends within the window (default
    KYSO_PKI_EXPIRY_WARNING_DAYS), soonest first."""
    window = days if days is not None else settings().pki_expiry_warning_days
    with open_authority() as authority:
        found = authority.expiring(timedelta(days=window))
    if as_json:
        echo_json([c.as_dict() for c in found])
        return
    if not found:
        typer.echo(f"no credential ends within {window} days")
    for credential in found:
        typer.echo(_credential_line(credential))


trust_app = typer.Typer(
    help="The trust store: anchors for external certificates.", no_args_is_help=True
)
pki_app.add_typer(trust_app, name="trust")


@trust_app.command("add")
def pki_trust_add(
    file: Annotated[Path, typer.Argument(help="One CA certificate, PEM or DER.")],
    name: Annotated[str, typer.Option(help="Short file-name label, e.g. national-root.")],
    intermediate: Annotated[
        bool, typer.Option(help="Trust a CA that is not self-signed (explicitly).")
    ] = False,
) -> None:
    """Trust an external root (e.g. the national root CA) for imports and verification."""
    with open_authority() as authority:
        entry = add_trust_anchor(
            open_trust_store(settings(), authority),
            authority,
            file.read_bytes(),
            name=name,
            intermediate=intermediate,
            actor=cli_actor(),
        )
    typer.echo(f"trusted {entry.subject} (SHA-256 {entry.fingerprint})")


@trust_app.command("list")
def pki_trust_list(as_json: JsonOption = False) -> None:
    """Anchors (Kyso's root included) and intermediates of the trust store."""
    with open_authority() as authority:
        entries = open_trust_store(settings(), authority).list()
    if as_json:
        echo_json([e.as_dict() for e in entries])
        return
    for entry in entries:
        role = "anchor" if entry.anchor else "intermediate"
        typer.echo(
            f"{role}\t{entry.fingerprint}\tuntil {entry.not_after:%Y-%m-%d}\t{entry.subject}"
        )


def _run_guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (HsmError, KysoError, AuditError, PkiError) as ex:
        if state.debug:
            traceback.print_exc()
        typer.echo(f"error: {ex.diagnostics()}", err=True)
        sys.exit(1)
    except SQLAlchemyError as ex:
        if state.debug:
            traceback.print_exc()
        typer.echo(f"error: database: {type(ex).__name__} [kyso.storage]", err=True)
        sys.exit(1)
    except Exception as ex:
        if state.debug:
            traceback.print_exc()
        else:
            typer.echo(f"error: internal error {type(ex).__name__}; rerun with --debug", err=True)
        sys.exit(1)


def main() -> None:
    """Console entry point."""
    state.debug = "--debug" in sys.argv[1:]
    _run_guarded(lambda: app(standalone_mode=True))
