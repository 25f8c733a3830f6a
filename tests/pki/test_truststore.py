"""The trust store: loading a folder of anchors and intermediates, path validation with
pyhanko-certvalidator cross-checked by openssl, reloading and adding anchors."""

from __future__ import annotations

import stat
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import keys, x509
from cryptography import x509 as crypto_x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from hsm import BlockingSessionPool, KeySpec
from pki.certificates import issue_certificate, load_certificates, to_pem
from pki.errors import ConflictError, InvalidInputError
from pki.names import ca_subject
from pki.profiles import Profile, default_validity
from pki.signing import HsmX509Signer
from pki.truststore import MAX_TRUST_FILES, TrustStore, TrustStoreHolder, fingerprint
from tests.conftest import make_token
from tests.pki.test_certificates import (
    EMAIL,
    LEAF_URLS,
    OFFICER,
    START,
    Chain,
    flip_last_byte,
    issue_chain,
    issue_leaf,
    openssl,
)

GOVERNMENT_CA = "Cơ quan chứng thực số Chính phủ"
GOVERNMENT_O = "Ban Cơ yếu Chính phủ"


@dataclass(frozen=True)
class Pki:
    """Two chains on SoftHSM keys (same names, different keys) and certificates under them."""

    chain: Chain
    stranger: Chain
    officer: x509.Certificate
    expired: x509.Certificate
    government: x509.Certificate


@pytest.fixture(scope="module")
def ts_pool(
    softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlockingSessionPool]:
    token = make_token(softhsm_dir, tmp_path_factory.mktemp("truststore"))
    with BlockingSessionPool(token.config()) as pool:
        yield pool


def _root(pool: BlockingSessionPool, common_name: str) -> x509.Certificate:
    signer = HsmX509Signer(pool, pool.generate_key(KeySpec.EC_P256, label=common_name))
    return issue_certificate(
        profile=Profile.ROOT_CA,
        subject=ca_subject(common_name=common_name, organisation=GOVERNMENT_O),
        public_key=signer.public_key,
        signer=signer,
        issuer=None,
        not_before=START,
        not_after=START + default_validity(Profile.ROOT_CA),
    )


@pytest.fixture(scope="module")
def pki(ts_pool: BlockingSessionPool) -> Pki:
    chain = issue_chain(ts_pool, KeySpec.EC_P256)
    officer_key = ts_pool.generate_key(KeySpec.EC_P256, label="officer")
    expired = issue_certificate(
        profile=Profile.OFFICER_SIGNING,
        subject=OFFICER,
        public_key=keys.PublicKeyInfo.load(officer_key.public_key),
        signer=chain.issuing_signer,
        issuer=chain.issuing,
        not_before=START,
        not_after=START + timedelta(minutes=30),
        urls=LEAF_URLS,
        email=EMAIL,
    )
    return Pki(
        chain=chain,
        stranger=issue_chain(ts_pool, KeySpec.EC_P256),
        officer=issue_leaf(chain, officer_key, Profile.OFFICER_SIGNING, email=EMAIL),
        expired=expired,
        government=_root(ts_pool, GOVERNMENT_CA),
    )


def folder(
    base: Path,
    *,
    anchors: dict[str, list[x509.Certificate]],
    intermediates: dict[str, list[x509.Certificate]] | None = None,
) -> Path:
    for kind, files in (("anchors", anchors), ("intermediates", intermediates or {})):
        (base / kind).mkdir(parents=True, exist_ok=True)
        for name, certificates in files.items():
            (base / kind / name).write_bytes(b"".join(map(to_pem, certificates)))
    return base


def openssl_verify_folder(
    store_dir: Path, certificate: x509.Certificate, *options: str
) -> subprocess.CompletedProcess[str]:
    """openssl verify with the same folder: anchors as -CAfile, intermediates as -untrusted."""
    bundles = {}
    for kind in ("anchors", "intermediates"):
        bundle = store_dir / f"{kind}.bundle"
        bundle.write_bytes(b"".join(path.read_bytes() for path in (store_dir / kind).glob("*.pem")))
        bundles[kind] = bundle
    leaf = store_dir / "leaf.crt"
    leaf.write_bytes(to_pem(certificate))
    untrusted: list[str | Path] = []
    if bundles["intermediates"].stat().st_size:
        untrusted = ["-untrusted", bundles["intermediates"]]
    return openssl("verify", *options, "-CAfile", bundles["anchors"], *untrusted, leaf)


