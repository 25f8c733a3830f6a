"""Who may call the non-public routes until access control exists: this machine only.

The audit routes will answer the auditor role and the administration routes the admin role
(the access-control issue); until then both are limited to loopback clients.
"""

from __future__ import annotations

import ipaddress

from fastapi import Request


def is_local(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "testclient"  # Starlette's in-process test client
