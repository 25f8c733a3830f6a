"""The ``kyso`` command line.

Errors print a one-line diagnosis and exit 1; ``--debug`` adds the traceback.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils
from cryptography.hazmat.primitives.serialization import load_der_public_key
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import SQLAlchemyError

from audit import AuditError, merkle
from audit.events import Action, Actor, AuditEvent, DetailValue, Outcome, Subject
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
from kyso.access.activation import ActivationPolicy, SignatureActivation
from kyso.access.factors import totp_uri
from kyso.access.model import (
    AccessNotFoundError,
    Role,
    format_scopes,
    parse_scopes,
)
from kyso.access.store import ROTATION_GRACE, AccessStore, Client, User
from kyso.access.tokens import HsmSealer, ensure_secrets_key, ensure_token_key
from kyso.audit_service import open_audit_log, record_key_generated
from kyso.audit_signer import HsmNoteSigner, ensure_audit_key
from kyso.demo import create_demo
from kyso.errors import KysoError, StorageError
from kyso.pki_service import (
    CA_BY_NAME,
    PkiServices,
    add_trust_anchor,
    make_authority,
    open_trust_store,
)
from kyso.settings import Settings, load_settings
from kyso.tables import hsm_keys
from pki.authority import Authority, Credential, Person, Unit
from pki.certificates import to_pem
from pki.crl import RevocationReason
from pki.errors import PkiError
from pki.store import CredentialKind, PersonRole, UnitKind, pki_units
from signer.documents import VIETNAM_TIME, Document, DraftMetadata, inspect_pdf
from signer.errors import SignerError, WrongCredentialError
from signer.issuing import OFFICER_FIELD, SEAL_FIELD, default_placement
from signer.pades import Level
from signer.placement import (
    AnchorPlacement,
    FieldPlacement,
    Placement,
    RectPlacement,
    free_field_name,
    parse_rect,
)
from signer.placement import Document as PlacementDocument
from signer.stamps import MAX_PNG_BYTES, attachment_signature, officer_signature, seal_signature
from signer.store import StampImageKind

if TYPE_CHECKING:
    from kyso.signing import SigningServices
    from kyso.verification import VerificationService

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
            token_key, created = ensure_token_key(pool)
            if created:
                record_key(engine, token.serial, token_key)
            state = "created" if created else "present"
            typer.echo(f"access-token key: {token_key.key_id.hex()} (ec-p256) {state}")
            secrets_key, created = ensure_secrets_key(pool)
            if created:
                with engine.begin() as connection:
                    AuditLog.append_event(
                        connection,
                        Action.KEY_GENERATED,
                        cli_actor(),
                        {"label": secrets_key.label, "spec": "aes-256"},
                        subject=Subject(key_id=secrets_key.key_id.hex()),
                    )
            state = "created" if created else "present"
            typer.echo(f"access-secrets key: {secrets_key.key_id.hex()} (aes-256) {state}")
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
                outcome = create_demo(authority, cli_actor(), path, sealer=HsmSealer(pool))
                typer.echo(f"demo: {outcome} ({path})")
            sealed = AccessStore(engine, sealer=HsmSealer(pool)).seal_clear_secrets()
            typer.echo(f"second-factor secrets: {sealed} sealed now")
            keys = pool.list_keys()
            from kyso.runtime import report_key_problems  # the service's wiring: loaded late

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


@contextmanager
def open_activation() -> Iterator[SignatureActivation]:
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        with open_pool() as pool:
            yield SignatureActivation(
                engine=engine,
                authority=make_authority(current, engine, pool),
                access=AccessStore(engine, sealer=HsmSealer(pool)),
            )
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

OtpOption = Annotated[
    str | None,
    typer.Option(
        "--otp",
        envvar="KYSO_OTP",
        help="The holder's one-time code (TOTP), when the credential's activation policy is "
        "pin+otp; asked for when missing.",
    ),
]

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


@officer_app.command("activation")
def officer_activation(
    credential_id: CredentialArg,
    policy: Annotated[
        ActivationPolicy | None,
        typer.Option("--policy", help="Set it: pin, or pin+otp (the holder's one-time code too)."),
    ] = None,
) -> None:
    """Show, or set, how a credential is activated for signing: by its PIN, or by its PIN
    and the holder's one-time code (the default for officers' credentials); audited."""
    with open_activation() as activation:
        if policy is not None:
            activation.set_policy(credential_id, policy, cli_actor())
        typer.echo(
            f"credential {credential_id}\tactivation {activation.policy(credential_id).value}"
        )


@unit_app.command("seal-client")
def unit_seal_client(
    credential_id: CredentialArg,
    client_id: Annotated[
        str | None,
        typer.Argument(help="The service client that may seal with it; leave out to unbind."),
    ] = None,
) -> None:
    """Let one service client seal with a unit's seal credential without a PIN (automated
    sealing), or take that right back; audited. Never possible for an officer's credential."""
    with open_activation() as activation:
        activation.bind_client(credential_id, client_id, cli_actor())
    typer.echo(
        f"seal {credential_id}\t{'bound to ' + client_id if client_id else 'bound to no client'}"
    )


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


# -- signing: one-shot signatures, batches, seals, the document registry --------------------

MAX_BATCH_FILES = 1000
"""Most PDFs one ``kyso sign --batch`` takes (the REST batches' bound too)."""

"""Longest ``--rect`` text accepted."""

issue_app = typer.Typer(
    help="The document registry: upload a draft, officer signature, seal and issue.",
    no_args_is_help=True,
)
app.add_typer(issue_app, name="issue")


class FileAccessError(KysoError):
    """An input file cannot be read or an output file cannot be written."""

    code = "kyso.file"


class OutputExistsError(KysoError):
    """The output file exists and ``--force`` was not given."""

    code = "kyso.output_exists"


class SigningOptionError(KysoError):
    """Options of a signing command that do not go together (placement, batch, visibility)."""

    code = "kyso.bad_option"


class BatchTooLargeError(KysoError):
    """The batch folder holds more PDFs than one batch takes."""

    code = "kyso.batch_too_large"