def dumps(certificates: list[x509.Certificate]) -> list[bytes]:
    return [certificate.dump() for certificate in certificates]


def test_an_officer_certificate_chains_to_the_anchor(pki: Pki, tmp_path: Path) -> None:
    chain = pki.chain
    directory = folder(
        tmp_path, anchors={"root.pem": [chain.root]}, intermediates={"ca.pem": [chain.issuing]}
    )
    store = TrustStore.load(directory)
    assert store.source == directory
    assert dumps(list(store.anchors)) == [chain.root.dump()]
    path = store.validate_chain(pki.officer, key_usage={"digital_signature", "non_repudiation"})
    assert dumps(path) == dumps([pki.officer, chain.issuing, chain.root])
    result = openssl_verify_folder(directory, pki.officer)
    assert result.returncode == 0, result.stderr


async def test_the_async_api_is_the_main_one(pki: Pki, tmp_path: Path) -> None:
    chain = pki.chain
    store = TrustStore(anchors=(chain.root,), intermediates=(chain.issuing,))
    path = await store.async_validate_chain(pki.officer, key_usage={"non_repudiation"})
    assert dumps(path) == dumps([pki.officer, chain.issuing, chain.root])
    # Inside a running loop the sync wrapper would deadlock; it refuses instead.
    with pytest.raises(RuntimeError, match="await async_validate_chain"):
        store.validate_chain(pki.officer)


@pytest.mark.parametrize(
    ("anchors", "intermediates", "leaf", "reason"),
    [
        ("root", None, "officer", 'no issuer matching "Common Name: Kyso Issuing CA'),
        # Same names as the real chain, other keys: names alone must not build a path.
        ("stranger", "issuing", "officer", 'no issuer matching "Common Name: Kyso Root CA'),
        ("root", "stranger-issuing", "officer", 'no issuer matching "Common Name: Kyso Issuing'),
        ("root", "issuing", "tampered", "signature of the end-entity certificate could not be"),
    ],
)
def test_a_certificate_without_a_path_to_an_anchor_is_untrusted(
    pki: Pki, tmp_path: Path, anchors: str, intermediates: str | None, leaf: str, reason: str
) -> None:
    chosen = {
        "root": pki.chain.root,
        "stranger": pki.stranger.root,
        "issuing": pki.chain.issuing,
        "stranger-issuing": pki.stranger.issuing,
        "officer": pki.officer,
        "tampered": x509.Certificate.load(flip_last_byte(pki.officer.dump())),
    }
    directory = folder(
        tmp_path,
        anchors={"a.pem": [chosen[anchors]]},
        intermediates={"i.pem": [chosen[intermediates]]} if intermediates else {},
    )
    store = TrustStore.load(directory)
    with pytest.raises(InvalidInputError, match=reason) as raised:
        store.validate_chain(chosen[leaf])
    assert raised.value.code == "pki.untrusted"
    assert "Nguyễn Văn Ánh" in raised.value.message
    assert openssl_verify_folder(directory, chosen[leaf]).returncode != 0


def test_an_expired_certificate_is_valid_only_inside_its_validity(pki: Pki, tmp_path: Path) -> None:
    directory = folder(
        tmp_path,
        anchors={"root.pem": [pki.chain.root]},
        intermediates={"ca.pem": [pki.chain.issuing]},
    )
    store = TrustStore.load(directory)
    with pytest.raises(InvalidInputError, match="expired") as raised:
        store.validate_chain(pki.expired)
    assert raised.value.code == "pki.untrusted"
    inside = START + timedelta(minutes=10)
    assert len(store.validate_chain(pki.expired, moment=inside)) == 3
    assert openssl_verify_folder(directory, pki.expired).returncode != 0
    at = str(int(inside.timestamp()))
    assert openssl_verify_folder(directory, pki.expired, "-attime", at).returncode == 0
    with pytest.raises(InvalidInputError, match="time zone") as raised:
        store.validate_chain(pki.expired, moment=inside.replace(tzinfo=None))
    assert raised.value.code == "pki.invalid_time"


