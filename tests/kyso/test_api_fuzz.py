"""Property-based fuzzing of the HTTP API with schemathesis against a running Kyso (uvicorn
on loopback, the demo data, SQLite and PostgreSQL): every answer to every request
schemathesis makes from the OpenAPI schema, valid or not, passes every schemathesis check —
no 5xx, status code, content type, headers and body as the schema documents them, valid
data not refused for its shape, invalid data refused. Bounded: a few examples per operation
and generation mode, so that it runs in ``make test``.

Each request is made as one of three callers, drawn by hypothesis: nobody, the demo system
administrator (session cookie and CSRF header) and a service client holding every scope
(an access token from ``/oauth/token``), so that the fuzzer gets past 401 and 403.

Left out, and why:
- ``/csc/`` operations: :mod:`kyso.routers.csc` has its own schema and tests.
- ``POST /api/v1/auth/logout`` as the administrator: it would end the session the rest of
  the run uses (it is fuzzed as the others).
- Valid-looking requests refused by a rule the schema cannot state (a PDF that is not one,
  a CCCD or PEM that does not parse, a PIN the policy refuses, an OAuth grant type other
  than ``client_credentials``, a tree size beyond the log) may answer 400, 415, 422 or
  423: :data:`REFUSED_BY_RULE` adds them to what positive data may get.
Nothing else needs leaving out: the fuzzer knows no PIN or password (so it signs nothing
and locks no demo account: wrong PINs are refused before they are counted, as neither
caller holds a credential), and what the administrator may change (suspend, revoke,
enroll, renew, set a PIN) only changes what later answers say, never whether they match
the schema."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup

from kyso import db
from kyso.access.model import Scope
from kyso.access.store import AccessStore
from kyso.routers.auth import CSRF_HEADER, SESSION_COOKIE
from tests.conftest import TestToken
from tests.kyso.identities import SETUP
from tests.kyso.live import demo_service, serving

EXAMPLES = 6
"""Examples per operation and generation mode: enough to find a 500 or a schema mismatch
on malformed input, little enough for CI."""

# Raw DER and PNG bodies: sent as the bytes schemathesis generates.
schemathesis.serializer.alias(
    ["application/ocsp-request", "application/timestamp-query", "image/png"],
    "application/octet-stream",
)

REFUSED_BY_RULE = ["2xx", "3xx", "400", "401", "403", "404", "409", "415", "422", "423", "429"]
"""What a request valid by the schema may get (see the module)."""

REFUSED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
"""What an invalid request may get: schemathesis's list, and 413 (a field over its length
is refused by the body limit when the body is, too)."""


@dataclass(frozen=True)
class Fuzzed:
    schema: schemathesis.Schema
    callers: dict[str, dict[str, str]]
    """Headers of each caller, by name."""


@pytest.fixture
def api(token: TestToken, tmp_path: Path, database_url: str) -> Iterator[Fuzzed]:
    settings, _ = demo_service(token, tmp_path, database_url, verify_workers=1)
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        store = AccessStore(engine)
        session = store.open_session(store.user("sysadmin"), kind="web")
        client, secret = store.add_client(
            name="fuzzer", scopes=frozenset(Scope), unit_id=None, actor=SETUP
        )
    finally:
        engine.dispose()
    with serving(settings) as base:
        granted = requests.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(client.client_id, secret),
            timeout=10,
        )
        assert granted.status_code == 200, granted.text
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        checks = schema.config.checks
        checks.positive_data_acceptance.expected_statuses = REFUSED_BY_RULE
        checks.negative_data_rejection.expected_statuses = REFUSED
        admin = {"Cookie": f"{SESSION_COOKIE}={session.secret}", CSRF_HEADER: session.csrf}
        bearer = {"Authorization": f"Bearer {granted.json()['access_token']}"}
        yield Fuzzed(schema, {"nobody": {}, "admin": admin, "service": bearer})


def callers_of(label: str, callers: dict[str, dict[str, str]]) -> list[str]:
    if label == "POST /api/v1/auth/logout":
        return [name for name in callers if name != "admin"]
    return list(callers)


def fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, callers: dict[str, dict[str, str]]
) -> set[str]:
    """What went wrong with ``operation`` in ``mode``, each failure once."""
    found: set[str] = set()
    names = callers_of(operation.label, callers)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # every failure is collected below; nothing to shrink
    )
    @given(case=operation.as_strategy(mode), caller=st.sampled_from(names))
    def exercise(case: schemathesis.Case, caller: str) -> None:
        try:
            case.call_and_validate(headers=callers[caller])
        except FailureGroup as group:
            for failure in group.exceptions:
                found.add(f"{mode.value} as {caller}: {failure.title}: {failure.message}")

    try:
        exercise()
    except Unsatisfiable:
        # Nothing to make invalid (no parameters, or only free strings and bodies).
        assert mode is GenerationMode.NEGATIVE, operation.label
    return found


def test_no_server_error_and_no_schema_violation(api: Fuzzed) -> None:
    failures: dict[str, set[str]] = {}
    operations = 0
    for result in api.schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/csc/"):
            continue
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            found = fuzz(operation, mode, api.callers)
            if found:
                failures.setdefault(operation.label, set()).update(found)
    assert operations > 40
    assert not failures, "\n\n".join(
        f"{label}\n" + "\n".join(sorted(found)) for label, found in sorted(failures.items())
    )