@dataclass(frozen=True, kw_only=True)
class SigningSession:
    """What a signing command works with, open for the length of the command."""

    signing: SigningServices
    """The signing service, the document registry and the stamp images."""

    authority: Authority
    """Kyso's authority: credentials, their PINs and status, units and people."""

    engine: Engine
    """The database, for the audit events of one-shot signatures."""

    activation: SignatureActivation
    """How each credential is activated (PIN, or PIN and the holder's one-time code)."""


@contextmanager
def open_signing() -> Iterator[SigningSession]:
    from kyso.signing import make_signing  # pyHanko's signer: only for the commands that sign

    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        with open_pool() as pool:
            authority = make_authority(current, engine, pool)
            signing = make_signing(current, engine, pool, PkiServices(authority, current))
            activation = SignatureActivation(
                engine=engine,
                authority=authority,
                access=AccessStore(engine, sealer=HsmSealer(pool)),
            )
            yield SigningSession(
                signing=signing, authority=authority, engine=engine, activation=activation
            )
    finally:
        engine.dispose()


def signing_actor(role: str) -> Actor:
    """Who signs from the command line: the operating-system account, in the role of the
    step (``officer`` signs, ``clerk`` seals)."""
    return Actor(id=f"cli:{getpass.getuser()}", role=role)


def read_limited(path: Path, limit: int, *, what: str) -> bytes:
    """At most ``limit + 1`` bytes of ``path``: one more than allowed, so that the checks
    after it can name the limit without the whole file being read."""
    try:
        with path.open("rb") as source:
            return source.read(limit + 1)
    except OSError as ex:
        raise FileAccessError(f"cannot read the {what} {path}: {ex.strerror}") from None


def write_output(path: Path, data: bytes, *, force: bool) -> None:
    """Write ``path`` whole or not at all: a temporary file in the same folder, synced, then
    renamed over it (``force``) or hard-linked to it, which fails if it exists — so a file
    that appeared after the first check is never overwritten either."""
    try:
        descriptor, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=".part"
        )
    except OSError as ex:
        raise FileAccessError(f"cannot write into {path.parent}: {ex.strerror}") from None
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(temporary, 0o666 & ~mask)  # mkstemp makes 0600; a PDF is an ordinary file
        if force:
            os.replace(temporary, path)
            return
        try:
            os.link(temporary, path)
        except FileExistsError:
            raise OutputExistsError(f"{path} exists; pass --force to replace it") from None
        except OSError:
            # No hard links on this file system: check, then rename (a narrow race).
            if path.exists():
                raise OutputExistsError(f"{path} exists; pass --force to replace it") from None
            os.replace(temporary, path)
    except OSError as ex:
        raise FileAccessError(f"cannot write {path}: {ex.strerror}") from None
    finally:
        with suppress(FileNotFoundError):
            os.unlink(temporary)


def refuse_existing(path: Path, *, force: bool) -> None:
    """Fail before any signing when the output exists (``write_output`` checks again)."""
    if not force and path.exists():
        raise OutputExistsError(f"{path} exists; pass --force to replace it")
    if not path.parent.is_dir():
        raise FileAccessError(f"the folder of {path} does not exist")


def placement_from_options(
    field: str | None, page: int | None, rect: str | None, anchor: str | None
) -> Placement | None:
    """``--field``, ``--page`` with ``--rect``, or ``--anchor`` (optionally with ``--page``);
    None when none is given."""
    if sum(x is not None for x in (field, rect, anchor)) > 1:
        raise SigningOptionError("give only one of --field, --page with --rect, or --anchor")
    if field is not None:
        if page is not None:
            raise SigningOptionError("--page goes with --rect or --anchor, not --field")
        return FieldPlacement(name=field)
    if rect is not None:
        if page is None:
            raise SigningOptionError("--rect needs --page (1-based)")
        return RectPlacement(page=page, rect=parse_rect(rect))
    if anchor is not None:
        return AnchorPlacement(text=anchor, page=page)
    if page is not None:
        raise SigningOptionError("--page goes with --rect or --anchor")
    return None