@pytest.mark.parametrize(
    ("key_usage", "extended_key_usage", "message"),
    [
        ({"key_cert_sign"}, None, "purpose of key cert sign"),
        ({"non_repudiation", "key_encipherment"}, None, "purpose of key encipherment"),
        (set(), {"time_stamping"}, "purpose of time stamping"),
    ],
)
def test_a_usage_the_certificate_lacks_is_refused(
    pki: Pki, key_usage: set[str], extended_key_usage: set[str] | None, message: str
) -> None:
    store = TrustStore(anchors=(pki.chain.root,), intermediates=(pki.chain.issuing,))
    with pytest.raises(InvalidInputError, match=message) as raised:
        store.validate_chain(
            pki.officer, key_usage=key_usage, extended_key_usage=extended_key_usage
        )
    assert raised.value.code == "pki.untrusted"


def test_an_empty_folder_is_an_empty_store_that_trusts_nothing(pki: Pki, tmp_path: Path) -> None:
    store = TrustStore.load(tmp_path)
    assert store.anchors == ()
    assert store.intermediates == ()
    assert store.entries() == ()
    # No fallback to the operating system's roots.
    with pytest.raises(InvalidInputError) as raised:
        store.validate_chain(pki.officer, other_certs=[pki.chain.issuing, pki.chain.root])
    assert raised.value.code == "pki.untrusted"
    with pytest.raises(InvalidInputError, match="does not exist") as raised:
        TrustStore.load(tmp_path / "missing")
    assert raised.value.code == "pki.trust_store"


def test_extra_anchors_and_other_certs_complete_the_store(pki: Pki, tmp_path: Path) -> None:
    chain = pki.chain
    # The root is in the folder, given as the internal root, and also in the pool.
    directory = folder(
        tmp_path,
        anchors={"root.pem": [chain.root, chain.root]},
        intermediates={"pool.pem": [chain.root, pki.stranger.issuing]},
    )
    store = TrustStore.load(directory, extra_anchors=[chain.root, pki.government])
    assert dumps(list(store.anchors)) == dumps([chain.root, pki.government])
    assert dumps(list(store.intermediates)) == [pki.stranger.issuing.dump()]
    assert store.is_anchor(chain.root)
    assert not store.is_anchor(chain.issuing)
    path = store.validate_chain(pki.officer, other_certs=[chain.issuing])
    assert dumps(path) == dumps([pki.officer, chain.issuing, chain.root])
    with pytest.raises(InvalidInputError, match=r"extra anchor 1: .* is not a CA") as raised:
        TrustStore.load(directory, extra_anchors=[pki.officer])
    assert raised.value.code == "pki.trust_store"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a certificate at all", "anchors/bad.pem: certificate 1 is malformed"),
        (b"-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n", "anchors/bad.pem: .*CRL"),
        (b"-----BEGIN CERTIFICATE-----\nMAA=\n", "anchors/bad.pem: .*not valid PEM"),
        (b"", "anchors/bad.pem: the certificate is empty"),
        (b"\n" * (1024 * 1024 + 1), "anchors/bad.pem: .*at most 1048576 bytes"),
    ],
)
def test_a_bad_file_is_named(pki: Pki, tmp_path: Path, content: bytes, message: str) -> None:
    directory = folder(tmp_path, anchors={"good.pem": [pki.chain.root]})
    (directory / "anchors" / "bad.pem").write_bytes(content)
    with pytest.raises(InvalidInputError, match=message) as raised:
        TrustStore.load(directory)
    assert raised.value.code == "pki.trust_store"


def test_an_end_entity_or_a_misplaced_file_is_named(pki: Pki, tmp_path: Path) -> None:
    directory = folder(tmp_path, anchors={}, intermediates={"leaf.pem": [pki.officer]})
    with pytest.raises(InvalidInputError, match=r"intermediates/leaf\.pem: .*Ánh.* not a CA"):
        TrustStore.load(directory)
    (directory / "intermediates" / "leaf.pem").unlink()
    (directory / "anchors" / "folder.pem").mkdir()
    with pytest.raises(InvalidInputError, match=r"anchors/folder\.pem is not a regular file"):
        TrustStore.load(directory)
    (directory / "anchors" / "folder.pem").rmdir()
    (directory / "anchors").rmdir()
    (directory / "anchors").write_bytes(to_pem(pki.chain.root))
    with pytest.raises(InvalidInputError, match="anchors/ cannot be listed"):
        TrustStore.load(directory)


