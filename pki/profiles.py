"""Certificate profiles: which extensions each kind of Kyso certificate carries.

RFC 5280 for the structure; RFC 6960 §4.2.2.2 for the OCSP responder (id-kp-OCSPSigning,
id-pkix-ocsp-nocheck); RFC 3161 §2.3 for the TSA (a critical EKU with timeStamping only).
Document-signing certificates carry no EKU: pyHanko and Adobe need none, and an EKU would
only restrict what the key may sign.

Key-free: the extensions are built from the subject's public key and the issuer's key id.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from asn1crypto import keys, x509

from pki.errors import InvalidInputError
from pki.names import validate_email

KYSO_POLICY_ARC = "2.25.239316119438751809800832820847243805729"
"""Kyso's own OID arc: an ITU-T X.667 UUID OID (uuid b40a9ba9-d4b8-4171-9926-eb5988a1c421),
which needs no registration."""

OFFICER_POLICY_OID = f"{KYSO_POLICY_ARC}.1.1"
"""Certificate policy of officers' document-signing certificates."""

SEAL_POLICY_OID = f"{KYSO_POLICY_ARC}.1.2"
"""Certificate policy of agency seal certificates."""

TSA_POLICY_OID = f"{KYSO_POLICY_ARC}.2.1"
"""The TSA policy under which Kyso's timestamp tokens are issued (TSTInfo.policy)."""

ANY_POLICY_OID = "2.5.29.32.0"

_MAX_URL = 2048
_MAX_POLICIES = 8
_OID = re.compile(r"[0-2](?:\.(?:0|[1-9][0-9]{0,38})){1,31}")


class Profile(enum.Enum):
    """The kinds of certificate Kyso issues."""

    ROOT_CA = "root-ca"
    ISSUING_CA = "issuing-ca"
    OCSP_RESPONDER = "ocsp-responder"
    TSA = "tsa"
    OFFICER_SIGNING = "officer-signing"
    AGENCY_SEAL = "agency-seal"

    @property
    def is_ca(self) -> bool:
        return self in (Profile.ROOT_CA, Profile.ISSUING_CA)


_VALIDITY_YEARS = {
    Profile.ROOT_CA: 20,
    Profile.ISSUING_CA: 10,
    Profile.OCSP_RESPONDER: 2,
    Profile.TSA: 5,
    Profile.OFFICER_SIGNING: 2,
    Profile.AGENCY_SEAL: 3,
}

_KEY_USAGE = {
    Profile.ROOT_CA: {"key_cert_sign", "crl_sign"},
    Profile.ISSUING_CA: {"key_cert_sign", "crl_sign"},
    Profile.OCSP_RESPONDER: {"digital_signature"},
    Profile.TSA: {"digital_signature"},
    Profile.OFFICER_SIGNING: {"digital_signature", "non_repudiation"},
    Profile.AGENCY_SEAL: {"digital_signature", "non_repudiation"},
}

_DEFAULT_POLICIES = {
    Profile.ISSUING_CA: (ANY_POLICY_OID,),
    Profile.OFFICER_SIGNING: (OFFICER_POLICY_OID,),
    Profile.AGENCY_SEAL: (SEAL_POLICY_OID,),
}