FieldOption = Annotated[
    str | None, typer.Option("--field", help="Sign into this existing empty signature field.")
]
PageOption = Annotated[
    int | None,
    typer.Option(
        "--page",
        min=1,
        max=100_000,
        help="Page (1-based) of --rect, or the page --anchor searches.",
    ),
]
RectOption = Annotated[
    str | None,
    typer.Option("--rect", metavar="X1,Y1,X2,Y2", help="New field at this rectangle (points)."),
]
AnchorOption = Annotated[
    str | None,
    typer.Option("--anchor", help="New field below this text, e.g. the signer's title line."),
]
CredentialOption = Annotated[
    int, typer.Option("--credential", min=1, max=2**62, help="Signing credential id.")
]
LevelOption = Annotated[
    Level | None,
    typer.Option("--level", help="PAdES baseline level (default KYSO_SIGNING_LEVEL)."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Replace an existing output file.")]
IdempotencyOption = Annotated[
    str | None,
    typer.Option(
        "--idempotency-key",
        help="Repeating the command with the same key returns the first result and signs "
        "nothing again.",
    ),
]
DocumentArg = Annotated[str, typer.Argument(help="Document id (26 characters).")]


@dataclass(frozen=True, kw_only=True)
class SignRequest:
    """One ``kyso sign`` as its options state it, applied to each input PDF."""

    credential_id: int
    """The credential that signs."""

    level: Level
    """PAdES baseline level."""

    visible: bool
    """Whether the officer's signature image is drawn."""

    placement: Placement | None
    """Where the visible signature goes; None for the default place (the template's
    officer field, else below the officer's position title)."""

    certify: bool
    """Certification signature (DocMDP P=2): only form filling and signatures may follow."""


def sign_document(session: SigningSession, pdf: bytes, request: SignRequest) -> bytes:
    """``pdf`` signed as ``request`` says, with its ``document.signed`` event committed.
    The caller has authorised the credential."""
    current = session.signing.settings
    inspect_pdf(pdf, max_size=current.signing_max_bytes, max_pages=current.signing_max_pages)
    service = session.signing.service
    credential = service.credential(request.credential_id, level=request.level)
    appearance = None
    if request.visible:
        if credential.person_id is None:
            raise WrongCredentialError(
                f"credential {credential.id} is not an officer's: a visible signature shows "
                "an officer's signature image (seal with 'kyso seal')"
            )
        person = session.authority.person(credential.person_id)
        placement = request.placement or default_placement(pdf, person.position)
        appearance = officer_signature(
            pdf,
            placement,
            signature_png=session.signing.images.get(StampImageKind.OFFICER, person.id),
            officer_name=person.full_name,
            field_name=placement.name if isinstance(placement, FieldPlacement) else OFFICER_FIELD,
            reserve_seal_field=SEAL_FIELD if request.certify else None,
        )
    signed = service.sign(
        pdf,
        credential.id,
        level=request.level,
        field_name=free_field_name(PlacementDocument(pdf))
        if appearance is None
        else appearance.field_name,
        appearance=appearance,
        certify=request.certify,
    )
    record_signature(
        session.engine,
        Action.DOCUMENT_SIGNED,
        signing_actor("officer"),
        credential,
        signed,
        level=request.level,
        input_sha256=hashlib.sha256(pdf).hexdigest(),
        certified=request.certify,
    )
    return signed


def record_signature(
    engine: Engine,
    action: Action,
    actor: Actor,
    credential: Credential,
    signed: bytes,
    **details: DetailValue,
) -> None:
    """Commit the audit event of a one-shot signature; only then is the PDF written out."""
    event = AuditEvent(
        time=datetime.now(UTC),
        action=action,
        actor=actor,
        outcome=Outcome(success=True),
        subject=Subject(
            document_sha256=hashlib.sha256(signed).hexdigest(),
            certificate_serial=credential.serial,
            key_id=credential.key_id,
        ),
        details={"credential_id": credential.id, **details},
    )
    try:
        with engine.begin() as connection:
            AuditLog.append(connection, event)
    except SQLAlchemyError as ex:
        # Not committed, so the signed PDF is not written either: nothing unaudited leaves.
        raise StorageError(
            f"the audit event of the signature could not be committed ({type(ex).__name__}); "
            "nothing was written"
        ) from ex


def authorised(
    session: SigningSession, credential_id: int, pin_file: Path | None, role: str, otp: str | None
) -> None:
    """The one activation step of the command line: the PIN from ``--pin-file``,
    ``KYSO_PIN`` or a prompt and, when the credential's policy asks for it, the holder's
    one-time code from ``--otp``, ``KYSO_OTP`` or a prompt."""
    pin = read_pin(pin_file, prompt=f"PIN of credential {credential_id}", confirm=False)
    if otp is None and session.activation.policy(credential_id) is ActivationPolicy.PIN_OTP:
        otp = typer.prompt(f"One-time code of the holder of credential {credential_id}")
    session.activation.activate_at_console(
        credential_id, pin=pin, otp=otp, actor=signing_actor(role)
    )


@app.command("sign")
def sign_command(
    source: Annotated[
        Path, typer.Argument(metavar="IN", help="The PDF to sign (with --batch: a folder).")
    ],
    out: Annotated[
        Path,
        typer.Option("-o", "--out", help="Signed PDF to write (with --batch: a folder)."),
    ],
    credential: CredentialOption,
    level: LevelOption = None,
    visible: Annotated[
        bool | None,
        typer.Option(
            "--visible/--invisible",
            help="Draw the officer's signature image (default: visible when a place is given).",
        ),
    ] = None,
    field: FieldOption = None,
    page: PageOption = None,
    rect: RectOption = None,
    anchor: AnchorOption = None,
    certify: Annotated[
        bool, typer.Option("--certify", help="Certify (DocMDP P=2) and reserve the seal field.")
    ] = False,
    batch: Annotated[
        bool, typer.Option("--batch", help=f"Sign every *.pdf of IN (at most {MAX_BATCH_FILES}).")
    ] = False,
    force: ForceOption = False,
    pin_file: PinFileOption = None,
    otp: OtpOption = None,
) -> None:
    """Sign a PDF (PAdES) with a credential on the HSM; with --batch, every PDF of a folder."""
    placement = placement_from_options(field, page, rect, anchor)
    if visible is False and placement is not None:
        raise SigningOptionError("--invisible takes no --field, --rect or --anchor")
    request = SignRequest(
        credential_id=credential,
        level=level or settings().signing_level,
        visible=placement is not None if visible is None else visible,
        placement=placement,
        certify=certify,
    )
    if batch:
        failed = sign_batch(source, out, request, force=force, pin_file=pin_file, otp=otp)
        if failed:
            raise typer.Exit(1)
        return
    if source.is_dir():
        raise SigningOptionError(f"{source} is a folder; pass --batch to sign the PDFs in it")
    refuse_existing(out, force=force)
    limit = settings().signing_max_bytes
    pdf = read_limited(source, limit, what="PDF")
    with open_signing() as session:
        authorised(session, credential, pin_file, "officer", otp)
        signed = sign_document(session, pdf, request)
    write_output(out, signed, force=force)
    typer.echo(
        f"signed {out} (credential {credential}, PAdES {request.level}, "
        f"SHA-256 {hashlib.sha256(signed).hexdigest()})"
    )


def batch_inputs(source: Path, out: Path) -> list[Path]:
    """The PDFs of a batch folder, by name; refuses more than :data:`MAX_BATCH_FILES`."""
    if not source.is_dir():
        raise FileAccessError(f"{source} is not a folder")
    if out.exists() and not out.is_dir():
        raise FileAccessError(f"{out} is not a folder")
    if out.exists() and out.resolve() == source.resolve():
        raise SigningOptionError("the output folder must not be the input folder")
    found: list[Path] = []
    try:
        for entry in source.iterdir():
            if entry.suffix.lower() == ".pdf" and entry.is_file():
                found.append(entry)
                if len(found) > MAX_BATCH_FILES:
                    raise BatchTooLargeError(
                        f"{source} holds more than {MAX_BATCH_FILES} PDFs; split the batch"
                    )
    except OSError as ex:
        raise FileAccessError(f"cannot list {source}: {ex.strerror}") from None
    return sorted(found, key=lambda p: p.name)


def sign_batch(
    source: Path,
    out: Path,
    request: SignRequest,
    *,
    force: bool,
    pin_file: Path | None,
    otp: str | None,
) -> int:
    """Sign every PDF of ``source`` into ``out`` (same names); returns how many failed.

    A PDF whose output already exists is skipped (unless ``force``), so a batch that was
    interrupted signs nothing twice when it is run again: outputs are written whole or not
    at all. The PIN is asked and checked once. A document's own problem (not a PDF, a
    placement that does not fit) fails that document only; anything else — the HSM, the
    credential, the database — stops the batch, and the rest is left for a re-run.
    """
    inputs = batch_inputs(source, out)
    present = set() if force else {p for p in inputs if (out / p.name).exists()}
    pending = [p for p in inputs if p not in present]
    skipped = len(present)
    for path in inputs:
        if path in present:
            typer.echo(f"skipped {path.name}: already in {out}")
    if not pending:
        typer.echo(f"nothing to sign: {len(inputs)} PDF(s), all already in {out}")
        return 0
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as ex:
        raise FileAccessError(f"cannot create {out}: {ex.strerror}") from None
    limit = settings().signing_max_bytes
    signed = failed = 0
    stopped: str | None = None
    console = Console(stderr=True)
    # Result lines go above the live bar when both streams are this terminal; otherwise to
    # standard output, where scripts read them.
    above_bar = console.is_terminal and sys.stdout.isatty()
    with open_signing() as session:
        authorised(session, request.credential_id, pin_file, "officer", otp)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
            redirect_stdout=False,
            redirect_stderr=False,
        ) as progress:

            def report(line: str) -> None:
                if above_bar:
                    progress.console.print(line, markup=False, highlight=False, soft_wrap=True)
                else:
                    typer.echo(line)

            task = progress.add_task("signing", total=len(pending))
            for path in pending:
                progress.update(task, description=path.name[:40])
                try:
                    pdf = read_limited(path, limit, what="PDF")
                    write_output(out / path.name, sign_document(session, pdf, request), force=force)
                except (SignerError, FileAccessError, OutputExistsError) as ex:
                    failed += 1
                    report(f"FAILED {path.name}: {ex.diagnostics()}")
                except (HsmError, PkiError, KysoError, AuditError) as ex:
                    failed += 1
                    report(f"FAILED {path.name}: {ex.diagnostics()}")
                    stopped = ex.code
                    break
                else:
                    signed += 1
                    report(f"signed {path.name}")
                progress.advance(task)
    not_attempted = len(pending) - signed - failed
    summary = (
        f"{signed} signed, {skipped} already present, {failed} failed"
        f" of {len(inputs)} PDF(s) into {out}"
    )
    if stopped is not None:
        summary += f"; stopped [{stopped}], {not_attempted} not attempted (run again to continue)"
    typer.echo(summary)
    return failed


@app.command("seal")
def seal_command(
    source: Annotated[Path, typer.Argument(metavar="IN", help="The officer-signed PDF.")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Sealed PDF to write.")],
    credential: CredentialOption,
    number: Annotated[
        str | None,
        typer.Option("--number", help="Number/symbol printed on the stamp, e.g. 12/XN-CAP-BT."),
    ] = None,
    attachment: Annotated[
        bool,
        typer.Option(
            "--attachment",
            help="Corner stamp of an attachment in a separate file (needs --number).",
        ),
    ] = False,
    verify_url: Annotated[
        str | None,
        typer.Option(
            "--verify-url", help="Link of the QR code (default: the public verification page)."
        ),
    ] = None,
    level: LevelOption = None,
    force: ForceOption = False,
    pin_file: PinFileOption = None,
    otp: OtpOption = None,
) -> None:
    """The agency seal signature over an officer-signed PDF outside the registry, or with
    --attachment the agency signature of an attachment."""
    if attachment and number is None:
        raise SigningOptionError("--attachment needs --number (the main document's number)")
    if attachment and verify_url is not None:
        raise SigningOptionError("an attachment's stamp has no QR code; drop --verify-url")
    refuse_existing(out, force=force)
    current = settings()
    chosen: Level = level or current.signing_level
    pdf = read_limited(source, current.signing_max_bytes, what="PDF")
    with open_signing() as session:
        authorised(session, credential, pin_file, "clerk", otp)
        inspect_pdf(pdf, max_size=current.signing_max_bytes, max_pages=current.signing_max_pages)
        sealing = session.signing.service.credential(credential, level=chosen)
        if sealing.unit_id is None or sealing.person_id is not None:
            raise WrongCredentialError(f"credential {credential} is not a unit's seal")
        unit = session.authority.unit(sealing.unit_id)
        signed_at = datetime.now(VIETNAM_TIME).replace(microsecond=0)
        if attachment:
            assert number is not None
            appearance = attachment_signature(
                pdf, number=number, signed_at=signed_at, field_name=SEAL_FIELD
            )
        else:
            appearance = seal_signature(
                pdf,
                officer_field=OFFICER_FIELD,
                seal_png=session.signing.images.get(StampImageKind.SEAL, unit.id),
                agency_name=unit.name,
                signed_at=signed_at,
                verify_url=verify_url or f"{current.base_url}/v",
                field_name=SEAL_FIELD,
                number=number,
            )
        signed = session.signing.service.sign(
            pdf, credential, level=chosen, appearance=appearance, reason="Đóng dấu"
        )
        record_signature(
            session.engine,
            Action.DOCUMENT_SEALED,
            signing_actor("clerk"),
            sealing,
            signed,
            level=chosen,
            input_sha256=hashlib.sha256(pdf).hexdigest(),
            number=number,
            attachment=attachment,
        )
    write_output(out, signed, force=force)
    typer.echo(
        f"sealed {out} (credential {credential}, PAdES {chosen}, "
        f"SHA-256 {hashlib.sha256(signed).hexdigest()})"
    )


def _document_lines(document: Document) -> list[str]:
    lines = [
        f"document {document.id}\t{document.status.value}\t{document.document_type}\t"
        f"unit {document.unit_id}\t{document.title}",
        f"  number: {document.number_text or '-'}\tissued: "
        f"{document.issued_at.isoformat() if document.issued_at else '-'}",
        f"  verify: {document.verify_url}",
    ]
    lines += [
        f"  revision {r.revision}\t{r.kind.value}\t{r.sha256}\t{r.size} bytes\t"
        f"{r.created_at.isoformat()}\tcredential {r.credential_id or '-'}"
        for r in document.revisions
    ]
    return lines


def _show_document(document: Document, *, as_json: bool) -> None:
    if as_json:
        echo_json(document.as_dict())
        return
    for line in _document_lines(document):
        typer.echo(line)


@issue_app.command("upload")
def issue_upload(
    source: Annotated[Path, typer.Argument(metavar="IN", help="The draft PDF.")],
    document_type: Annotated[str, typer.Option("--type", help="Form code, e.g. CT07.")],
    unit: Annotated[int, typer.Option("--unit", min=1, max=2**62, help="Issuing unit id.")],
    service: Annotated[str, typer.Option("--service", help="Requesting service, e.g. residence.")],
    subject: Annotated[
        str, typer.Option("--subject", help="Whom the document is about (CCCD number).")
    ],
    title: Annotated[str | None, typer.Option("--title", help="Title (default: the type's).")] = (
        None
    ),
    idempotency_key: IdempotencyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a draft PDF; prints the document id."""
    meta = DraftMetadata(
        document_type=document_type,
        unit_id=unit,
        service=service,
        subject_person_id=subject,
        title=title,
    )
    pdf = read_limited(source, settings().signing_max_bytes, what="PDF")
    with open_signing() as session:
        document = session.signing.registry.upload(
            pdf, meta, cli_actor(), idempotency_key=idempotency_key
        )
    if as_json:
        echo_json(document.as_dict())
    else:
        typer.echo(document.id)


@issue_app.command("sign")
def issue_sign(
    document_id: DocumentArg,
    credential: CredentialOption,
    field: FieldOption = None,
    page: PageOption = None,
    rect: RectOption = None,
    anchor: AnchorOption = None,
    idempotency_key: IdempotencyOption = None,
    pin_file: PinFileOption = None,
    otp: OtpOption = None,
    as_json: JsonOption = False,
) -> None:
    """The competent officer signs the draft (visible, certifying, at KYSO_SIGNING_LEVEL)."""
    placement = placement_from_options(field, page, rect, anchor)
    with open_signing() as session:
        authorised(session, credential, pin_file, "officer", otp)
        document = session.signing.registry.sign(
            document_id,
            credential,
            signing_actor("officer"),
            idempotency_key=idempotency_key,
            placement=placement,
        )
    _show_document(document, as_json=as_json)


@issue_app.command("seal")
def issue_seal(
    document_id: DocumentArg,
    credential: CredentialOption,
    idempotency_key: IdempotencyOption = None,
    pin_file: PinFileOption = None,
    otp: OtpOption = None,
    as_json: JsonOption = False,
) -> None:
    """The clerk seals the officer-signed document with the unit's seal; it is issued."""
    with open_signing() as session:
        authorised(session, credential, pin_file, "clerk", otp)
        document = session.signing.registry.seal(
            document_id, credential, signing_actor("clerk"), idempotency_key=idempotency_key
        )
    _show_document(document, as_json=as_json)


@issue_app.command("show")
def issue_show(document_id: DocumentArg, as_json: JsonOption = False) -> None:
    """A document's status, number and revisions with their SHA-256."""
    with open_signing() as session:
        document = session.signing.registry.document(document_id)
    _show_document(document, as_json=as_json)


@issue_app.command("pdf")
def issue_pdf(
    document_id: DocumentArg,
    out: Annotated[Path, typer.Option("-o", "--out", help="Where to write the PDF.")],
    revision: Annotated[
        int | None, typer.Option("--revision", min=0, max=1000, help="Revision (default latest).")
    ] = None,
    force: ForceOption = False,
) -> None:
    """Write a revision of a document's PDF (checked against its SHA-256)."""
    refuse_existing(out, force=force)
    with open_signing() as session:
        pdf = session.signing.registry.pdf(document_id, revision)
    write_output(out, pdf, force=force)
    typer.echo(f"wrote {out} ({len(pdf)} bytes, SHA-256 {hashlib.sha256(pdf).hexdigest()})")


def _set_stamp_image(kind: StampImageKind, owner_id: int, file: Path) -> str:
    png = read_limited(file, MAX_PNG_BYTES, what="image")
    with open_signing() as session:
        # Unknown owners are refused here: the image table has no foreign key to them.
        if kind is StampImageKind.OFFICER:
            session.authority.person(owner_id)
        else:
            session.authority.unit(owner_id)
        return session.signing.images.set(kind, owner_id, png, cli_actor())


@officer_app.command("signature-image")
def officer_signature_image(
    person_id: Annotated[int, typer.Argument(min=1, max=2**62, help="Person id.")],
    file: Annotated[Path, typer.Argument(help="Transparent PNG of the handwritten signature.")],
) -> None:
    """Set the officer's signature image drawn in visible signatures (audited)."""
    sha256 = _set_stamp_image(StampImageKind.OFFICER, person_id, file)
    typer.echo(f"signature image of person {person_id}: SHA-256 {sha256}")


@unit_app.command("seal-image")
def unit_seal_image(
    unit_id: Annotated[int, typer.Argument(min=1, max=2**62, help="Unit id.")],
    file: Annotated[Path, typer.Argument(help="The red seal, PNG with its DPI for real size.")],
) -> None:
    """Set the unit's seal image drawn in seal signatures (audited)."""
    sha256 = _set_stamp_image(StampImageKind.SEAL, unit_id, file)
    typer.echo(f"seal image of unit {unit_id}: SHA-256 {sha256}")


# -- verification ----------------------------------------------------------------------------

VERIFY_EXIT = {"TOTAL-PASSED": 0, "TOTAL-FAILED": 1, "INDETERMINATE": 2}
"""Exit code of ``kyso verify`` per document indication; 3 is an input error."""
VERIFY_INPUT_ERROR = 3
VERDICT_TEXT = {
    "TOTAL-PASSED": "hợp lệ / valid",
    "TOTAL-FAILED": "KHÔNG hợp lệ / NOT valid",
    "INDETERMINATE": "chưa xác định được / indeterminate",
}


@contextmanager
def open_verification() -> Iterator[tuple[VerificationService, SigningServices, AuditLog]]:
    """The verifier (its workers, the trust store, Kyso's own CA status), with the
    signing services for sealing PDF reports, for one CLI command."""
    from kyso.signing import make_signing
    from kyso.verification import VerificationService

    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        with open_pool() as pool:
            authority = make_authority(current, engine, pool)
            pki = PkiServices(authority, current)
            audit, _ = open_audit_log(current, engine, pool, pool.list_keys())
            service = VerificationService(
                settings=current, authority=authority, trust=pki.trust, audit=audit
            )
            try:
                yield service, make_signing(current, engine, pool, pki), audit
            finally:
                service.close()
    finally:
        engine.dispose()


ReportLanguage = Annotated[
    str, typer.Option("--lang", help="Language of the HTML and PDF reports: vi or en.")
]


@app.command("verify")
def verify_command(
    source: Annotated[
        Path | None, typer.Argument(metavar="FILE", help="The signed PDF to check.")
    ] = None,
    batch: Annotated[
        Path | None,
        typer.Option("--batch", metavar="DIR", help="Check every PDF in DIR; print a table."),
    ] = None,
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            help="kyso-default, or kyso-ltv (revocation data must be in the document).",
        ),
    ] = "kyso-default",
    offline: Annotated[
        bool,
        typer.Option("--offline", help="Fetch nothing, not even from the allow-list."),
    ] = False,
    as_json: JsonOption = False,
    html: Annotated[
        Path | None, typer.Option("--html", metavar="OUT", help="Write the HTML report.")
    ] = None,
    pdf: Annotated[
        Path | None,
        typer.Option(
            "--pdf",
            metavar="OUT",
            help="Write the PDF report (sealed when KYSO_REPORT_SEAL_CREDENTIAL is set).",
        ),
    ] = None,
    xml: Annotated[
        Path | None,
        typer.Option("--xml", metavar="OUT", help="Write the ETSI TS 119 102-2 XML report."),
    ] = None,
    language: ReportLanguage = "vi",
    force: ForceOption = False,
) -> None:
    """Validate every signature of untrusted PDFs in isolated worker processes; exit 0
    TOTAL-PASSED, 1 TOTAL-FAILED, 2 INDETERMINATE, 3 input error (a batch: the worst)."""
    # The verifier's modules load only for this command (they add to every CLI start-up).
    from kyso.verification import POLICIES, VerificationInputError, render_report, seal_report

    if policy not in POLICIES:
        raise SigningOptionError(f"--policy must be one of {', '.join(POLICIES)}")
    if language not in ("vi", "en"):
        raise SigningOptionError("--lang must be vi or en")
    if (source is None) == (batch is None):
        raise SigningOptionError("give either FILE or --batch DIR")
    outputs = {"html": html, "pdf": pdf, "xml": xml}
    if batch is not None:
        if any(outputs.values()):
            raise SigningOptionError("--html, --pdf and --xml write one document's report")
        raise typer.Exit(_verify_batch(batch, policy=policy, offline=offline, as_json=as_json))
    assert source is not None
    for path in outputs.values():
        if path is not None:
            refuse_existing(path, force=force)
    current = settings()
    data = read_limited(source, current.verify_max_bytes, what="PDF")
    with open_verification() as (service, signing, audit):
        try:
            verified = service.verify(
                data,
                policy=policy,
                offline=offline,
                thumbnails=html is not None or pdf is not None,
                actor=cli_actor(),
            )
        except VerificationInputError as ex:
            if as_json:
                echo_json({"error": {"code": ex.code, "message": ex.message}})
            else:
                typer.echo(f"error: {ex.diagnostics()}", err=True)
            raise typer.Exit(VERIFY_INPUT_ERROR) from None
        report = verified.report
        for fmt, path in outputs.items():
            if path is None:
                continue
            rendered = render_report(report, fmt, language=language)
            if fmt == "pdf" and current.report_seal_credential is not None:
                rendered = seal_report(
                    signing,
                    audit,
                    rendered,
                    credential_id=current.report_seal_credential,
                    actor=cli_actor(),
                )
            write_output(path, rendered, force=force)
    if as_json:
        echo_json(report)
    else:
        _print_verification(report)
    raise typer.Exit(VERIFY_EXIT[report["indication"]])


def _verify_batch(folder: Path, *, policy: str, offline: bool, as_json: bool) -> int:
    """Verify every PDF of ``folder`` through the worker pool (as many at once as it has
    workers); print a summary table, or a JSON list. Returns the worst exit code:
    1 if any failed, else 3 if any could not be read, else 2 if any is indeterminate."""
    from kyso.verification import VerificationInputError

    if not folder.is_dir():
        raise FileAccessError(f"{folder} is not a folder")
    inputs = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".pdf" and p.is_file())
    if len(inputs) > MAX_BATCH_FILES:
        raise SigningOptionError(f"at most {MAX_BATCH_FILES} PDFs per batch; {folder} has more")
    current = settings()
    console = Console(stderr=True)
    rows: list[tuple[Path, dict[str, Any] | None, str | None]] = []

    def one(path: Path) -> tuple[Path, dict[str, Any] | None, str | None]:
        try:
            data = read_limited(path, current.verify_max_bytes, what="PDF")
            return (
                path,
                service.verify(data, policy=policy, offline=offline, actor=cli_actor()).report,
                None,
            )
        except (VerificationInputError, FileAccessError) as ex:
            return path, None, ex.diagnostics()

    with (
        open_verification() as (service, _, _),
        Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        ) as progress,
    ):
        task = progress.add_task("verifying", total=len(inputs))
        with ThreadPoolExecutor(max_workers=current.verify_workers) as executor:
            for row in executor.map(one, inputs):
                rows.append(row)
                progress.advance(task)
    if as_json:
        echo_json(
            [
                {"file": path.name, "report": report}
                if report is not None
                else {"file": path.name, "error": error}
                for path, report, error in rows
            ]
        )
    else:
        table = Table(title=f"{len(rows)} PDF(s) in {folder}")
        for column in ("file", "kết quả / result", "sub-indication", "signatures"):
            table.add_column(column)
        for path, report, error in rows:
            if report is None:
                table.add_row(path.name, "input error", error or "", "")
                continue
            signers = ", ".join(
                str(s.get("signer") or s["field"]) for s in report.get("signatures", [])
            )
            table.add_row(
                path.name,
                VERDICT_TEXT[report["indication"]],
                report.get("sub_indication") or "",
                signers,
            )
        Console(width=160).print(table)
    indications = {report["indication"] for _, report, _ in rows if report is not None}
    if "TOTAL-FAILED" in indications:
        return 1
    if any(report is None for _, report, _ in rows):
        return VERIFY_INPUT_ERROR
    return 2 if "INDETERMINATE" in indications else 0