def test_too_many_files_are_refused(pki: Pki, tmp_path: Path) -> None:
    half = MAX_TRUST_FILES // 2
    directory = folder(
        tmp_path,
        anchors={f"a{index}.pem": [pki.chain.root] for index in range(half)},
        intermediates={f"i{index}.pem": [pki.chain.issuing] for index in range(half)},
    )
    assert len(TrustStore.load(directory).anchors) == 1
    (directory / "intermediates" / "one-more.pem").write_bytes(to_pem(pki.chain.issuing))
    with pytest.raises(InvalidInputError, match=f"more than {MAX_TRUST_FILES} files") as raised:
        TrustStore.load(directory)
    assert raised.value.code == "pki.trust_store"


def test_reload_picks_up_a_new_anchor_and_keeps_the_old_snapshot_on_error(
    pki: Pki, tmp_path: Path
) -> None:
    directory = folder(tmp_path, anchors={"root.pem": [pki.chain.root]})
    holder = TrustStoreHolder(directory)
    first = holder.current
    with pytest.raises(InvalidInputError):
        first.validate_chain(pki.stranger.issuing)

    (directory / "anchors" / "stranger.pem").write_bytes(to_pem(pki.stranger.root))
    second = holder.reload()
    assert holder.current is second
    assert second.loaded_at >= first.loaded_at
    assert len(second.validate_chain(pki.stranger.issuing)) == 2

    (directory / "anchors" / "broken.pem").write_bytes(b"garbage")
    with pytest.raises(InvalidInputError, match=r"broken\.pem"):
        holder.reload()
    assert holder.current is second
    with pytest.raises(InvalidInputError, match=r"broken\.pem"):
        TrustStoreHolder(directory)


def test_add_anchor_writes_a_file_that_reload_finds(pki: Pki, tmp_path: Path) -> None:
    holder = TrustStoreHolder(tmp_path, extra_anchors=[pki.chain.root])
    entry = holder.add_anchor(to_pem(pki.government), name="government-root")
    assert entry.anchor
    assert entry.subject == f"CN={GOVERNMENT_CA}, O={GOVERNMENT_O}, C=VN"
    assert entry.fingerprint == fingerprint(pki.government)
    assert entry.fingerprint == pki.government.sha256.hex()
    written = tmp_path / "anchors" / f"government-root-{entry.fingerprint}.pem"
    assert [path.name for path in (tmp_path / "anchors").iterdir()] == [written.name]
    assert stat.S_IMODE(written.stat().st_mode) == 0o644
    assert dumps(load_certificates(written.read_bytes())) == [pki.government.dump()]
    result = openssl("x509", "-in", written, "-noout", "-subject", "-nameopt", "utf8")
    assert f"CN={GOVERNMENT_CA}" in result.stdout
    assert holder.current.is_anchor(pki.government)
    assert TrustStoreHolder(tmp_path).current.is_anchor(pki.government)

    with pytest.raises(ConflictError, match="already a trust anchor"):
        holder.add_anchor(pki.government.dump(), name="again")
    with pytest.raises(ConflictError, match="already a trust anchor"):
        holder.add_anchor(to_pem(pki.chain.root), name="internal")


