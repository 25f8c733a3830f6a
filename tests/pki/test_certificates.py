"""Certificate issuance with keys on SoftHSM, checked independently by openssl and
cryptography; PKCS#10 requests; parsing of certificates and requests from outside."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import algos, keys, x509
from asn1crypto.pem import armor
from cryptography import x509 as crypto_x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InvalidCertificateError

from hsm import BlockingSessionPool, HashAlg, KeyInfo, KeySpec
from pki.certificates import (
    MAX_SERIAL,
    build_csr,
    certificate_matches_key,
    issue_certificate,
    load_certificates,
    load_csr,
    random_serial,
    to_pem,
    x509_time,
)
from pki.errors import InvalidInputError, PkiError
from pki.keysource import X509Signer
from pki.names import ca_subject, officer_subject, organisation_subject
from pki.profiles import (
    OFFICER_POLICY_OID,
    SEAL_POLICY_OID,
    PkiUrls,
    Profile,
    default_validity,
)
from pki.signing import HsmX509Signer
from tests.conftest import make_token

START = datetime.now(UTC) - timedelta(hours=1)
ROOT_URLS = PkiUrls(
    crl="http://pki.kyso.example/root.crl", ca_issuers="http://pki.kyso.example/root.cer"
)
LEAF_URLS = PkiUrls(
    ocsp="http://pki.kyso.example/ocsp",
    ca_issuers="http://pki.kyso.example/issuing.cer",
    crl="http://pki.kyso.example/issuing.crl",
)
OFFICER = officer_subject(
    province="Thành phố Hồ Chí Minh",
    locality="Phường Bến Thành",
    ministry="Bộ Công an",
    unit="Công an phường Bến Thành",
    full_name="Nguyễn Văn Ánh",
    cccd="079099000123",
)
SEAL = organisation_subject(
    province="Thành phố Hồ Chí Minh",
    locality="Phường Bến Thành",
    ministry="Bộ Công an",
    unit="Công an phường Bến Thành",
)
EMAIL = "anh.nv@congan.gov.vn"


@dataclass(frozen=True)
class Chain:
    """A root and an issuing CA whose keys are on the HSM."""

    root: x509.Certificate
    root_signer: HsmX509Signer
    issuing: x509.Certificate
    issuing_signer: HsmX509Signer


def issue_chain(
    pool: BlockingSessionPool,
    spec: KeySpec,
    *,
    hash_alg: HashAlg = HashAlg.SHA256,
    pss: bool = False,
) -> Chain:
    root_signer, issuing_signer = (
        HsmX509Signer(pool, pool.generate_key(spec, label=label), hash_alg=hash_alg, pss=pss)
        for label in (f"root {spec.value}", f"issuing {spec.value}")
    )
    root = issue_certificate(
        profile=Profile.ROOT_CA,
        subject=ca_subject(common_name=f"Kyso Root CA {spec.value}", organisation="Bộ Công an"),
        public_key=root_signer.public_key,
        signer=root_signer,
        issuer=None,
        not_before=START,
        not_after=START + default_validity(Profile.ROOT_CA),
    )
    issuing = issue_certificate(
        profile=Profile.ISSUING_CA,
        subject=ca_subject(common_name=f"Kyso Issuing CA {spec.value}", organisation="Bộ Công an"),
        public_key=issuing_signer.public_key,
        signer=root_signer,
        issuer=root,
        not_before=START,
        not_after=START + default_validity(Profile.ISSUING_CA),
        urls=ROOT_URLS,
    )
    return Chain(root, root_signer, issuing, issuing_signer)


def issue_leaf(
    chain: Chain,
    key: KeyInfo,
    profile: Profile,
    *,
    subject: x509.Name = OFFICER,
    email: str | None = None,
    urls: PkiUrls | None = LEAF_URLS,
) -> x509.Certificate:
    return issue_certificate(
        profile=profile,
        subject=subject,
        public_key=keys.PublicKeyInfo.load(key.public_key),
        signer=chain.issuing_signer,
        issuer=chain.issuing,
        not_before=START,
        not_after=START + default_validity(profile),
        urls=urls,
        email=email,
    )


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", *map(str, args)], capture_output=True, text=True, check=False, timeout=30
    )


def write(directory: Path, name: str, *items: x509.Certificate) -> Path:
    path = directory / name
    path.write_bytes(b"".join(to_pem(item) for item in items))
    return path


def openssl_verify(
    directory: Path, chain: Chain, leaf: x509.Certificate, *options: str
) -> subprocess.CompletedProcess[str]:
    return openssl(
        "verify",
        *options,
        "-CAfile",
        write(directory, "root.pem", chain.root),
        "-untrusted",
        write(directory, "issuing.pem", chain.issuing),
        write(directory, "leaf.pem", leaf),
    )


def flip_last_byte(der: bytes) -> bytes:
    # The last octet of a certificate or CSR lies inside its signature value.
    return der[:-1] + bytes([der[-1] ^ 0x01])


@pytest.fixture(scope="module")
def ca_pool(
    softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlockingSessionPool]:
    token = make_token(softhsm_dir, tmp_path_factory.mktemp("certificates"))
    with BlockingSessionPool(token.config()) as pool:
        yield pool


@pytest.fixture(scope="module")
def chain(ca_pool: BlockingSessionPool) -> Chain:
    return issue_chain(ca_pool, KeySpec.EC_P256)


@pytest.fixture(scope="module")
def leaf_key(ca_pool: BlockingSessionPool) -> KeyInfo:
    return ca_pool.generate_key(KeySpec.EC_P256, label="Nguyễn Văn Ánh")


@pytest.fixture(scope="module")
def leaves(chain: Chain, ca_pool: BlockingSessionPool) -> dict[Profile, x509.Certificate]:
    def key(label: str) -> KeyInfo:
        return ca_pool.generate_key(KeySpec.EC_P256, label=label)

    responder = ca_subject(common_name="Kyso OCSP Responder", organisation="Bộ Công an")
    tsa = ca_subject(common_name="Kyso TSA", organisation="Bộ Công an")
    return {
        Profile.ROOT_CA: chain.root,
        Profile.ISSUING_CA: chain.issuing,
        Profile.OFFICER_SIGNING: issue_leaf(
            chain, key("officer"), Profile.OFFICER_SIGNING, email=EMAIL
        ),
        Profile.AGENCY_SEAL: issue_leaf(chain, key("seal"), Profile.AGENCY_SEAL, subject=SEAL),
        Profile.OCSP_RESPONDER: issue_leaf(
            chain,
            key("ocsp"),
            Profile.OCSP_RESPONDER,
            subject=responder,
            urls=PkiUrls(ca_issuers=LEAF_URLS.ca_issuers),
        ),
        Profile.TSA: issue_leaf(chain, key("tsa"), Profile.TSA, subject=tsa),
    }


@pytest.mark.parametrize(
    ("spec", "hash_alg", "pss", "algorithm"),
    [
        (KeySpec.EC_P256, HashAlg.SHA256, False, "ecdsa-with-SHA256"),
        (KeySpec.EC_P384, HashAlg.SHA384, False, "ecdsa-with-SHA384"),
        (KeySpec.RSA_2048, HashAlg.SHA256, False, "sha256WithRSAEncryption"),
        (KeySpec.RSA_2048, HashAlg.SHA256, True, "rsassaPss"),
        (KeySpec.ED25519, HashAlg.SHA256, False, "ED25519"),
    ],
)
def test_chain_verifies_with_openssl(
    ca_pool: BlockingSessionPool,
    leaf_key: KeyInfo,
    tmp_path: Path,
    spec: KeySpec,
    hash_alg: HashAlg,
    pss: bool,
    algorithm: str,
) -> None:
    chain = issue_chain(ca_pool, spec, hash_alg=hash_alg, pss=pss)
    leaf = issue_leaf(chain, leaf_key, Profile.OFFICER_SIGNING, email=EMAIL)
    result = openssl_verify(tmp_path, chain, leaf)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("leaf.pem: OK")
    text = openssl("x509", "-in", tmp_path / "leaf.pem", "-noout", "-text").stdout
    assert f"Signature Algorithm: {algorithm}" in text
    for certificate in (chain.root, chain.issuing, leaf):
        crypto_x509.load_der_x509_certificate(certificate.dump())

    tampered = x509.Certificate.load(flip_last_byte(leaf.dump()))
    result = openssl_verify(tmp_path, chain, tampered)
    assert result.returncode != 0
    assert "certificate signature failure" in result.stderr


@pytest.mark.parametrize(
    ("profile", "purpose"),
    [
        (Profile.OFFICER_SIGNING, None),
        (Profile.AGENCY_SEAL, None),
        (Profile.OCSP_RESPONDER, "ocsphelper"),
        (Profile.TSA, "timestampsign"),
    ],
)
def test_each_leaf_verifies_with_openssl(
    chain: Chain,
    leaves: dict[Profile, x509.Certificate],
    tmp_path: Path,
    profile: Profile,
    purpose: str | None,
) -> None:
    options = ("-purpose", purpose) if purpose else ()
    result = openssl_verify(tmp_path, chain, leaves[profile], *options)
    assert result.returncode == 0, result.stderr


def test_only_the_tsa_certificate_fits_the_timestamping_purpose(
    chain: Chain, leaves: dict[Profile, x509.Certificate], tmp_path: Path
) -> None:
    # openssl's timestampsign purpose insists on a critical EKU with timeStamping only.
    result = openssl_verify(
        tmp_path, chain, leaves[Profile.OFFICER_SIGNING], "-purpose", "timestampsign"
    )
    assert result.returncode != 0
    assert "unsuitable certificate purpose" in result.stderr


@pytest.mark.parametrize(
    ("profile", "key_usage", "extended_key_usage", "valid"),
    [
        (Profile.OFFICER_SIGNING, {"digital_signature", "non_repudiation"}, None, True),
        (Profile.AGENCY_SEAL, {"digital_signature", "non_repudiation"}, None, True),
        (Profile.TSA, {"digital_signature"}, {"time_stamping"}, True),
        (Profile.OCSP_RESPONDER, {"digital_signature"}, {"ocsp_signing"}, True),
        (Profile.OFFICER_SIGNING, {"digital_signature"}, {"time_stamping"}, False),
        (Profile.TSA, {"non_repudiation"}, None, False),
    ],
)
async def test_pyhanko_certvalidator_accepts_the_profiles(
    chain: Chain,
    leaves: dict[Profile, x509.Certificate],
    profile: Profile,
    key_usage: set[str],
    extended_key_usage: set[str] | None,
    valid: bool,
) -> None:
    context = ValidationContext(trust_roots=[chain.root], other_certs=[chain.issuing])
    validator = CertificateValidator(leaves[profile], validation_context=context)
    validation = validator.async_validate_usage(  # type: ignore[no-untyped-call]
        key_usage, extended_key_usage, extended_optional=extended_key_usage is None
    )
    if valid:
        path = await validation
        assert len(path) == 3
    else:
        with pytest.raises(InvalidCertificateError):
            await validation


def _text(directory: Path, certificate: x509.Certificate) -> str:
    path = write(directory, "certificate.pem", certificate)
    result = openssl("x509", "-in", path, "-noout", "-text", "-nameopt", "utf8")
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_openssl_shows_the_officer_profile(
    leaves: dict[Profile, x509.Certificate], tmp_path: Path
) -> None:
    text = _text(tmp_path, leaves[Profile.OFFICER_SIGNING])
    assert (
        "Subject: C=VN, ST=Thành phố Hồ Chí Minh, L=Phường Bến Thành, O=Bộ Công an, "
        "OU=Công an phường Bến Thành, CN=Nguyễn Văn Ánh, UID=CCCD:079099000123"
    ) in text
    assert "Issuer: C=VN, O=Bộ Công an, CN=Kyso Issuing CA ec-p256" in text
    assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in text
    assert "X509v3 Key Usage: critical\n                Digital Signature, Non Repudiation" in text
    assert f"email:{EMAIL}" in text
    assert f"Policy: {OFFICER_POLICY_OID}" in text
    assert "OCSP - URI:http://pki.kyso.example/ocsp" in text
    assert "CA Issuers - URI:http://pki.kyso.example/issuing.cer" in text
    assert "URI:http://pki.kyso.example/issuing.crl" in text
    assert "Extended Key Usage" not in text


def test_openssl_shows_the_other_profiles(
    leaves: dict[Profile, x509.Certificate], tmp_path: Path
) -> None:
    root = _text(tmp_path, leaves[Profile.ROOT_CA])
    assert "CA:TRUE\n" in root
    assert "Certificate Sign, CRL Sign" in root
    assert "Authority Key Identifier" not in root
    issuing = _text(tmp_path, leaves[Profile.ISSUING_CA])
    assert "CA:TRUE, pathlen:0" in issuing
    assert "X509v3 Any Policy" in issuing
    assert "URI:http://pki.kyso.example/root.crl" in issuing
    tsa = _text(tmp_path, leaves[Profile.TSA])
    assert "X509v3 Extended Key Usage: critical\n                Time Stamping\n" in tsa
    assert "X509v3 Key Usage: critical\n                Digital Signature\n" in tsa
    responder = _text(tmp_path, leaves[Profile.OCSP_RESPONDER])
    assert "X509v3 Extended Key Usage: \n                OCSP Signing\n" in responder
    assert "OCSP No Check" in responder
    seal = _text(tmp_path, leaves[Profile.AGENCY_SEAL])
    assert "CN=Công an phường Bến Thành" in seal
    assert "OU=" not in seal
    assert f"Policy: {SEAL_POLICY_OID}" in seal
    assert "Subject Alternative Name" not in seal


_COMMON = {
    ExtensionOID.BASIC_CONSTRAINTS: True,
    ExtensionOID.KEY_USAGE: True,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER: False,
}
_ISSUED = {**_COMMON, ExtensionOID.AUTHORITY_KEY_IDENTIFIER: False}
_PUBLISHED = {
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: False,
    ExtensionOID.CRL_DISTRIBUTION_POINTS: False,
}


@pytest.mark.parametrize(
    ("profile", "extensions", "key_usage", "eku"),
    [
        (Profile.ROOT_CA, _COMMON, {"key_cert_sign", "crl_sign"}, None),
        (
            Profile.ISSUING_CA,
            {**_ISSUED, **_PUBLISHED, ExtensionOID.CERTIFICATE_POLICIES: False},
            {"key_cert_sign", "crl_sign"},
            None,
        ),
        (
            Profile.OFFICER_SIGNING,
            {
                **_ISSUED,
                **_PUBLISHED,
                ExtensionOID.CERTIFICATE_POLICIES: False,
                ExtensionOID.SUBJECT_ALTERNATIVE_NAME: False,
            },
            {"digital_signature", "content_commitment"},
            None,
        ),
        (
            Profile.AGENCY_SEAL,
            {**_ISSUED, **_PUBLISHED, ExtensionOID.CERTIFICATE_POLICIES: False},
            {"digital_signature", "content_commitment"},
            None,
        ),
        (
            Profile.OCSP_RESPONDER,
            {
                **_ISSUED,
                ExtensionOID.AUTHORITY_INFORMATION_ACCESS: False,
                ExtensionOID.EXTENDED_KEY_USAGE: False,
                ExtensionOID.OCSP_NO_CHECK: False,
            },
            {"digital_signature"},
            ExtendedKeyUsageOID.OCSP_SIGNING,
        ),
        (
            Profile.TSA,
            {**_ISSUED, **_PUBLISHED, ExtensionOID.EXTENDED_KEY_USAGE: True},
            {"digital_signature"},
            ExtendedKeyUsageOID.TIME_STAMPING,
        ),
    ],
)
def test_cryptography_reads_the_profile(
    chain: Chain,
    leaves: dict[Profile, x509.Certificate],
    profile: Profile,
    extensions: dict[crypto_x509.ObjectIdentifier, bool],
    key_usage: set[str],
    eku: crypto_x509.ObjectIdentifier | None,
) -> None:
    certificate = crypto_x509.load_der_x509_certificate(leaves[profile].dump())
    assert certificate.version is crypto_x509.Version.v3
    assert {ext.oid: ext.critical for ext in certificate.extensions} == extensions
    usage = certificate.extensions.get_extension_for_class(crypto_x509.KeyUsage).value
    all_bits = {
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
    }
    assert {bit for bit in all_bits if getattr(usage, bit)} == key_usage
    constraints = certificate.extensions.get_extension_for_class(crypto_x509.BasicConstraints).value
    assert constraints.ca is profile.is_ca
    assert constraints.path_length == (0 if profile is Profile.ISSUING_CA else None)
    ski = certificate.extensions.get_extension_for_class(crypto_x509.SubjectKeyIdentifier)
    assert (
        ski.value.digest
        == crypto_x509.SubjectKeyIdentifier.from_public_key(certificate.public_key()).digest
    )
    if profile is not Profile.ROOT_CA:
        aki = certificate.extensions.get_extension_for_class(crypto_x509.AuthorityKeyIdentifier)
        issuer = chain.root if profile is Profile.ISSUING_CA else chain.issuing
        assert aki.value.key_identifier == issuer.key_identifier
    if eku is not None:
        usages = certificate.extensions.get_extension_for_class(crypto_x509.ExtendedKeyUsage)
        assert list(usages.value) == [eku]


def test_the_key_ids_are_the_hsm_key_ids(chain: Chain) -> None:
    assert chain.root.key_identifier == chain.root_signer.key_id
    assert chain.issuing.key_identifier == chain.issuing_signer.key_id
    assert chain.issuing.authority_key_identifier == chain.root_signer.key_id


def test_the_officer_certificate_carries_the_vietnamese_subject(
    leaves: dict[Profile, x509.Certificate],
) -> None:
    certificate = crypto_x509.load_der_x509_certificate(leaves[Profile.OFFICER_SIGNING].dump())
    subject = certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Nguyễn Văn Ánh"
    assert subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == "CCCD:079099000123"
    san = certificate.extensions.get_extension_for_class(crypto_x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(crypto_x509.RFC822Name) == [EMAIL]


def test_serials_are_random_positive_and_16_octets(
    leaves: dict[Profile, x509.Certificate],
) -> None:
    serials = {random_serial() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(120 < serial.bit_length() <= 127 for serial in serials)
    issued = [certificate["tbs_certificate"]["serial_number"] for certificate in leaves.values()]
    assert len({serial.native for serial in issued}) == len(issued)
    for serial in issued:
        assert len(serial.contents) == 16
        assert serial.contents[0] != 0


def test_an_explicit_serial_of_20_octets_is_accepted(
    chain: Chain, leaf_key: KeyInfo, tmp_path: Path
) -> None:
    certificate = issue_certificate(
        profile=Profile.AGENCY_SEAL,
        subject=SEAL,
        public_key=keys.PublicKeyInfo.load(leaf_key.public_key),
        signer=chain.issuing_signer,
        issuer=chain.issuing,
        not_before=START,
        not_after=START + timedelta(days=30),
        serial=MAX_SERIAL,
        urls=LEAF_URLS,
    )
    assert len(certificate["tbs_certificate"]["serial_number"].contents) == 20
    assert openssl_verify(tmp_path, chain, certificate).returncode == 0


@pytest.mark.parametrize("serial", [0, -1, MAX_SERIAL + 1])
def test_a_serial_out_of_range_is_refused(chain: Chain, leaf_key: KeyInfo, serial: int) -> None:
    with pytest.raises(InvalidInputError) as raised:
        issue_certificate(
            profile=Profile.AGENCY_SEAL,
            subject=SEAL,
            public_key=keys.PublicKeyInfo.load(leaf_key.public_key),
            signer=chain.issuing_signer,
            issuer=chain.issuing,
            not_before=START,
            not_after=START + timedelta(days=30),
            serial=serial,
            urls=LEAF_URLS,
        )
    assert raised.value.code == "pki.invalid_serial"


def test_times_from_2050_are_generalized_time(chain: Chain, tmp_path: Path) -> None:
    assert x509_time(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC)).name == "utc_time"
    assert x509_time(datetime(2050, 1, 1, tzinfo=UTC)).name == "general_time"
    root = issue_certificate(
        profile=Profile.ROOT_CA,
        subject=chain.root.subject,
        public_key=chain.root_signer.public_key,
        signer=chain.root_signer,
        issuer=None,
        not_before=START,
        not_after=datetime(2055, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
    )
    validity = root["tbs_certificate"]["validity"]
    assert validity["not_before"].name == "utc_time"
    assert validity["not_after"].name == "general_time"
    # No fractional seconds (RFC 5280 §4.1.2.5.2).
    assert validity["not_after"].chosen.contents == b"20550601120000Z"
    path = write(tmp_path, "root.pem", root)
    result = openssl("x509", "-in", path, "-noout", "-enddate")
    assert result.stdout.strip() == "notAfter=Jun  1 12:00:00 2055 GMT"


def _issue(chain: Chain, key: KeyInfo, **overrides: object) -> x509.Certificate:
    arguments: dict[str, object] = {
        "profile": Profile.OFFICER_SIGNING,
        "subject": OFFICER,
        "public_key": keys.PublicKeyInfo.load(key.public_key),
        "signer": chain.issuing_signer,
        "issuer": chain.issuing,
        "not_before": START,
        "not_after": START + timedelta(days=30),
        "urls": LEAF_URLS,
        "email": EMAIL,
    }
    arguments.update(overrides)
    return issue_certificate(**arguments)  # type: ignore[arg-type]


def test_the_defaults_issue_a_certificate(chain: Chain, leaf_key: KeyInfo) -> None:
    # Guards the refusal tests below: without the override, _issue succeeds.
    assert _issue(chain, leaf_key).subject == OFFICER


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        ({"not_after": START + timedelta(days=36600)}, "pki.invalid_time", "later than the issuer"),
        ({"not_after": START}, "pki.invalid_time", "before not_after"),
        ({"not_before": START.replace(tzinfo=None)}, "pki.invalid_time", "time zone"),
        ({"email": None}, "pki.profile_mismatch", "e-mail"),
        ({"urls": None}, "pki.profile_mismatch", "OCSP or CRL URL"),
        ({"profile": Profile.TSA}, "pki.profile_mismatch", "no e-mail"),
        ({"profile": Profile.ROOT_CA}, "pki.profile_mismatch", "root"),
        ({"policies": ["not an oid"]}, "pki.invalid_policy", "object identifier"),
        ({"policies": ["1.2.3"] * 2}, "pki.invalid_policy", "distinct"),
        ({"email": "ánh@congan.gov.vn"}, "pki.invalid_email", "ASCII"),
        ({"subject": x509.Name.build({})}, "pki.invalid_name", "empty"),
    ],
)
def test_issuance_refuses_bad_requests(
    chain: Chain, leaf_key: KeyInfo, overrides: dict[str, object], code: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        _issue(chain, leaf_key, **overrides)
    assert raised.value.code == code


def test_the_signer_must_hold_the_issuer_key(chain: Chain, leaf_key: KeyInfo) -> None:
    with pytest.raises(InvalidInputError, match="issuer certificate's key") as raised:
        _issue(chain, leaf_key, signer=chain.root_signer)
    assert raised.value.code == "pki.signer_mismatch"
    with pytest.raises(InvalidInputError, match="its own key") as raised:
        _issue(chain, leaf_key, profile=Profile.ROOT_CA, issuer=None, urls=None, email=None)
    assert raised.value.code == "pki.signer_mismatch"


def test_only_a_ca_may_issue(
    chain: Chain, ca_pool: BlockingSessionPool, leaves: dict[Profile, x509.Certificate]
) -> None:
    officer_key = ca_pool.generate_key(KeySpec.EC_P256, label="officer as issuer")
    officer = _issue(chain, officer_key)
    officer_signer = HsmX509Signer(ca_pool, officer_key)
    with pytest.raises(InvalidInputError, match="not a CA") as raised:
        _issue(chain, officer_key, signer=officer_signer, issuer=officer)
    assert raised.value.code == "pki.profile_mismatch"
    # pathLen 0: the issuing CA issues end entities only.
    with pytest.raises(InvalidInputError, match="not a CA that may issue a issuing-ca"):
        _issue(chain, officer_key, profile=Profile.ISSUING_CA, urls=ROOT_URLS, email=None)


@dataclass(frozen=True)
class SignsTheWrongBytes:
    """A key source whose signatures do not cover what it was asked to sign."""

    inner: HsmX509Signer

    @property
    def algorithm(self) -> algos.SignedDigestAlgorithm:
        return self.inner.algorithm

    @property
    def public_key(self) -> keys.PublicKeyInfo:
        return self.inner.public_key

    @property
    def key_id(self) -> bytes:
        return self.inner.key_id

    def sign(self, data: bytes) -> bytes:
        return self.inner.sign(data + b"\x00")


def test_a_broken_signer_is_caught_before_the_certificate_leaves(
    chain: Chain, leaf_key: KeyInfo
) -> None:
    broken: X509Signer = SignsTheWrongBytes(chain.issuing_signer)
    with pytest.raises(PkiError, match="does not verify") as raised:
        _issue(chain, leaf_key, signer=broken)
    assert raised.value.code == "pki.signature_check_failed"
    with pytest.raises(PkiError, match="does not verify") as raised:
        build_csr(subject=OFFICER, signer=broken)
    assert raised.value.code == "pki.signature_check_failed"


def test_urls_must_be_ascii_http() -> None:
    for bad in (
        "ftp://pki.kyso.example/root.crl",
        "http:///root.crl",
        "http://pki.kyso.example/gốc.crl",
        "http://pki.kyso.example/root crl",
        "http://pki.kyso.example/" + "a" * 2048,
        "pki.kyso.example/root.crl",
        "http://[::1/root.crl",
        "http://pki.kyso.example:99999/root.crl",
        "http://pki.kyso.example/root.crl\n",
    ):
        with pytest.raises(InvalidInputError) as raised:
            PkiUrls(crl=bad)
        assert raised.value.code == "pki.invalid_url"
    assert PkiUrls(ocsp="https://pki.kyso.example:8443/ocsp").ocsp is not None


def test_certificate_matches_key(leaves: dict[Profile, x509.Certificate], chain: Chain) -> None:
    officer = leaves[Profile.OFFICER_SIGNING]
    assert certificate_matches_key(chain.issuing, chain.issuing_signer.public_key.dump())
    assert not certificate_matches_key(officer, chain.issuing_signer.public_key.dump())
    assert not certificate_matches_key(officer, b"not a key")


@pytest.mark.parametrize(
    ("spec", "pss"), [(KeySpec.EC_P256, False), (KeySpec.ED25519, False), (KeySpec.RSA_2048, True)]
)
def test_csr_verifies_with_openssl_and_round_trips(
    ca_pool: BlockingSessionPool, tmp_path: Path, spec: KeySpec, pss: bool
) -> None:
    signer = HsmX509Signer(ca_pool, ca_pool.generate_key(spec, label="csr"), pss=pss)
    request = build_csr(subject=OFFICER, signer=signer, email=EMAIL)
    path = tmp_path / "request.pem"
    path.write_bytes(to_pem(request))
    result = openssl("req", "-in", path, "-noout", "-verify", "-text", "-nameopt", "utf8")
    assert "self-signature verify OK" in result.stderr
    assert "CN=Nguyễn Văn Ánh, UID=CCCD:079099000123" in result.stdout
    assert f"email:{EMAIL}" in result.stdout

    for data in (to_pem(request), request.dump()):
        loaded = load_csr(data)
        assert loaded.dump() == request.dump()
    parsed = crypto_x509.load_der_x509_csr(request.dump())
    assert parsed.is_signature_valid
    assert parsed.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == ("Nguyễn Văn Ánh")
    san = parsed.extensions.get_extension_for_class(crypto_x509.SubjectAlternativeName)
    assert san.value.get_values_for_type(crypto_x509.RFC822Name) == [EMAIL]


def test_csr_without_email_has_no_attributes(chain: Chain, tmp_path: Path) -> None:
    request = build_csr(subject=chain.issuing.subject, signer=chain.issuing_signer)
    assert len(request["certification_request_info"]["attributes"]) == 0
    path = tmp_path / "request.der"
    path.write_bytes(request.dump())
    result = openssl("req", "-in", path, "-inform", "DER", "-noout", "-verify")
    assert "self-signature verify OK" in result.stderr


def test_a_csr_with_a_broken_signature_is_refused(chain: Chain, tmp_path: Path) -> None:
    request = build_csr(subject=OFFICER, signer=chain.issuing_signer, email=EMAIL)
    tampered = flip_last_byte(request.dump())
    path = tmp_path / "tampered.der"
    path.write_bytes(tampered)
    # openssl 3.0 req exits 0 either way; the verdict is in the message.
    result = openssl("req", "-in", path, "-inform", "DER", "-noout", "-verify")
    assert "self-signature verify failure" in result.stderr
    with pytest.raises(InvalidInputError, match="signature is invalid") as raised:
        load_csr(tampered)
    assert raised.value.code == "pki.invalid_csr"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x30\x03\x02\x01", "malformed"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "'PRIVATE KEY'"),
        (b"-----BEGIN CERTIFICATE REQUEST-----\nMAA=\n", "not valid PEM"),
        (b"0" * (64 * 1024 + 1), "at most 65536 bytes"),
    ],
)
def test_load_csr_refuses_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        load_csr(data)
    assert raised.value.code == "pki.invalid_csr"


def test_load_csr_refuses_two_requests(chain: Chain) -> None:
    pem = to_pem(build_csr(subject=OFFICER, signer=chain.issuing_signer))
    with pytest.raises(InvalidInputError, match="more than 1") as raised:
        load_csr(pem + pem)
    assert raised.value.code == "pki.invalid_csr"


def test_load_certificates_reads_a_pem_bundle_and_der(
    leaves: dict[Profile, x509.Certificate],
) -> None:
    certificates = list(leaves.values())
    bundle = b"Bundle for the trust store\n".join(to_pem(item) for item in certificates)
    loaded = load_certificates(bundle)
    assert [item.dump() for item in loaded] == [item.dump() for item in certificates]
    (single,) = load_certificates(certificates[2].dump())
    assert single.dump() == certificates[2].dump()
    assert single.subject.native["common_name"] == "Nguyễn Văn Ánh"


def test_load_certificates_is_bounded(leaves: dict[Profile, x509.Certificate]) -> None:
    pem = to_pem(leaves[Profile.ROOT_CA])
    assert len(load_certificates(pem * 16)) == 16
    with pytest.raises(InvalidInputError, match="more than 16") as raised:
        load_certificates(pem * 17)
    assert raised.value.code == "pki.invalid_certificate"
    with pytest.raises(InvalidInputError, match="at most 1048576 bytes"):
        load_certificates(b"\n" * (1024 * 1024) + pem)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"  \n", "empty"),
        (b"\x30\x82\x01\x00garbage", "certificate 1 is malformed"),
        (b"-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n", "'X509 CRL'"),
    ],
)
def test_load_certificates_refuses_bad_input(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        load_certificates(data)
    assert raised.value.code == "pki.invalid_certificate"


def test_load_certificates_refuses_a_truncated_certificate(
    leaves: dict[Profile, x509.Certificate],
) -> None:
    der = leaves[Profile.TSA].dump()
    with pytest.raises(InvalidInputError, match="certificate 1 is malformed"):
        load_certificates(der[:-10])
    pem = to_pem(leaves[Profile.ROOT_CA]) + armor("CERTIFICATE", der[:-10])
    with pytest.raises(InvalidInputError, match="certificate 2 is malformed"):
        load_certificates(pem)