def _print_verification(report: dict[str, Any]) -> None:
    indication = report["indication"]
    sub = f" / {report['sub_indication']}" if report.get("sub_indication") else ""
    typer.echo(f"Kết quả / result: {VERDICT_TEXT[indication]} ({indication}{sub})")
    typer.echo(f"chính sách / policy: {report['policy']}; SHA-256 {report['document_sha256']}")
    for signature in report["signatures"]:
        certificate = signature.get("certificate") or {}
        sub = f" / {signature['sub_indication']}" if signature.get("sub_indication") else ""
        typer.echo(
            f"  {signature['field']}: {signature['indication']}{sub} — "
            f"{signature.get('signer') or certificate.get('subject') or '?'}"
        )
        for reason in signature.get("reasons", []):
            typer.echo(f"    {reason['code']}: {reason['text']}")


# -- access: people who sign in, service clients --------------------------------------------

users_app = typer.Typer(
    help="People who sign in: accounts, roles, passwords, second factors.", no_args_is_help=True
)
clients_app = typer.Typer(
    help="Service clients (OAuth2 client credentials) and their secrets.", no_args_is_help=True
)
app.add_typer(users_app, name="users")
app.add_typer(clients_app, name="clients")

MAX_PASSWORD_FILE = 4096
"""Bytes read from a password file at most; a password is 128 characters at most."""

