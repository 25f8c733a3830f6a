"""The workers' speed-ups (:mod:`verifier.accelerate`): pyHanko's tokenizer gives the same
tokens, objects and stream positions with and without them, on crafted token soup; a
remembered path is reused only for the same certificates, revocation data and policy, and
only within its time limits; a rejected path is never remembered.

(The whole attack corpus with and without them: tests/verifier/test_attacks.py.)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import Engine

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from pki.crl import RevocationReason
from tests.pki.test_authority import ADMIN, make_authority
from tests.signer.test_ltv import service
from tests.signer.test_pades import TEXT, officer
from tests.verifier.fixtures import foreign_root, kyso_policy
from verifier import accelerate
from verifier.indications import Indication, SubIndication
from verifier.policy import default_policy
from verifier.validate import verify_pdf

PIECES = (
    b"/Name", b"/Na#20me", b"/N#4", b"/\x80x", b"/", b"/a/b", b"/\x01", b"/~!'*",
    b"<41 4 2>", b"<414>", b"<4G>", b"<41%c\n42>", b"<", b"<>", b">", b">>", b"<<",
    b"[", b"]", b"(s)", b"(a(b)c)", b"12 0 R", b"7", b"-3.5", b"+.5", b"true", b"false",
    b"null", b"%comment\n", b"%", b" ", b"\n", b"\r\n", b"\x00", b"\t\x0c", b"#", b"{}",
    b"\xff", b"stream",
)  # fmt: skip


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the verifier never touches the database; the signer's fixtures do."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


@pytest.fixture
def accelerated() -> Iterator[None]:
    accelerate.install()
    try:
        yield
    finally:
        accelerate.uninstall()


def soups(count: int, seed: int = 20261207) -> list[bytes]:
    """``count`` random sequences of PDF token fragments, the same on every run; each ends
    a line, as pyHanko's object reader loops for ever on a comment that never does (the
    workers refuse those: tests/verifier/test_parsing.py)."""
    rng = random.Random(seed)
    return [b"".join(rng.choices(PIECES, k=rng.randint(1, 12))) + b"\n" for _ in range(count)]


def outcome(read: Callable[[BytesIO], Any], data: bytes, start: int) -> tuple[object, ...]:
    stream = BytesIO(data)
    stream.seek(start)
    try:
        value = read(stream)
    except Exception as ex:  # the failure is part of what is compared
        return ("raised", type(ex).__name__, stream.tell())
    return ("read", type(value).__name__, value, stream.tell())


def readers(handler: PdfFileReader) -> dict[str, Callable[[BytesIO], Any]]:
    """The tokenizer's entry points, looked up when called (installed or not)."""
    container = generic.Reference(1, 0, handler)
    return {
        "non_whitespace": lambda s: misc.read_non_whitespace(s),
        "non_whitespace_seek_back": lambda s: misc.read_non_whitespace(s, seek_back=True),
        "non_whitespace_eof": lambda s: misc.read_non_whitespace(s, allow_eof=True),
        "generic_non_whitespace": lambda s: generic.read_non_whitespace(s),
        "until_delimiter": lambda s: misc.read_until_delimiter(s),
        "generic_until_delimiter": lambda s: generic.read_until_delimiter(s),
        "name": lambda s: generic.NameObject.read_from_stream(s),
        "hex_string": lambda s: generic.read_hex_string_from_stream(s),
        "object": lambda s: generic.read_object(s, container),
    }


def all_outcomes(handler: PdfFileReader, inputs: list[bytes]) -> dict[tuple[str, int, int], object]:
    found = {}
    for name, read in readers(handler).items():
        for number, data in enumerate(inputs):
            for start in range(len(data) + 1):
                found[(name, number, start)] = outcome(read, data, start)
    return found


def test_the_tokenizer_reads_the_same_with_and_without_the_speed_ups() -> None:
    handler = PdfFileReader(BytesIO(one_page_pdf()), strict=True)
    inputs = soups(300)
    plain = all_outcomes(handler, inputs)
    accelerate.install()
    try:
        fast = all_outcomes(handler, inputs)
    finally:
        accelerate.uninstall()
    different = {key: (plain[key], fast[key]) for key in plain if plain[key] != fast[key]}
    assert not different, list(different.items())[:5]
    # the soup exercises both the fast paths and the fallbacks
    kinds = {value[0] for value in plain.values()}
    assert kinds == {"read", "raised"}


