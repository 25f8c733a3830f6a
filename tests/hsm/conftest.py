"""Fixtures for the HSM layer tests: raw python-pkcs11 access next to a pool.

Raw sessions go through the very ``pkcs11.lib`` object that :mod:`hsm.module` loaded:
a second ``pkcs11.lib`` would call ``C_Initialize(NULL)`` again, and finalize SoftHSM
under the pool when it is garbage collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pkcs11
import pytest

from hsm import BlockingSessionPool, find_pkcs11_module
from hsm.module import Pkcs11Module, load_module
from tests.conftest import TestToken


@pytest.fixture
def module() -> Pkcs11Module:
    """The process-wide SoftHSM module, initialised with OS locking."""
    return load_module(find_pkcs11_module())


@pytest.fixture
def raw_session(pool: BlockingSessionPool, token: TestToken, module: Pkcs11Module) -> Iterator[Any]:
    """A plain read-write python-pkcs11 session on the pool's token.

    It opens no login of its own: PKCS#11 login state is per application, so while the
    pool is logged in this session sees the private objects too, and closing it does not
    log the pool out (``C_Logout`` is only sent for sessions opened with a PIN).
    """
    session: pkcs11.Session = module.lib.get_token(token_label=token.label).open(rw=True)
    yield session
    session.close()