UsernameArg = Annotated[str, typer.Argument(help="Account name, e.g. ngoc.ttb.")]
RoleOption = Annotated[
    Role, typer.Option("--role", help="officer, clerk, unit-admin, auditor or system-admin.")
]
UnitCodeOption = Annotated[
    str | None,
    typer.Option("--unit", help="Unit code, e.g. CAP-BT (every role but system-admin has one)."),
]
PasswordFileOption = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        dir_okay=False,
        help="Read the password from the first line of this file instead of a prompt.",
    ),
]
ClientIdArg = Annotated[str, typer.Argument(help="Client id, e.g. kyso-0123456789abcdef.")]


class PasswordSourceError(KysoError):
    """A password could not be read from where the command was told to read it."""

    code = "kyso.password_source"


def read_password(password_file: Path | None, *, prompt: str) -> str:
    """A password from the first line of ``--password-file``, else a hidden prompt asked
    twice. Never from the command line: argv is visible to every user of the machine.
    Errors name the source, never what it holds."""
    if password_file is None:
        password: str = typer.prompt(prompt, hide_input=True, confirmation_prompt=True)
        return password
    try:
        with password_file.open("rb") as source:
            data = source.read(MAX_PASSWORD_FILE + 1)
    except OSError as ex:
        raise PasswordSourceError(
            f"cannot read the password file {password_file}: {ex.strerror}"
        ) from None
    if len(data) > MAX_PASSWORD_FILE:
        raise PasswordSourceError(
            f"the password file {password_file} is larger than {MAX_PASSWORD_FILE} bytes"
        )
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise PasswordSourceError(f"the password file {password_file} is not UTF-8 text") from None
    return lines[0] if lines else ""


