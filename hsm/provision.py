"""Token provisioning: initialise a free slot with a label, SO PIN and user PIN.

Done through the PKCS#11 API (``C_InitToken``, ``C_InitPIN``) rather than
``softhsm2-util`` so that no PIN ever appears on a command line.
"""

from __future__ import annotations

from typing import Any

import pkcs11
from pkcs11 import TokenFlag

from hsm.config import find_pkcs11_module
from hsm.errors import HsmConfigError, HsmPinIncorrectError
from hsm.module import load_module
from hsm.pool import TokenInfo, _token_info


def provision_token(
    *, label: str, so_pin: str, user_pin: str, module_path: str | None = None
) -> tuple[TokenInfo, bool]:
    """Return the token labelled ``label``, initialising a free slot for it if absent.

    The boolean is true when the token was created by this call. A token that already
    exists is checked against the user PIN, so a mismatch with the stored secrets is
    caught at set-up rather than at the first signature.
    """
    module = load_module(find_pkcs11_module(module_path))
    existing = _find(module.lib, label)
    if existing is not None:
        _check_user_pin(existing, user_pin)
        return _token_info(existing), False
    slot = _free_slot(module.lib)
    if slot is None:
        # SoftHSM adds a new empty slot only when the module is initialised again.
        module.reinitialize()
        slot = _free_slot(module.lib)
    if slot is None:
        raise HsmConfigError("the PKCS#11 module has no uninitialised slot for a new token")
    module.init_token(slot.slot_id, label=label, so_pin=so_pin)
    token = _find(module.lib, label)
    if token is None:
        raise HsmConfigError(f"token {label!r} did not appear after initialisation")
    with token.open(rw=True, so_pin=so_pin) as session:
        session.init_pin(user_pin)
    return _token_info(token), True


def _find(lib: Any, label: str) -> pkcs11.Token | None:
    tokens: list[pkcs11.Token] = list(lib.get_tokens(token_label=label))
    if len(tokens) > 1:
        raise HsmConfigError(f"several tokens are labelled {label!r}")
    return tokens[0] if tokens else None


def _free_slot(lib: Any) -> pkcs11.Slot | None:
    slots: list[pkcs11.Slot] = lib.get_slots(token_present=True)
    return next((s for s in slots if not s.get_token().flags & TokenFlag.TOKEN_INITIALIZED), None)


def _check_user_pin(token: pkcs11.Token, user_pin: str) -> None:
    try:
        with token.open(user_pin=user_pin):
            pass
    except pkcs11.UserAlreadyLoggedIn:
        pass
    except pkcs11.PinIncorrect:
        raise HsmPinIncorrectError(
            f"token {token.label!r} exists but rejects the stored user PIN"
        ) from None
