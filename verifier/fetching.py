"""The one way the verifier reaches the network: fetches of certificates, CRLs and OCSP.

While a chain is validated, pyhanko-certvalidator may fetch issuer certificates (AIA
caIssuers), CRLs and OCSP responses from URLs that the untrusted document's certificates
chose. Left alone that is a server-side request forgery primitive: a crafted certificate
can point at the cloud metadata service, an admin port on loopback or an intranet host.
Every such fetch goes through a :class:`FetchPolicy` here:

- http and https only, and only to hosts on an allow-list (``host`` or ``host:port``);
  any other URL is refused before any network activity, DNS included;
- every address a name resolves to (and every IP-literal host) is classified, and
  loopback, private, link-local, CGNAT, reserved, multicast and metadata addresses are
  refused unless that exact ``host:port`` is on the list; the connection goes to the
  addresses that were checked (aiohttp connects to the resolver's numeric results, so a
  second lookup cannot rebind the name);
- redirects are not followed, responses are capped in size and time, a validation makes
  a bounded number of requests, and successful responses are cached process-wide.

Fetching is off by default: the caller builds :func:`fetcher_backend` only when the
validation policy allows it.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any, cast

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from asn1crypto import cms, crl, ocsp, pem, x509
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.fetchers.api import (
    CertificateFetcher,
    CRLFetcher,
    FetcherBackend,
    Fetchers,
    FetchLimits,
    OCSPFetcher,
)
from pyhanko_certvalidator.fetchers.common_utils import (
    ACCEPTABLE_CERT_DER_ALIASES,
    ACCEPTABLE_PKCS7_DER_ALIASES,
    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES,
    FetchBudget,
    FetchKind,
    cap_aia_urls,
    complete_certificate_fetch_jobs,
    crl_job_results_as_completed,
    enumerate_delivery_point_urls,
    format_ocsp_request,
    gather_aia_issuer_urls,
    ocsp_job_get_earliest,
    process_ocsp_response_data,
    queue_fetch_task,
    unpack_cert_content,
)
from pyhanko_certvalidator.util import get_ocsp_urls, get_relevant_crl_dps, issuer_serial
from yarl import URL

from verifier.errors import InvalidPolicyError, VerifierError

logger = logging.getLogger(__name__)

USER_AGENT = "Kyso-verifier"
ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_ALLOWED_ENTRIES = 256
MAX_URL_LENGTH = 2048
CACHE_MAX_ENTRIES = 256
CACHE_MAX_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Refused even when listed: no CA endpoint lives there, and reaching one hands out the
# host's cloud credentials.
METADATA_ADDRESSES = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),
        ipaddress.ip_address("fd00:ec2::254"),
        ipaddress.ip_address("100.100.100.200"),
    }
)
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_RFC1918 = (
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
)
_ULA = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class FetchRefusedError(VerifierError):
    """A fetch the policy does not allow (scheme, host, address, redirect, size)."""

    code = "verifier.fetch_refused"


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """Where and how much the verifier may fetch while it validates one document."""

    allowed: tuple[str, ...]
    """Hosts that may be contacted: ``"host"`` (any port) or ``"host:port"``; IPv6 as
    ``"[::1]:8000"``. A loopback or private address is reached only through an exact
    ``host:port`` entry."""
    max_response_bytes: int = 1 << 20
    """Largest response body read; a larger one fails the fetch."""
    timeout_seconds: float = 5.0
    """Wall time of one request, DNS and connect included."""
    cache_seconds: float = 300.0
    """How long a response is reused across validations (capped by the CRL's or OCSP
    response's nextUpdate); 0 disables the cache."""
    max_requests: int = 32
    """Network requests one validation may make (cache hits are not counted)."""

    def __post_init__(self) -> None:
        if not isinstance(self.allowed, tuple) or not all(
            isinstance(entry, str) for entry in self.allowed
        ):
            raise InvalidPolicyError("fetch policy: allowed must be a tuple of strings")
        if len(self.allowed) > MAX_ALLOWED_ENTRIES:
            raise InvalidPolicyError(f"fetch policy: at most {MAX_ALLOWED_ENTRIES} allowed hosts")
        for entry in self.allowed:
            _parse_allowed_entry(entry)
        if not 1 <= self.max_response_bytes <= 64 << 20:
            raise InvalidPolicyError("fetch policy: max_response_bytes must be 1 B .. 64 MiB")
        if not 0 < self.timeout_seconds <= 60:
            raise InvalidPolicyError("fetch policy: timeout_seconds must be in (0, 60]")
        if not 0 <= self.cache_seconds <= 86_400:
            raise InvalidPolicyError("fetch policy: cache_seconds must be in [0, 86400]")
        if not 1 <= self.max_requests <= 1000:
            raise InvalidPolicyError("fetch policy: max_requests must be in [1, 1000]")

    def to_options(self) -> dict[str, Any]:
        """Plain JSON types, to hand the policy to a worker process."""
        return {
            "allowed": list(self.allowed),
            "max_response_bytes": self.max_response_bytes,
            "timeout_seconds": self.timeout_seconds,
            "cache_seconds": self.cache_seconds,
            "max_requests": self.max_requests,
        }

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> FetchPolicy:
        """The inverse of :meth:`to_options`; unknown keys or wrong types are refused."""
        unknown = set(options) - {field.name for field in fields(cls)}
        if unknown:
            raise InvalidPolicyError(f"fetch policy: unknown options {sorted(unknown)}")
        allowed = options.get("allowed")
        if not isinstance(allowed, list | tuple):
            raise InvalidPolicyError("fetch policy: allowed must be a list of strings")
        kwargs: dict[str, Any] = {"allowed": tuple(allowed)}
        for name, kind in (
            ("max_response_bytes", int),
            ("max_requests", int),
            ("timeout_seconds", float),
            ("cache_seconds", float),
        ):
            if name not in options:
                continue
            value = options[name]
            # bool is an int subclass; a float option also takes a JSON integer.
            ok = isinstance(value, int) and not isinstance(value, bool)
            if kind is float:
                ok = ok or isinstance(value, float)
            if not ok:
                raise InvalidPolicyError(f"fetch policy: {name} must be a number")
            kwargs[name] = kind(value)
        return cls(**kwargs)


# --- Addresses and URLs ---------------------------------------------------------------


def address_refusal(address: IPAddress) -> str | None:
    """Why a connection to ``address`` is refused by default, or None if it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        # An IPv6 form of an IPv4 address reaches the IPv4 host: judge that one.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
        address = ipaddress.IPv6Address(address.compressed.split("%", 1)[0])
    if address in METADATA_ADDRESSES:
        return "cloud metadata address"
    if address.is_unspecified:
        return "unspecified address"
    if address.is_loopback:
        return "loopback address"
    if address.is_link_local:
        return "link-local address"
    if address.is_multicast:
        return "multicast address"
    if isinstance(address, ipaddress.IPv4Address):
        if any(address in net for net in _RFC1918):
            return "private address"
        if address in _CGNAT:
            return "shared (CGNAT) address"
    elif address in _ULA:
        return "private address"
    if address.is_reserved:
        return "reserved address"
    if address.is_private:
        return "special-purpose address, not globally routable"
    if not address.is_global:
        return "address that is not globally routable"
    return None


def _normalise_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _parse_allowed_entry(entry: str) -> tuple[str, int | None]:
    """``"host"`` / ``"host:port"`` / ``"[v6]"`` / ``"[v6]:port"`` / ``"v6"``."""
    text = entry.strip()
    port_text: str | None = None
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise InvalidPolicyError(f"fetch policy: bad allowed entry {entry!r}")
        port_text = rest[1:] if rest else None
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host = text
    if not host or any(c in host for c in "/@?# \t") or len(host) > 253:
        raise InvalidPolicyError(f"fetch policy: bad allowed entry {entry!r}")
    if ":" in host and _ip_literal(host) is None:
        raise InvalidPolicyError(f"fetch policy: bad allowed entry {entry!r}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise InvalidPolicyError(f"fetch policy: bad port in allowed entry {entry!r}")
        port = int(port_text)
    return _normalise_host(host), port


@dataclass(frozen=True, kw_only=True)
class _AllowList:
    hosts: frozenset[str]
    """Hosts allowed on any port (public addresses only)."""
    exact: frozenset[tuple[str, int]]
    """``(host, port)`` pairs allowed, non-public addresses included."""

    @classmethod
    def of(cls, policy: FetchPolicy) -> _AllowList:
        hosts: set[str] = set()
        exact: set[tuple[str, int]] = set()
        for entry in policy.allowed:
            host, port = _parse_allowed_entry(entry)
            if port is None:
                hosts.add(host)
            else:
                exact.add((host, port))
        return cls(hosts=frozenset(hosts), exact=frozenset(exact))

    def names(self, host: str, port: int) -> bool:
        return host in self.hosts or (host, port) in self.exact

    def check_address(self, host: str, port: int, address: IPAddress) -> None:
        reason = address_refusal(address)
        if reason is None:
            return
        if reason == "cloud metadata address" or (host, port) not in self.exact:
            raise FetchRefusedError(
                f"refused to connect to {host}:{port}: {address} is a {reason}"
                + ("" if reason == "cloud metadata address" else " not listed as host:port")
            )


@dataclass(frozen=True, kw_only=True)
class FetchTarget:
    """A URL that passed the scheme and host checks (not yet the address check)."""

    url: URL
    """The parsed URL; the same object is handed to aiohttp, so both read it alike."""
    host: str
    """Normalised host (lower case, no trailing dot, canonical IP text)."""
    port: int
    """Explicit port, or the scheme's default."""


def check_url(policy: FetchPolicy, url: str) -> FetchTarget:
    """Refuse a URL the policy does not allow, without any network activity.

    An IP-literal host is classified here, since no resolver sees it.
    """
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefusedError("refused a URL longer than 2048 characters")
    try:
        parsed = URL(url)
        scheme = parsed.scheme.lower()
        raw_host = parsed.host
        port = parsed.port
    except (ValueError, TypeError) as ex:
        raise FetchRefusedError(f"refused an unparseable URL {url!r}") from ex
    if scheme not in ALLOWED_SCHEMES:
        raise FetchRefusedError(f"refused URL {url!r}: only http and https are fetched")
    if not raw_host or port is None:
        raise FetchRefusedError(f"refused URL {url!r}: no host")
    host = _normalise_host(raw_host)
    allow = _AllowList.of(policy)
    if not allow.names(host, port):
        raise FetchRefusedError(f"refused URL {url!r}: host {host}:{port} is not allowed")
    literal = _ip_literal(host)
    if literal is not None:
        allow.check_address(host, port, literal)
    return FetchTarget(url=parsed, host=host, port=port)


class _PolicyResolver(AbstractResolver):
    """Resolves a name once and refuses it if any address it maps to is refused.

    aiohttp connects to the numeric results returned here, so the addresses checked are
    the ones connected to (no second lookup for a rebinding DNS server to answer).
    """

    def __init__(self, allow: _AllowList) -> None:
        self._allow = allow

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = _normalise_host(host)
        if not self._allow.names(name, port):
            raise FetchRefusedError(f"refused to resolve {name}:{port}: not allowed")
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        results: list[ResolveResult] = []
        for info_family, _, proto, _, sockaddr in infos:
            if info_family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = str(sockaddr[0])
            address = ipaddress.ip_address(text.split("%", 1)[0])
            self._allow.check_address(name, port, address)
            results.append(
                ResolveResult(
                    hostname=host,
                    host=text,
                    port=int(sockaddr[1]),
                    family=info_family,
                    proto=proto,
                    flags=socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                )
            )
        if not results:
            raise FetchRefusedError(f"{name} resolved to no usable address")
        return results

    async def close(self) -> None:
        return None


# --- Process-wide response cache ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Cached:
    expires: float
    """time.monotonic() after which the entry is stale."""
    body: bytes
    """Response body."""
    content_type: str | None
    """Response Content-Type, as sent."""


class _ResponseCache:
    """LRU, bounded in entries and bytes; shared by every validation in the process.

    Sessions are per request (an aiohttp session is bound to its event loop, and the
    verifier runs one loop per document), so the cache cannot live in one.
    """

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[tuple[Any, ...], _Cached] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> _Cached | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.expires <= time.monotonic():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def put(self, key: tuple[Any, ...], entry: _Cached) -> None:
        if len(entry.body) > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self._bytes += len(entry.body)
            while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
                self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: tuple[Any, ...]) -> None:
        entry = self._entries.pop(key)
        self._bytes -= len(entry.body)