@dataclass(frozen=True, kw_only=True)
class AccessSession:
    """What an access command works with: the accounts and clients, and the units they are
    scoped to (named by code on the command line, stored by id). No HSM is opened."""

    store: AccessStore
    """Accounts, sessions and service clients; every change audited."""

    engine: Engine
    """The database, to resolve unit codes."""

    def unit_id(self, code: str | None) -> int | None:
        """The id of the unit with ``code``; None for no code (the whole system)."""
        if code is None:
            return None
        with self.engine.connect() as connection:
            found = connection.execute(
                select(pki_units.c.id).where(pki_units.c.code == code.strip())
            ).scalar_one_or_none()
        if found is None:
            raise AccessNotFoundError(f"no unit with code {code[:40]!r}")
        return int(found)

    def unit_codes(self) -> dict[int, str]:
        """Every unit's code by id, to show units as operators name them."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(pki_units.c.id, pki_units.c.code)).all()
        return {int(row.id): str(row.code) for row in rows}


@contextmanager
def open_access() -> Iterator[AccessSession]:
    current = settings()
    engine = db.make_engine(current.sqlalchemy_url)
    try:
        db.check(engine)
        # Accounts' second-factor secrets are sealed by a key on the HSM.
        with open_pool() as pool:
            yield AccessSession(store=AccessStore(engine, sealer=HsmSealer(pool)), engine=engine)
    finally:
        engine.dispose()


def _user_dict(user: User, codes: dict[int, str]) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role.value,
        "unit": None if user.unit_id is None else codes.get(user.unit_id),
        "unit_id": user.unit_id,
        "person_id": user.person_id,
        "locked": user.locked,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
    }


def _user_line(user: User, codes: dict[int, str]) -> str:
    unit = "-" if user.unit_id is None else codes.get(user.unit_id, str(user.unit_id))
    person = "-" if user.person_id is None else str(user.person_id)
    flags = [name for name, on in (("locked", user.locked), ("disabled", user.disabled)) if on]
    return (
        f"{user.username}\t{user.role.value}\tunit {unit}\tperson {person}\t"
        f"{', '.join(flags) or 'active'}"
    )


def _show_user(session: AccessSession, user: User, *, as_json: bool) -> None:
    codes = session.unit_codes()
    if as_json:
        echo_json(_user_dict(user, codes))
    else:
        typer.echo(_user_line(user, codes))


def _show_totp(username: str, secret: str, *, user: dict[str, Any] | None, as_json: bool) -> None:
    """The one delivery of a TOTP secret: to enrol the person's authenticator app."""
    uri = totp_uri(secret, username)
    if as_json:
        echo_json(
            ({"user": user} if user is not None else {}) | {"totp_secret": secret, "totp_uri": uri}
        )
        return
    typer.echo(f"TOTP secret (shown once; enrol it in the authenticator app now): {secret}")
    typer.echo(f"TOTP URI: {uri}")