def _self_signed_end_entity() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = crypto_x509.Name([crypto_x509.NameAttribute(NameOID.COMMON_NAME, "Máy chủ web")])
    now = datetime.now(UTC)
    built = (
        crypto_x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(crypto_x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return x509.Certificate.load(built.public_bytes(Encoding.DER))


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("officer", r"CN=Nguyễn Văn Ánh, .* is not a CA certificate"),
        ("self-signed-non-ca", "Máy chủ web is not a CA certificate"),
        ("issuing", "not self-signed"),
        ("bundle", "one anchor at a time, not 2"),
        ("garbage", "the new anchor: certificate 1 is malformed"),
    ],
)
def test_add_anchor_refuses_what_is_not_a_root(
    pki: Pki, tmp_path: Path, which: str, message: str
) -> None:
    data = {
        "officer": to_pem(pki.officer),
        "self-signed-non-ca": to_pem(_self_signed_end_entity()),
        "issuing": to_pem(pki.chain.issuing),
        "bundle": to_pem(pki.government) + to_pem(pki.stranger.root),
        "garbage": b"\x30\x03garbage",
    }[which]
    holder = TrustStoreHolder(tmp_path)
    with pytest.raises(InvalidInputError, match=message) as raised:
        holder.add_anchor(data, name="refused")
    assert raised.value.code == "pki.trust_store"
    assert not (tmp_path / "anchors").exists()
    assert holder.current.anchors == ()


@pytest.mark.parametrize("name", ["", "-x", "gốc", "a/b", "../up", "a" * 65, "a b"])
def test_add_anchor_refuses_a_bad_name(pki: Pki, tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInputError, match="anchor's name") as raised:
        TrustStoreHolder(tmp_path).add_anchor(to_pem(pki.government), name=name)
    assert raised.value.code == "pki.trust_store"


def test_an_intermediate_anchor_must_be_allowed_explicitly(pki: Pki, tmp_path: Path) -> None:
    holder = TrustStoreHolder(tmp_path)
    holder.add_anchor(to_pem(pki.chain.issuing), name="issuing", allow_intermediate=True)
    # The path ends at the explicitly trusted intermediate; the root is not needed.
    path = holder.current.validate_chain(pki.officer)
    assert dumps(path) == dumps([pki.officer, pki.chain.issuing])


def test_a_failed_reload_removes_the_added_anchor(pki: Pki, tmp_path: Path) -> None:
    holder = TrustStoreHolder(tmp_path)
    before = holder.current
    # Dropped in by hand after the holder loaded: the next reload fails.
    (tmp_path / "intermediates").mkdir()
    (tmp_path / "intermediates" / "broken.pem").write_bytes(b"garbage")
    with pytest.raises(InvalidInputError, match=r"intermediates/broken\.pem"):
        holder.add_anchor(to_pem(pki.government), name="government")
    assert list((tmp_path / "anchors").iterdir()) == []
    assert holder.current is before


def test_list_shows_vietnamese_subjects_and_roles(pki: Pki, tmp_path: Path) -> None:
    directory = folder(
        tmp_path,
        anchors={"gov.pem": [pki.government]},
        intermediates={"ca.pem": [pki.chain.issuing]},
    )
    entries = TrustStoreHolder(directory, extra_anchors=[pki.chain.root]).list()
    assert [(entry.subject, entry.anchor) for entry in entries] == [
        ("CN=Kyso Root CA ec-p256, O=Bộ Công an, C=VN", True),
        (f"CN={GOVERNMENT_CA}, O={GOVERNMENT_O}, C=VN", True),
        ("CN=Kyso Issuing CA ec-p256, O=Bộ Công an, C=VN", False),
    ]
    government = entries[1]
    assert government.not_before == START.replace(microsecond=0)
    assert government.not_after == START.replace(microsecond=0) + default_validity(Profile.ROOT_CA)


def test_concurrent_additions_all_land(ts_pool: BlockingSessionPool, tmp_path: Path) -> None:
    roots = [_root(ts_pool, f"CA gốc số {index}") for index in range(6)]
    holder = TrustStoreHolder(tmp_path)
    with ThreadPoolExecutor(max_workers=6) as executor:
        added = list(
            executor.map(
                lambda pair: holder.add_anchor(to_pem(pair[1]), name=f"root-{pair[0]}"),
                enumerate(roots),
            )
        )
        reloads = [executor.submit(holder.reload) for _ in range(6)]
    assert all(future.result() is not None for future in reloads)
    assert {entry.fingerprint for entry in added} == {fingerprint(root) for root in roots}
    assert {entry.fingerprint for entry in holder.list()} == {fingerprint(r) for r in roots}
    assert sorted(entry.subject for entry in holder.reload().entries()) == sorted(
        f"CN=CA gốc số {index}, O={GOVERNMENT_O}, C=VN" for index in range(6)
    )
