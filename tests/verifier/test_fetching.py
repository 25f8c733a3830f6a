"""The verifier's fetch policy: a loopback server that is not allow-listed is never
contacted; an exact host:port entry lets validation fetch and pass; responses are cached,
capped in size and time; redirects are not followed; the address classifier refuses every
non-public range."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.authority import AuthorityWithCert

from verifier.errors import InvalidPolicyError
from verifier.fetching import (
    FetchPolicy,
    FetchRefusedError,
    address_refusal,
    check_url,
    clear_cache,
    fetcher_backend,
)

# --- A loopback HTTP server that records every hit ------------------------------------

Route = tuple[int, dict[str, str], bytes] | Callable[[BaseHTTPRequestHandler], None]


@dataclass
class Server:
    port: int
    routes: dict[str, Route] = field(default_factory=dict)
    hits: list[tuple[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _start_server() -> tuple[Server, ThreadingHTTPServer]:
    state = Server(port=0)

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            state.hits.append((self.command, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            route = state.routes.get(self.path)
            if route is None:
                route = (404, {}, b"")
            if callable(route):
                route(self)
                return
            status, headers, body = route
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = _serve
        do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    return state, httpd


@pytest.fixture
def server() -> Iterator[Server]:
    state, httpd = _start_server()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def other_server() -> Iterator[Server]:
    state, httpd = _start_server()
    yield state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


# --- A small PKI whose URLs point at the server ---------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    *,
    subject: str,
    issuer: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    ca: bool,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    ca_issuers_url: str | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    )
    if crl_url:
        builder = builder.add_extension(
            x509.CRLDistributionPoints(
                [
                    x509.DistributionPoint(
                        full_name=[x509.UniformResourceIdentifier(crl_url)],
                        relative_name=None,
                        reasons=None,
                        crl_issuer=None,
                    )
                ]
            ),
            critical=False,
        )
    access = []
    if ocsp_url:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(ocsp_url)
            )
        )
    if ca_issuers_url:
        access.append(
            x509.AccessDescription(
                AuthorityInformationAccessOID.CA_ISSUERS,
                x509.UniformResourceIdentifier(ca_issuers_url),
            )
        )
    if access:
        builder = builder.add_extension(x509.AuthorityInformationAccess(access), False)
    return builder.sign(issuer_key, hashes.SHA256())


def _crl(issuer: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    now = datetime.now(UTC)
    return (
        x509.CertificateRevocationListBuilder()
        .issuer_name(_name(issuer))
        .last_update(now - timedelta(minutes=5))
        .next_update(now + timedelta(days=1))
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .add_extension(x509.CRLNumber(1), False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


@dataclass
class Pki:
    root: asn1_x509.Certificate
    leaf: asn1_x509.Certificate


def make_pki(server: Server, host: str = "127.0.0.1", *, serve: bool = True) -> Pki:
    """Root (trusted), intermediate (only reachable through caIssuers), leaf."""
    root_key, int_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = _cert(subject="Root", issuer="Root", key=root_key, issuer_key=root_key, ca=True)
    inter = _cert(
        subject="Intermediate",
        issuer="Root",
        key=int_key,
        issuer_key=root_key,
        ca=True,
        crl_url=server.url("/root.crl", host),
    )
    leaf = _cert(
        subject="Leaf",
        issuer="Intermediate",
        key=leaf_key,
        issuer_key=int_key,
        ca=False,
        crl_url=server.url("/crl", host),
        ocsp_url=server.url("/ocsp", host),
        ca_issuers_url=server.url("/int.cer", host),
    )
    now = datetime.now(UTC)
    ocsp_response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=inter,
            algorithm=hashes.SHA1(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=now - timedelta(minutes=1),
            next_update=now + timedelta(hours=1),
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, inter)
        .sign(int_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    if serve:
        der = serialization.Encoding.DER
        crl_type = {"Content-Type": "application/pkix-crl"}
        server.routes.update(
            {
                "/int.cer": (
                    200,
                    {"Content-Type": "application/pkix-cert"},
                    inter.public_bytes(der),
                ),
                "/crl": (200, crl_type, _crl("Intermediate", int_key)),
                "/root.crl": (200, crl_type, _crl("Root", root_key)),
                "/ocsp": (200, {"Content-Type": "application/ocsp-response"}, ocsp_response),
            }
        )
    return Pki(
        root=asn1_x509.Certificate.load(root.public_bytes(serialization.Encoding.DER)),
        leaf=asn1_x509.Certificate.load(leaf.public_bytes(serialization.Encoding.DER)),
    )


async def validate(pki: Pki, policy: FetchPolicy) -> None:
    vc = ValidationContext(
        trust_roots=[pki.root],
        allow_fetching=True,
        fetcher_backend=fetcher_backend(policy),
        revocation_mode="hard-fail",
    )
    validator = CertificateValidator(pki.leaf, validation_context=vc)
    await validator.async_validate_usage(set())  # type: ignore[no-untyped-call]


VALIDATION_FAILS = (cv_errors.PathBuildingError, cv_errors.ValidationError)


# --- End to end through pyhanko-certvalidator -----------------------------------------


async def test_loopback_server_not_on_the_list_is_never_contacted(server: Server) -> None:
    pki = make_pki(server)
    with pytest.raises(VALIDATION_FAILS):
        await validate(pki, FetchPolicy(allowed=("ca.example.vn",)))
    assert server.hits == []


async def test_loopback_needs_the_exact_host_and_port(server: Server) -> None:
    pki = make_pki(server)
    with pytest.raises(VALIDATION_FAILS):
        await validate(pki, FetchPolicy(allowed=("127.0.0.1",)))
    assert server.hits == []


async def test_a_name_allowed_without_port_is_refused_after_dns_to_loopback(
    server: Server,
) -> None:
    pki = make_pki(server, host="localhost")
    with pytest.raises(VALIDATION_FAILS):
        await validate(pki, FetchPolicy(allowed=("localhost",)))
    assert server.hits == []


async def test_exact_host_port_fetches_and_validation_passes(server: Server) -> None:
    pki = make_pki(server)
    await validate(pki, FetchPolicy(allowed=(f"127.0.0.1:{server.port}",)))
    paths = {path for _, path in server.hits}
    assert "/int.cer" in paths
    assert paths & {"/crl", "/ocsp"}


async def test_a_name_with_exact_port_resolves_to_loopback_and_passes(server: Server) -> None:
    pki = make_pki(server, host="localhost")
    try:
        await validate(pki, FetchPolicy(allowed=(f"localhost:{server.port}",)))
    except VALIDATION_FAILS:
        # "localhost" may resolve to ::1 first on some hosts, where nothing listens.
        pytest.skip("localhost does not reach the IPv4 test server here")
    assert server.hits


async def test_responses_are_cached_across_validations_until_the_ttl(server: Server) -> None:
    pki = make_pki(server)
    policy = FetchPolicy(allowed=(f"127.0.0.1:{server.port}",), cache_seconds=0.5)
    await validate(pki, policy)
    first = len(server.hits)
    assert first > 0
    await validate(pki, policy)
    assert len(server.hits) == first
    await asyncio.sleep(0.6)
    await validate(pki, policy)
    assert len(server.hits) > first


async def test_the_request_budget_is_per_validation(server: Server) -> None:
    pki = make_pki(server)
    with pytest.raises(VALIDATION_FAILS):
        await validate(pki, FetchPolicy(allowed=(f"127.0.0.1:{server.port}",), max_requests=1))
    assert len(server.hits) == 1


# --- One fetcher at a time ------------------------------------------------------------


def _leaf_with_crl_url(server: Server, url: str) -> asn1_x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _cert(subject="Leaf", issuer="Leaf", key=key, issuer_key=key, ca=False, crl_url=url)
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))


async def _fetch_crl(url: str, policy: FetchPolicy, server: Server) -> BaseException:
    fetchers = fetcher_backend(policy).get_fetchers()
    with pytest.raises(cv_errors.CRLFetchError) as caught:
        await fetchers.crl_fetcher.fetch(_leaf_with_crl_url(server, url))
    cause = caught.value.__cause__
    assert cause is not None
    return cause


async def test_an_oversized_response_fails(server: Server) -> None:
    server.routes["/big"] = (200, {"Content-Type": "application/pkix-crl"}, b"\0" * (2 << 20))
    policy = FetchPolicy(allowed=(f"127.0.0.1:{server.port}",))
    cause = await _fetch_crl(server.url("/big"), policy, server)
    assert isinstance(cause, FetchRefusedError)
    assert cause.code == "verifier.fetch_too_large"


async def test_an_oversized_response_without_content_length_fails(server: Server) -> None:
    def chunked(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Connection", "close")
        handler.end_headers()
        for _ in range(40):
            handler.wfile.write(b"\0" * 65536)

    server.routes["/stream"] = chunked
    policy = FetchPolicy(allowed=(f"127.0.0.1:{server.port}",), max_response_bytes=1 << 20)
    cause = await _fetch_crl(server.url("/stream"), policy, server)
    assert isinstance(cause, FetchRefusedError)
    assert cause.code == "verifier.fetch_too_large"


async def test_a_slow_server_fails_within_the_timeout(server: Server) -> None:
    def slow(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(2.5)
        handler.send_response(200)
        handler.end_headers()

    server.routes["/slow"] = slow
    policy = FetchPolicy(allowed=(f"127.0.0.1:{server.port}",), timeout_seconds=0.5)
    started = time.monotonic()
    await _fetch_crl(server.url("/slow"), policy, server)
    assert time.monotonic() - started < 1.5
    assert server.hits == [("GET", "/slow")]


async def test_a_redirect_is_not_followed(server: Server, other_server: Server) -> None:
    other_server.routes["/crl"] = (200, {}, b"x")
    server.routes["/moved"] = (302, {"Location": other_server.url("/crl")}, b"")
    policy = FetchPolicy(allowed=(f"127.0.0.1:{server.port}",))
    cause = await _fetch_crl(server.url("/moved"), policy, server)
    assert isinstance(cause, FetchRefusedError)
    assert cause.code == "verifier.fetch_redirect"
    assert server.hits == [("GET", "/moved")]
    assert other_server.hits == []


async def test_an_ocsp_url_with_another_scheme_is_refused(server: Server) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer = _cert(subject="I", issuer="I", key=key, issuer_key=key, ca=True)
    leaf = _cert(
        subject="L",
        issuer="I",
        key=ec.generate_private_key(ec.SECP256R1()),
        issuer_key=key,
        ca=False,
        ocsp_url=f"ftp://127.0.0.1:{server.port}/ocsp",
    )
    der = serialization.Encoding.DER
    fetchers = fetcher_backend(FetchPolicy(allowed=(f"127.0.0.1:{server.port}",))).get_fetchers()
    with pytest.raises(cv_errors.OCSPFetchError):
        await fetchers.ocsp_fetcher.fetch(
            asn1_x509.Certificate.load(leaf.public_bytes(der)),
            AuthorityWithCert(asn1_x509.Certificate.load(issuer.public_bytes(der))),
        )
    assert server.hits == []


# --- URL and address checks (no network) ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("ftp://ca.example.vn/crl", ("ca.example.vn",)),
        ("file:///etc/passwd", ("ca.example.vn",)),
        ("ldap://ca.example.vn/cn=x", ("ca.example.vn",)),
        ("http://evil.example.com/crl", ("ca.example.vn",)),
        ("http://ca.example.vn:8080/crl", ("ca.example.vn:80",)),
        ("http://127.0.0.1:8000/crl", ("127.0.0.1",)),
        ("http://127.0.0.1:8000/crl", ("127.0.0.1:8001",)),
        ("http://[::1]:8000/crl", ("::1",)),
        ("http://169.254.169.254/latest/meta-data", ("169.254.169.254:80",)),
        ("http://10.0.0.1/crl", ("10.0.0.1",)),
        ("http://user@/crl", ("ca.example.vn",)),
        ("http://ca.example.vn/" + "a" * 3000, ("ca.example.vn",)),
    ],
)
def test_check_url_refuses(url: str, allowed: tuple[str, ...]) -> None:
    with pytest.raises(FetchRefusedError) as caught:
        check_url(FetchPolicy(allowed=allowed), url)
    assert caught.value.code == "verifier.fetch_refused"


@pytest.mark.parametrize(
    ("url", "allowed", "port"),
    [
        ("http://ca.example.vn/crl", ("ca.example.vn",), 80),
        ("https://CA.Example.VN./crl", ("ca.example.vn",), 443),
        ("http://ca.example.vn:8080/crl", ("ca.example.vn:8080",), 8080),
        ("http://127.0.0.1:8000/crl", ("127.0.0.1:8000",), 8000),
        ("http://[::1]:8000/crl", ("[::1]:8000",), 8000),
        ("http://8.8.8.8/crl", ("8.8.8.8",), 80),
    ],
)
def test_check_url_allows(url: str, allowed: tuple[str, ...], port: int) -> None:
    assert check_url(FetchPolicy(allowed=allowed), url).port == port


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("::ffff:192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.254", "CGNAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("100.100.100.200", "metadata"),
        ("::ffff:169.254.169.254", "metadata"),
        ("2002:7f00:1::", "loopback"),
        ("64:ff9b::a00:1", "private"),
        ("192.0.2.1", "not globally routable"),
    ],
)
def test_address_classifier_refuses(address: str, reason: str) -> None:
    refusal = address_refusal(ipaddress.ip_address(address))
    assert refusal is not None
    assert reason in refusal


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]
)
def test_address_classifier_passes_public_addresses(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


def test_metadata_address_is_refused_even_when_listed() -> None:
    with pytest.raises(FetchRefusedError, match="metadata"):
        check_url(FetchPolicy(allowed=("169.254.169.254:80",)), "http://169.254.169.254/")


# --- The policy value -----------------------------------------------------------------


def test_options_round_trip() -> None:
    policy = FetchPolicy(
        allowed=("ca.example.vn", "127.0.0.1:8000"),
        max_response_bytes=4096,
        timeout_seconds=2.0,
        cache_seconds=10.0,
        max_requests=5,
    )
    assert FetchPolicy.from_options(policy.to_options()) == policy


@pytest.mark.parametrize(
    "options",
    [
        {"allowed": "ca.example.vn"},
        {"allowed": ["ca.example.vn"], "max_requests": "5"},
        {"allowed": ["ca.example.vn"], "max_requests": True},
        {"allowed": ["ca.example.vn"], "unexpected": 1},
        {"allowed": ["ca.example.vn:99999"]},
        {"allowed": ["http://ca.example.vn/"]},
        {"allowed": ["ca.example.vn"], "max_response_bytes": 0},
        {"allowed": ["ca.example.vn"], "timeout_seconds": 0},
        {"allowed": ["ca.example.vn"], "max_requests": 0},
    ],
)
def test_bad_options_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(InvalidPolicyError):
        FetchPolicy.from_options(options)
