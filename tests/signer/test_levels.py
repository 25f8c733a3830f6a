"""PAdES B-T: a signature timestamp from Kyso's own TSA, in process. pyHanko and pdfsig
check the result; a refusing or misbehaving TSA stops the signature."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import cms, core, tsp
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from sqlalchemy import Engine

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool, KeySpec
from pki.authority import Authority
from pki.tsa import TimestampResult
from signer.cms import SigningCredential
from signer.errors import SignerError, TimestampFailedError
from signer.pades import sign_pdf
from signer.timestamps import TOKEN_SIZE_MARGIN, TsaTimestamper, timestamp_reserve
from tests.pki.test_authority import make_authority
from tests.signer.test_pades import TEXT, officer, signed_content, tool, validation_context

SIGNATURE_TIME_STAMP_TOKEN = "1.2.840.113549.1.9.16.2.14"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this pipeline reads the database only through the PKI, whose own tests
    run on both engines."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def b_t_ready(
    authority: Authority, timestamper: TsaTimestamper
) -> tuple[SigningCredential, TsaTimestamper]:
    credential = SigningCredential.prepare(
        officer(authority),
        authority.internal_chain(),
        timestamp_reserve=timestamp_reserve(timestamper),
    )
    return credential, timestamper


def kyso_tsa(authority: Authority) -> TsaTimestamper:
    return TsaTimestamper(respond=authority.timestamp_authority().respond)


def unsigned_token(cms_der: bytes) -> tuple[bytes, cms.ContentInfo]:
    """The SignerInfo's signature value and its one signature timestamp token."""
    signer_info = cms.ContentInfo.load(cms_der)["content"]["signer_infos"][0]
    (attribute,) = signer_info["unsigned_attrs"]
    assert attribute["type"].dotted == SIGNATURE_TIME_STAMP_TOKEN
    (token,) = attribute["values"]
    return signer_info["signature"].native, cms.ContentInfo.load(token.dump())


@pytest.mark.parametrize("key_spec", [KeySpec.EC_P256, KeySpec.RSA_2048])
def test_b_t_validates_with_a_trusted_timestamp(
    engine: Engine, pool: BlockingSessionPool, key_spec: KeySpec
) -> None:
    authority = make_authority(engine, pool, key_spec=key_spec)
    credential, timestamper = b_t_ready(authority, kyso_tsa(authority))
    before = datetime.now(UTC)
    signed = sign_pdf(
        one_page_pdf(TEXT),
        credential,
        pool,
        usable=authority.usable_credential,
        level="B-T",
        timestamper=timestamper,
    )

    signature = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
    status = validate_pdf_signature(signature, validation_context(authority))
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.coverage is SignatureCoverageLevel.ENTIRE_FILE
    stamp = status.timestamp_validity
    assert stamp is not None
    assert stamp.intact
    assert stamp.valid
    assert stamp.trusted
    assert before - timedelta(seconds=2) <= stamp.timestamp <= datetime.now(UTC)

    _, cms_der = signed_content(signed)
    assert len(cms.ContentInfo.load(cms_der).dump()) <= credential.max_cms_size
    signature_value, token = unsigned_token(cms_der)
    tst_info = token["content"]["encap_content_info"]["content"].parsed
    imprint = tst_info["message_imprint"]
    assert imprint["hash_algorithm"]["algorithm"].native == "sha256"
    assert imprint["hashed_message"].native == hashlib.sha256(signature_value).digest()
    # certReq: the TSA's certificate travels in the token
    assert len(token["content"]["certificates"]) >= 1


def test_pdfsig_accepts_b_t(engine: Engine, pool: BlockingSessionPool, tmp_path: Path) -> None:
    assert shutil.which("pdfsig"), "pdfsig (poppler-utils) is not installed"
    authority = make_authority(engine, pool)
    credential, timestamper = b_t_ready(authority, kyso_tsa(authority))
    path = tmp_path / "signed.pdf"
    path.write_bytes(
        sign_pdf(
            one_page_pdf(TEXT), credential, pool, usable=None, level="B-T", timestamper=timestamper
        )
    )
    reported = tool("pdfsig", path)
    assert reported.returncode == 0, reported.stderr
    assert "Signature is Valid" in reported.stdout