@users_app.command("add")
def users_add(
    username: UsernameArg,
    role: RoleOption,
    unit: UnitCodeOption = None,
    person: Annotated[
        int | None,
        typer.Option("--person", min=1, max=2**62, help="The officer or clerk this account is."),
    ] = None,
    password_file: PasswordFileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create an account; prints it and, once, its TOTP secret and otpauth:// URI."""
    password = read_password(password_file, prompt=f"Password for {username}")
    with open_access() as session:
        user, secret = session.store.add_user(
            username=username,
            role=role,
            unit_id=session.unit_id(unit),
            person_id=person,
            password=password,
            actor=cli_actor(),
        )
        codes = session.unit_codes()
    if as_json:
        _show_totp(user.username, secret, user=_user_dict(user, codes), as_json=True)
        return
    typer.echo(_user_line(user, codes))
    _show_totp(user.username, secret, user=None, as_json=False)


@users_app.command("list")
def users_list(as_json: JsonOption = False) -> None:
    """Every account: role, unit code, person, whether it is locked or disabled."""
    with open_access() as session:
        users = session.store.users()
        codes = session.unit_codes()
    if as_json:
        echo_json([_user_dict(u, codes) for u in users])
        return
    if not users:
        typer.echo("no accounts")
    for user in users:
        typer.echo(_user_line(user, codes))


@users_app.command("unlock")
def users_unlock(username: UsernameArg, as_json: JsonOption = False) -> None:
    """Unlock an account locked by wrong sign-ins and clear its failure count."""
    with open_access() as session:
        _show_user(session, session.store.unlock(username, cli_actor()), as_json=as_json)


@users_app.command("disable")
def users_disable(username: UsernameArg, as_json: JsonOption = False) -> None:
    """Stop an account from signing in and end its sessions."""
    with open_access() as session:
        _show_user(session, session.store.disable(username, cli_actor()), as_json=as_json)


@users_app.command("passwd")
def users_passwd(
    username: UsernameArg, password_file: PasswordFileOption = None, as_json: JsonOption = False
) -> None:
    """Set a new password for an account (from --password-file or a hidden prompt)."""
    password = read_password(password_file, prompt=f"New password for {username}")
    with open_access() as session:
        user = session.store.set_password(username, password, cli_actor())
        _show_user(session, user, as_json=as_json)


@users_app.command("reset-totp")
def users_reset_totp(username: UsernameArg, as_json: JsonOption = False) -> None:
    """A new TOTP secret (the old authenticator stops working); printed once with its URI."""
    with open_access() as session:
        secret = session.store.reset_totp(username, cli_actor())
    _show_totp(username, secret, user=None, as_json=as_json)


@users_app.command("role")
def users_role(
    username: UsernameArg,
    role: RoleOption,
    unit: UnitCodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Change an account's role and the unit it is scoped to."""
    with open_access() as session:
        user = session.store.set_role(username, role, session.unit_id(unit), cli_actor())
        _show_user(session, user, as_json=as_json)


def _client_dict(client: Client, codes: dict[int, str]) -> dict[str, Any]:
    return {
        "client_id": client.client_id,
        "name": client.name,
        "unit": None if client.unit_id is None else codes.get(client.unit_id),
        "unit_id": client.unit_id,
        "scopes": format_scopes(client.scopes),
        "revoked": client.revoked,
        "created_at": client.created_at.isoformat(),
        "rotated_at": None if client.rotated_at is None else client.rotated_at.isoformat(),
    }


def _client_line(client: Client, codes: dict[int, str]) -> str:
    unit = "-" if client.unit_id is None else codes.get(client.unit_id, str(client.unit_id))
    return (
        f"{client.client_id}\t{client.name}\tunit {unit}\tscopes {format_scopes(client.scopes)}"
        f"\t{'revoked' if client.revoked else 'active'}"
    )


@clients_app.command("add")
def clients_add(
    name: Annotated[str, typer.Argument(help="What the client is, e.g. 'Cổng dịch vụ công'.")],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            help="Space-separated: sign, seal, verify, documents:read, audit:read, admin.",
        ),
    ],
    unit: UnitCodeOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register a service client; prints its client_id and, once, its secret."""
    wanted = parse_scopes(scopes)
    with open_access() as session:
        client, secret = session.store.add_client(
            name=name, scopes=wanted, unit_id=session.unit_id(unit), actor=cli_actor()
        )
        codes = session.unit_codes()
    if as_json:
        echo_json({"client": _client_dict(client, codes), "client_secret": secret})
        return
    typer.echo(_client_line(client, codes))
    typer.echo(f"client secret (shown once; store it in the client's configuration): {secret}")


@clients_app.command("list")
def clients_list(as_json: JsonOption = False) -> None:
    """Every service client with its unit, scopes and whether it is revoked."""
    with open_access() as session:
        clients = session.store.clients()
        codes = session.unit_codes()
    if as_json:
        echo_json([_client_dict(c, codes) for c in clients])
        return
    if not clients:
        typer.echo("no clients")
    for client in clients:
        typer.echo(_client_line(client, codes))


@clients_app.command("rotate")
def clients_rotate(
    client_id: ClientIdArg,
    grace_hours: Annotated[
        int,
        typer.Option(
            "--grace-hours", min=0, max=24 * 30, help="How long the current secret keeps working."
        ),
    ] = int(ROTATION_GRACE.total_seconds()) // 3600,
    as_json: JsonOption = False,
) -> None:
    """A new secret (printed once); the current one keeps working for the grace period, so
    that the client can be redeployed without downtime."""
    grace = timedelta(hours=grace_hours)
    with open_access() as session:
        secret = session.store.rotate_client(client_id, cli_actor(), grace=grace)
    until = (datetime.now(UTC) + grace).replace(microsecond=0).isoformat()
    if as_json:
        echo_json({"client_id": client_id, "client_secret": secret, "previous_valid_until": until})
        return
    typer.echo(f"{client_id}: the previous secret works until {until}")
    typer.echo(f"client secret (shown once; store it in the client's configuration): {secret}")


@clients_app.command("revoke")
def clients_revoke(client_id: ClientIdArg, as_json: JsonOption = False) -> None:
    """End a client now: its secrets and the tokens issued to it stop working."""
    with open_access() as session:
        client = session.store.revoke_client(client_id, cli_actor())
        codes = session.unit_codes()
    if as_json:
        echo_json(_client_dict(client, codes))
    else:
        typer.echo(_client_line(client, codes))


def _run_guarded(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except (HsmError, KysoError, AuditError, PkiError, SignerError) as ex:
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