def default_validity(profile: Profile) -> timedelta:
    """How long a certificate of this profile lives unless the caller says otherwise."""
    years = _VALIDITY_YEARS[profile]
    return timedelta(days=365 * years + years // 4)


def _is_http_url(url: str) -> bool:
    # URIs go into IA5Strings: ASCII only, and nothing a client could misparse.
    if len(url) > _MAX_URL or not url.isascii() or not url.isprintable() or " " in url:
        return False
    try:
        parts = urlsplit(url)
        port = parts.port  # a malformed port raises here
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0


@dataclass(frozen=True, kw_only=True)
class PkiUrls:
    """Where relying parties fetch the issuer's certificate and revocation status."""

    ocsp: str | None = None
    """The OCSP responder (AIA id-ad-ocsp)."""

    ca_issuers: str | None = None
    """The issuer's certificate (AIA id-ad-caIssuers)."""

    crl: str | None = None
    """The issuer's CRL (CRL distribution point)."""

    def __post_init__(self) -> None:
        for field in ("ocsp", "ca_issuers", "crl"):
            url = getattr(self, field)
            if url is not None and not _is_http_url(url):
                raise InvalidInputError(
                    f"the {field} URL must be an ASCII http(s) URL of at most {_MAX_URL} "
                    "characters",
                    code="pki.invalid_url",
                )


def _general_name(kind: str, value: str) -> x509.GeneralName:
    return x509.GeneralName(name=kind, value=value)


def subject_alt_name(*, email: str) -> x509.Extension:
    """A subjectAltName with one rfc822Name."""
    return x509.Extension(
        {
            "extn_id": "subject_alt_name",
            "extn_value": [_general_name("rfc822_name", validate_email(email))],
        }
    )


def _policies(profile: Profile, policies: Sequence[str]) -> tuple[str, ...]:
    chosen = tuple(policies) or _DEFAULT_POLICIES.get(profile, ())
    if len(chosen) > _MAX_POLICIES or len(set(chosen)) != len(chosen):
        raise InvalidInputError(
            f"give at most {_MAX_POLICIES} distinct certificate policies",
            code="pki.invalid_policy",
        )
    for oid in chosen:
        if not _OID.fullmatch(oid):
            raise InvalidInputError(
                f"{oid[:80]!r} is not a dotted object identifier", code="pki.invalid_policy"
            )
    return chosen


def _check_fit(profile: Profile, urls: PkiUrls, email: str | None, policies: Sequence[str]) -> None:
    problem = None
    if profile is Profile.ROOT_CA and (urls != PkiUrls() or policies):
        problem = "a root CA certificate carries no URLs and no certificate policies"
    elif profile is Profile.OFFICER_SIGNING and email is None:
        problem = "an officer's signing certificate needs the officer's e-mail address"
    elif email is not None and profile not in (Profile.OFFICER_SIGNING, Profile.AGENCY_SEAL):
        problem = f"a {profile.value} certificate carries no e-mail address"
    elif profile is Profile.ISSUING_CA and urls.crl is None:
        problem = "an issuing CA certificate needs the root's CRL URL"
    elif (
        profile in (Profile.TSA, Profile.OFFICER_SIGNING, Profile.AGENCY_SEAL)
        and urls.ocsp is None
        and urls.crl is None
    ):
        problem = f"a {profile.value} certificate needs an OCSP or CRL URL for its status"
    if problem is not None:
        raise InvalidInputError(problem, code="pki.profile_mismatch")


def _extension(extn_id: str, value: object, *, critical: bool = False) -> x509.Extension:
    return x509.Extension({"extn_id": extn_id, "critical": critical, "extn_value": value})


def profile_extensions(
    *,
    profile: Profile,
    public_key: keys.PublicKeyInfo,
    authority_key_id: bytes | None,
    urls: PkiUrls | None = None,
    email: str | None = None,
    policies: Sequence[str] = (),
) -> list[x509.Extension]:
    """The extensions of a certificate of ``profile`` for ``public_key``.

    ``authority_key_id`` is the issuer's key identifier (``None`` only for a root).
    ``policies`` default to the profile's own policy (officer, seal) or anyPolicy (issuing
    CA). Inputs that do not fit the profile (an e-mail on a CA, a root with URLs, an
    end-entity certificate without any revocation URL) are refused.
    """
    urls = urls or PkiUrls()
    _check_fit(profile, urls, email, policies)
    if (authority_key_id is None) != (profile is Profile.ROOT_CA):
        raise InvalidInputError(
            "only a root CA certificate is self-signed", code="pki.profile_mismatch"
        )
    constraints: dict[str, object] = {"ca": profile.is_ca}
    if profile is Profile.ISSUING_CA:
        constraints["path_len_constraint"] = 0
    extensions = [
        _extension("basic_constraints", constraints, critical=True),
        _extension("key_usage", _KEY_USAGE[profile], critical=True),
        _extension("key_identifier", public_key.sha1),
    ]
    if authority_key_id is not None:
        extensions.append(
            _extension("authority_key_identifier", {"key_identifier": authority_key_id})
        )
    if profile is Profile.TSA:
        extensions.append(_extension("extended_key_usage", ["time_stamping"], critical=True))
    elif profile is Profile.OCSP_RESPONDER:
        extensions.append(_extension("extended_key_usage", ["ocsp_signing"]))
        extensions.append(_extension("ocsp_no_check", None))
    if email is not None:
        extensions.append(subject_alt_name(email=email))
    chosen = _policies(profile, policies)
    if chosen:
        extensions.append(
            _extension("certificate_policies", [{"policy_identifier": oid} for oid in chosen])
        )
    access = [
        {
            "access_method": method,
            "access_location": _general_name("uniform_resource_identifier", url),
        }
        for method, url in (("ocsp", urls.ocsp), ("ca_issuers", urls.ca_issuers))
        if url is not None
    ]
    if access:
        extensions.append(_extension("authority_information_access", access))
    if urls.crl is not None:
        extensions.append(
            _extension(
                "crl_distribution_points",
                [
                    {
                        "distribution_point": {
                            "full_name": [_general_name("uniform_resource_identifier", urls.crl)]
                        }
                    }
                ],
            )
        )
    return extensions