_CACHE = _ResponseCache(max_entries=CACHE_MAX_ENTRIES, max_bytes=CACHE_MAX_BYTES)


def clear_cache() -> None:
    """Forget every cached response (tests, or after a CA incident)."""
    _CACHE.clear()


# --- One request ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Response:
    body: bytes
    """Response body, at most the policy's cap."""
    content_type: str | None
    """Content-Type header, stripped."""


NextUpdate = Callable[[bytes], datetime | None]


class _Client:
    """Runs the requests of one validation: policy, budget, cache."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.allow = _AllowList.of(policy)
        self.budget = FetchBudget(
            FetchLimits(
                max_requests=policy.max_requests,
                max_cert_requests=policy.max_requests,
                max_aia_urls_per_object=min(10, policy.max_requests),
            )
        )

    async def request(
        self,
        url: str,
        *,
        kind: FetchKind,
        accept: str,
        body: bytes | None = None,
        next_update: NextUpdate | None = None,
    ) -> _Response:
        policy = self.policy
        target = check_url(policy, url)
        method = "GET" if body is None else "POST"
        # The allow-list is part of the key: a response fetched under a wider list must
        # not answer for a policy whose checks it never passed.
        key = (method, str(target.url), body, self.allow.hosts, self.allow.exact)
        cached = _CACHE.get(key) if policy.cache_seconds > 0 else None
        if cached is not None and len(cached.body) <= policy.max_response_bytes:
            return _Response(body=cached.body, content_type=cached.content_type)
        self.budget.charge(kind)
        try:
            async with asyncio.timeout(policy.timeout_seconds):
                response = await self._send(target, method, accept, body)
        except TimeoutError as ex:
            raise FetchRefusedError(
                f"fetching {url} took longer than {policy.timeout_seconds} s",
                code="verifier.fetch_timeout",
            ) from ex
        ttl = policy.cache_seconds
        if next_update is not None and ttl > 0:
            ttl = min(ttl, _seconds_until(next_update, response.body))
        if ttl > 0:
            _CACHE.put(
                key,
                _Cached(
                    expires=time.monotonic() + ttl,
                    body=response.body,
                    content_type=response.content_type,
                ),
            )
        return response

    async def _send(
        self, target: FetchTarget, method: str, accept: str, body: bytes | None
    ) -> _Response:
        policy = self.policy
        headers = {"Accept": accept, "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        if body is not None:
            headers["Content-Type"] = "application/ocsp-request"
        connector = aiohttp.TCPConnector(
            resolver=_PolicyResolver(self.allow),
            use_dns_cache=False,
            ssl=_tls_context(),
            limit=1,
        )
        # trust_env=False: a proxy from the environment would make the address checks moot.
        async with (
            aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=policy.timeout_seconds),
                auto_decompress=False,
                trust_env=False,
            ) as session,
            session.request(
                method, target.url, data=body, headers=headers, allow_redirects=False
            ) as response,
        ):
            if 300 <= response.status < 400:
                raise FetchRefusedError(
                    f"{target.url} answered a redirect ({response.status}); "
                    "redirects are not followed",
                    code="verifier.fetch_redirect",
                )
            if response.status != 200:
                raise FetchRefusedError(
                    f"{target.url} answered HTTP {response.status}",
                    code="verifier.fetch_failed",
                )
            cap = policy.max_response_bytes
            declared = response.content_length
            if declared is not None and declared > cap:
                raise _too_large(target, cap)
            chunks: list[bytes] = []
            size = 0
            while chunk := await response.content.read(_READ_CHUNK):
                size += len(chunk)
                if size > cap:
                    raise _too_large(target, cap)
                chunks.append(chunk)
            content_type = response.headers.get("Content-Type")
        return _Response(
            body=b"".join(chunks),
            content_type=content_type.split(";", 1)[0].strip() if content_type else None,
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # Loading the system trust store costs milliseconds; one context serves every request.
    return ssl.create_default_context()


def _too_large(target: FetchTarget, cap: int) -> FetchRefusedError:
    return FetchRefusedError(
        f"response from {target.url} is larger than {cap} bytes",
        code="verifier.fetch_too_large",
    )


def _seconds_until(next_update: NextUpdate, body: bytes) -> float:
    try:
        when = next_update(body)
    except (ValueError, TypeError, KeyError):
        return 0.0
    if when is None:
        return float("inf")
    return (when - datetime.now(UTC)).total_seconds()


def _crl_next_update(body: bytes) -> datetime | None:
    if pem.detect(body):
        _, _, body = pem.unarmor(body)
    value = crl.CertificateList.load(body)["tbs_cert_list"]["next_update"].native
    return value if isinstance(value, datetime) else None


def _ocsp_next_update(body: bytes) -> datetime | None:
    basic = ocsp.OCSPResponse.load(body).basic_ocsp_response
    updates: list[datetime] = []
    for single in basic["tbs_response_data"]["responses"]:
        value = single["next_update"].native
        if not isinstance(value, datetime):
            return None
        updates.append(value)
    return min(updates) if updates else None


# pyhanko-certvalidator's job helpers carry no annotations; these are their real types.
_complete_cert_jobs = cast(
    Callable[
        [list[Coroutine[Any, Any, list[x509.Certificate]]]],
        AsyncGenerator[x509.Certificate, None],
    ],
    complete_certificate_fetch_jobs,
)
_crl_jobs_as_completed = cast(
    Callable[
        [list[Coroutine[Any, Any, crl.CertificateList]]],
        AsyncGenerator[crl.CertificateList, None],
    ],
    crl_job_results_as_completed,
)
_ocsp_earliest = cast(
    Callable[[Iterable[Coroutine[Any, Any, ocsp.OCSPResponse]]], Awaitable[ocsp.OCSPResponse]],
    ocsp_job_get_earliest,
)

_NETWORK_ERRORS = (FetchRefusedError, aiohttp.ClientError, OSError, ValueError)


# --- The three fetchers ---------------------------------------------------------------


class _Jobs:
    """De-duplicates concurrent fetches of one tag within a validation."""

    def __init__(self) -> None:
        self.results: dict[Any, Any] = {}
        self.running: dict[Any, asyncio.Event] = {}

    async def run(self, tag: Any, job: Callable[[], Awaitable[Any]]) -> Any:
        return await queue_fetch_task(self.results, self.running, tag, job)

    def successes(self) -> list[Any]:
        return [v for v in self.results.values() if not isinstance(v, Exception)]


def _target_name(cert: x509.Certificate | cms.AttributeCertificateV2) -> str:
    if isinstance(cert, x509.Certificate):
        return str(cert.subject.human_friendly)
    return "attribute certificate"


class _PolicyCertificateFetcher(CertificateFetcher):
    def __init__(self, client: _Client) -> None:
        self._client = client
        self._jobs = _Jobs()

    async def _fetch_certs(self, url: str) -> list[x509.Certificate]:
        async def job() -> list[x509.Certificate]:
            accept = ",".join(
                sorted(
                    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES
                    | ACCEPTABLE_CERT_DER_ALIASES
                    | ACCEPTABLE_PKCS7_DER_ALIASES
                )
            )
            try:
                response = await self._client.request(url, kind=FetchKind.CERT, accept=accept)
                return list(unpack_cert_content(response.body, response.content_type, url, False))
            except _NETWORK_ERRORS as ex:
                logger.info("certificate fetch from %s failed: %s", url, ex)
                raise cv_errors.CertificateFetchError(
                    f"Failed to fetch certificate(s) from url {url}."
                ) from ex

        result: list[x509.Certificate] = await self._jobs.run(url, job)
        return result

    def fetch_cert_issuers(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> AsyncGenerator[x509.Certificate, None]:
        urls = cap_aia_urls(self._client.budget, gather_aia_issuer_urls(cert))
        return _complete_cert_jobs([self._fetch_certs(url) for url in urls])

    def fetch_crl_issuers(
        self, certificate_list: crl.CertificateList
    ) -> AsyncGenerator[x509.Certificate, None]:
        urls = cap_aia_urls(self._client.budget, certificate_list.issuer_cert_urls)
        return _complete_cert_jobs([self._fetch_certs(url) for url in urls])

    def fetched_certs(self) -> Iterable[x509.Certificate]:
        return {cert for certs in self._jobs.successes() for cert in certs}


class _PolicyCRLFetcher(CRLFetcher):
    def __init__(self, client: _Client) -> None:
        self._client = client
        self._jobs = _Jobs()
        self._by_cert: dict[bytes, list[crl.CertificateList]] = {}

    async def fetch(
        self,
        cert: x509.Certificate | cms.AttributeCertificateV2,
        *,
        use_deltas: bool | None = True,
    ) -> Iterable[crl.CertificateList]:
        key = issuer_serial(cert)
        if key in self._by_cert:
            return self._by_cert[key]
        sources = get_relevant_crl_dps(cert, use_deltas=bool(use_deltas))
        jobs = [
            self._single(url) for point in sources for url in enumerate_delivery_point_urls(point)
        ]
        results: list[crl.CertificateList] = []
        if jobs:
            logger.info("fetching CRLs for %s", _target_name(cert))
            async for fetched in _crl_jobs_as_completed(jobs):
                results.append(fetched)
        self._by_cert[key] = results
        return results

    async def _single(self, url: str) -> crl.CertificateList:
        async def job() -> crl.CertificateList:
            try:
                response = await self._client.request(
                    url,
                    kind=FetchKind.CRL,
                    accept="application/pkix-crl",
                    next_update=_crl_next_update,
                )
                data = response.body
                if pem.detect(data):
                    _, _, data = pem.unarmor(data)
                return crl.CertificateList.load(data)
            except _NETWORK_ERRORS as ex:
                logger.info("CRL fetch from %s failed: %s", url, ex)
                raise cv_errors.CRLFetchError(f"Failure to fetch CRL from URL {url}") from ex

        result: crl.CertificateList = await self._jobs.run(url, job)
        return result

    def fetched_crls(self) -> Iterable[crl.CertificateList]:
        return set(self._jobs.successes())

    def fetched_crls_for_cert(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> Iterable[crl.CertificateList]:
        return self._by_cert[issuer_serial(cert)]


class _PolicyOCSPFetcher(OCSPFetcher):
    def __init__(self, client: _Client) -> None:
        self._client = client
        self._jobs = _Jobs()

    async def fetch(
        self,
        cert: x509.Certificate | cms.AttributeCertificateV2,
        authority: Authority,
    ) -> ocsp.OCSPResponse:
        tag = (issuer_serial(cert), authority.hashable)

        async def job() -> ocsp.OCSPResponse:
            # No nonce: the request body is the cache key, and a response reused from
            # the cache could never echo a fresh nonce anyway. Freshness is judged from
            # the response's own thisUpdate/nextUpdate by the validator.
            request = format_ocsp_request(
                cert,
                authority,
                certid_hash_algo="sha1",
                request_nonces=False,
            )
            urls = get_ocsp_urls(cert)
            if not urls:
                raise cv_errors.OCSPFetchError("No URLs to fetch OCSP responses from")
            logger.info("fetching OCSP status for %s", _target_name(cert))
            return await _ocsp_earliest(self._single(request, url) for url in urls)

        result: ocsp.OCSPResponse = await self._jobs.run(tag, job)
        return result

    async def _single(self, request: ocsp.OCSPRequest, url: str) -> ocsp.OCSPResponse:
        try:
            response = await self._client.request(
                url,
                kind=FetchKind.OCSP,
                accept="application/ocsp-response",
                body=request.dump(),
                next_update=_ocsp_next_update,
            )
            return process_ocsp_response_data(response.body, ocsp_request=request, ocsp_url=url)
        except (*_NETWORK_ERRORS, cv_errors.OCSPValidationError) as ex:
            logger.info("OCSP fetch from %s failed: %s", url, ex)
            raise cv_errors.OCSPFetchError(f"Failed to fetch OCSP response from {url}") from ex

    def fetched_responses(self) -> Iterable[ocsp.OCSPResponse]:
        return set(self._jobs.successes())

    def fetched_responses_for_cert(
        self, cert: x509.Certificate | cms.AttributeCertificateV2
    ) -> Iterable[ocsp.OCSPResponse]:
        target = issuer_serial(cert)
        return {
            response
            for (serial, _), response in self._jobs.results.items()
            if serial == target and not isinstance(response, Exception)
        }


class PolicyFetcherBackend(FetcherBackend):
    """Fetchers bound to a :class:`FetchPolicy`; every :meth:`get_fetchers` call (one per
    validation context) starts a fresh request budget, and the cache is process-wide."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def get_fetchers(self) -> Fetchers:
        client = _Client(self.policy)
        return Fetchers(
            ocsp_fetcher=_PolicyOCSPFetcher(client),
            crl_fetcher=_PolicyCRLFetcher(client),
            cert_fetcher=_PolicyCertificateFetcher(client),
        )

    async def close(self) -> None:
        # Sessions live for one request each: nothing outlives an event loop.
        return None


def fetcher_backend(policy: FetchPolicy) -> FetcherBackend:
    """The backend for ``ValidationContext(allow_fetching=True, fetcher_backend=...)``."""
    return PolicyFetcherBackend(policy)