def test_uninstall_restores_pyhanko() -> None:
    before = (misc.read_non_whitespace, generic.NameObject.read_from_stream)
    accelerate.install()
    assert misc.read_non_whitespace is not before[0]
    accelerate.uninstall()
    assert (misc.read_non_whitespace, generic.NameObject.read_from_stream) == before


def test_a_path_is_reused_only_while_its_revocation_data_is_the_same(
    engine: Engine, pool: BlockingSessionPool, accelerated: None
) -> None:
    authority = make_authority(engine, pool)
    credential = officer(authority)
    data = service(authority, pool).sign(one_page_pdf(TEXT), credential.id, level="B-B")
    policy = kyso_policy(authority)
    first = verify_pdf(data, policy)
    misses = accelerate.PATHS.misses
    again = verify_pdf(data, policy)
    assert first.indication is again.indication is Indication.TOTAL_PASSED
    assert accelerate.PATHS.hits >= 1
    assert accelerate.PATHS.misses == misses  # the second time came from memory
    # A new CRL (the officer revoked): other revocation data, the path is validated anew.
    authority.revoke(credential.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    revoked = verify_pdf(data, kyso_policy(authority))
    assert revoked.indication is not Indication.TOTAL_PASSED, revoked
    assert revoked.sub_indication in (SubIndication.REVOKED, SubIndication.REVOKED_NO_POE)


def test_a_rejected_path_is_never_remembered(
    engine: Engine, pool: BlockingSessionPool, accelerated: None
) -> None:
    authority = make_authority(engine, pool)
    credential = officer(authority)
    data = service(authority, pool).sign(one_page_pdf(TEXT), credential.id, level="B-B")
    policy = kyso_policy(authority)
    # Without Kyso's CRLs the status is unknown: rejected, twice, nothing remembered.
    no_status = default_policy(policy.trust_anchors)
    for _ in range(2):
        result = verify_pdf(data, no_status)
        assert result.indication is Indication.INDETERMINATE, result
    assert len(accelerate.PATHS) == 0
    assert accelerate.PATHS.hits == 0
    foreign = default_policy([foreign_root()], crls=policy.crls)
    assert verify_pdf(data, foreign).indication is not Indication.TOTAL_PASSED
    assert len(accelerate.PATHS) == 0


def test_a_remembered_path_has_a_time_window() -> None:
    cache = accelerate.PathCache(size=2)
    now = datetime(2026, 12, 7, tzinfo=UTC)
    entry = accelerate.Validated(at=now, until=now + timedelta(seconds=60), policies=None)
    cache.put(b"k", entry)
    assert cache.get(b"k", now) is entry
    assert cache.get(b"k", now + timedelta(seconds=59)) is entry
    assert cache.get(b"k", now + timedelta(seconds=60)) is None  # its window has closed
    assert cache.get(b"k", now - timedelta(seconds=1)) is None  # before it was validated
    cache.put(b"a", entry)
    cache.put(b"b", entry)
    assert len(cache) == 2
    assert cache.get(b"k", now) is None  # least recently used, dropped


def test_a_remembered_path_ends_with_its_certificates_and_revocation_data(
    engine: Engine,
    pool: BlockingSessionPool,
    accelerated: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    authority = make_authority(engine, pool)
    credential = officer(authority)
    data = service(authority, pool).sign(one_page_pdf(TEXT), credential.id, level="B-B")
    policy = kyso_policy(authority)
    verify_pdf(data, policy)
    (entry,) = accelerate.PATHS.entries()
    assert entry.until == entry.at + accelerate.PATH_TTL
    # Without the time limit, the window closes at the first nextUpdate or notAfter.
    accelerate.PATHS.clear()
    monkeypatch.setattr(accelerate, "PATH_TTL", timedelta(days=100 * 365))
    verify_pdf(data, policy)
    (entry,) = accelerate.PATHS.entries()
    crls = [c["tbs_cert_list"] for c in policy.revocation_lists()]
    assert credential.certificate is not None
    certificates = [credential.certificate, *authority.internal_chain()]
    ends = [c["next_update"].native for c in crls]
    ends += [c["tbs_certificate"]["validity"]["not_after"].native for c in certificates]
    assert entry.until == min(ends)
