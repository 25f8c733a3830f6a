"""Who may use a signing credential for this request: the one authorisation step that every
signing entry point (HTTP routes, batches, CLI) calls before it signs anything.

Until access control exists (issue 7) the proof is the credential's PIN, sent with the
request. Issue 7 replaces the body of :func:`authorise_signing` (signature activation data
bound to the documents, PIN and OTP, the caller's role and unit); its callers keep calling
it the same way, so nothing else changes when it does.
"""

from __future__ import annotations

from audit.events import Actor
from pki.authority import Authority, Credential
from pki.errors import PinRequiredError


def authorise_signing(
    authority: Authority, *, credential_id: int, pin: str | None, actor: Actor
) -> Credential:
    """The credential if ``actor`` may sign with it now, else a :class:`~pki.errors.PkiError`:
    ``pki.pin_required`` (no PIN given), ``pki.pin_invalid`` (wrong PIN, counted),
    ``pki.pin_locked``, ``pki.pin_not_set``, ``pki.not_found`` or
    ``pki.credential_unusable`` (suspended, revoked, expired or not yet valid).

    The PIN comes first, so that a try on an unusable credential still counts. Blocking
    (an argon2 hash and database writes): run it in a thread from async code.
    """
    if not pin:
        raise PinRequiredError(f"signing with credential {credential_id} needs its PIN")
    authority.check_pin(credential_id, pin, actor)
    return authority.usable_credential(credential_id)