def test_reserve_bounds_the_token(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    timestamper = kyso_tsa(authority)
    reserve = timestamp_reserve(timestamper)
    signer = officer(authority)
    b_b = SigningCredential.prepare(signer, authority.internal_chain())
    b_t = SigningCredential.prepare(signer, authority.internal_chain(), timestamp_reserve=reserve)
    assert b_b.timestamp_reserve == 0
    # the token, its attribute (OID 13 bytes, SEQUENCE, SET) and the [1] wrapper, and at
    # most a length octet more for each of the five structures around the SignerInfo
    assert reserve < b_t.max_cms_size - b_b.max_cms_size <= reserve + 25 + 5
    assert len(timestamper(bytes(32))) <= reserve - TOKEN_SIZE_MARGIN + 8


def test_tsa_refusal_produces_no_pdf(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    credential, _ = b_t_ready(authority, kyso_tsa(authority))
    # a TSA that accepts only SHA-512 imprints refuses the request with badAlg
    sha512_only = replace(authority.timestamp_authority(), hash_algorithms=frozenset({"sha512"}))
    refusing = TsaTimestamper(respond=sha512_only.respond)
    with pytest.raises(TimestampFailedError, match=r"refused.*bad_alg") as raised:
        sign_pdf(
            one_page_pdf(TEXT), credential, pool, usable=None, level="B-T", timestamper=refusing
        )
    assert raised.value.code == "signer.timestamp_failed"


def test_token_not_answering_the_request_is_refused(
    engine: Engine, pool: BlockingSessionPool
) -> None:
    authority = make_authority(engine, pool)
    tsa = authority.timestamp_authority()
    credential, _ = b_t_ready(authority, kyso_tsa(authority))
    stale: list[TimestampResult] = []

    def replaying(request: bytes) -> TimestampResult:
        # answers every request with the first token it got: wrong imprint and nonce
        if not stale:
            stale.append(tsa.respond(request))
        return stale[0]

    timestamper = TsaTimestamper(respond=replaying)
    timestamper(bytes(32))
    with pytest.raises(TimestampFailedError, match="does not answer") as raised:
        sign_pdf(
            one_page_pdf(TEXT), credential, pool, usable=None, level="B-T", timestamper=timestamper
        )
    assert raised.value.code == "signer.timestamp_failed"


def test_token_larger_than_reserved_is_refused(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    timestamper = kyso_tsa(authority)
    credential = SigningCredential.prepare(
        officer(authority), authority.internal_chain(), timestamp_reserve=100
    )
    with pytest.raises(TimestampFailedError, match="more than the 100 reserved"):
        sign_pdf(
            one_page_pdf(TEXT), credential, pool, usable=None, level="B-T", timestamper=timestamper
        )


def test_level_and_timestamper_must_agree(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    timestamper = kyso_tsa(authority)
    b_b = SigningCredential.prepare(officer(authority), authority.internal_chain())
    document = one_page_pdf(TEXT)
    with pytest.raises(SignerError, match="needs a timestamper") as raised:
        sign_pdf(document, b_b, pool, usable=None, level="B-T")
    assert raised.value.code == "signer.timestamper_required"
    with pytest.raises(SignerError, match="timestamp_reserve"):
        sign_pdf(document, b_b, pool, usable=None, level="B-T", timestamper=timestamper)
    with pytest.raises(SignerError, match="not used for PAdES B-B"):
        sign_pdf(document, b_b, pool, usable=None, timestamper=timestamper)
    with pytest.raises(SignerError, match="unsupported PAdES level") as raised:
        sign_pdf(document, b_b, pool, usable=None, level="B-X")  # type: ignore[arg-type]
    assert raised.value.code == "signer.bad_level"


def test_unsigned_timestamp_token_parses_as_tst_info(
    engine: Engine, pool: BlockingSessionPool
) -> None:
    authority = make_authority(engine, pool)
    timestamper = kyso_tsa(authority)
    digest = hashlib.sha256(b"signature").digest()
    token = cms.ContentInfo.load(timestamper(digest))
    assert token["content_type"].native == "signed_data"
    tst_info = token["content"]["encap_content_info"]["content"].parsed
    assert isinstance(tst_info, tsp.TSTInfo)
    assert tst_info["message_imprint"]["hashed_message"].native == digest


def _request_changed(change: Callable[[tsp.TimeStampReq], None]) -> Callable[[bytes], bytes]:
    def rewrite(request: bytes) -> bytes:
        parsed = tsp.TimeStampReq.load(request)
        change(parsed)
        changed: bytes = parsed.dump()
        # one field changed; the others keep the timestamper's own encoding
        sent, asked = tsp.TimeStampReq.load(request), tsp.TimeStampReq.load(changed)
        assert sum(sent[name].dump() != asked[name].dump() for name in sent) == 1
        return changed

    return rewrite


def _other_digest(request: tsp.TimeStampReq) -> None:
    request["message_imprint"]["hashed_message"] = hashlib.sha256(b"another").digest()


def _null_parameters(request: tsp.TimeStampReq) -> None:
    request["message_imprint"]["hash_algorithm"]["parameters"] = core.Null()


def _other_nonce(request: tsp.TimeStampReq) -> None:
    request["nonce"] = request["nonce"].native + 1


def _no_nonce(request: tsp.TimeStampReq) -> None:
    request["nonce"] = None


# id-ct-TSTInfo (1.2.840.113549.1.9.16.1.4), id-ct-receipt (…1.1): same length
TST_INFO_OID, RECEIPT_OID = (bytes.fromhex(f"060b2a864886f70d01091001{n:02x}") for n in (4, 1))
GRANTED = bytes.fromhex("3003020100")
# (what the TSA is asked instead, how its answer is changed, the refusal)
MISBEHAVIOURS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes], str]] = {
    "imprint of another digest": (_request_changed(_other_digest), bytes, "does not answer"),
    "imprint re-encoded": (_request_changed(_null_parameters), bytes, "does not answer"),
    "another nonce": (_request_changed(_other_nonce), bytes, "does not answer"),
    "nonce dropped": (_request_changed(_no_nonce), bytes, "does not answer"),
    "status grantedWithMods": (
        bytes, lambda der: der.replace(GRANTED, bytes.fromhex("3003020101"), 1), "does not answer"
    ),
    "not a TSTInfo": (
        bytes, lambda der: der.replace(TST_INFO_OID, RECEIPT_OID, 1), "does not answer"
    ),
    "no token": (bytes, lambda der: der[:2] + GRANTED, "not a TimeStampResp"),
    "trailing data": (bytes, lambda der: der + b"\x00", "not a TimeStampResp"),
    "truncated": (bytes, lambda der: der[:-1], "not a TimeStampResp"),
    "not DER": (bytes, lambda der: b"\x30\x80" + der[2:], "not a TimeStampResp"),
}  # fmt: skip


@pytest.mark.parametrize(
    ("ask", "answer", "refusal"), MISBEHAVIOURS.values(), ids=MISBEHAVIOURS.keys()
)
def test_answers_are_checked(
    engine: Engine,
    pool: BlockingSessionPool,
    ask: Callable[[bytes], bytes],
    answer: Callable[[bytes], bytes],
    refusal: str,
) -> None:
    tsa = make_authority(engine, pool).timestamp_authority()
    digest = hashlib.sha256(b"signature").digest()
    assert TsaTimestamper(respond=tsa.respond)(digest)

    def respond(request: bytes) -> TimestampResult:
        result = tsa.respond(ask(request))
        assert result.granted
        return replace(result, der=answer(result.der))

    with pytest.raises(TimestampFailedError, match=refusal) as raised:
        TsaTimestamper(respond=respond)(digest)
    assert raised.value.code == "signer.timestamp_failed"
