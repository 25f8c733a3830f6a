"""The error answers of the OpenAPI schema, declared from what the code knows rather than by
hand on every route: the authorisation matrix (401 and 403 on protected routes, 409 on
those that change something), the body limits answered before any route (413), FastAPI's
own refusals of a malformed request (400, 422), path parameters and body fields that name
a stored thing (404), the rate limits (429 with ``Retry-After``), a PIN (400 missing, 423
locked) and the parts of the runtime a route needs (503). Each route's own ``responses=``
still say what only it knows (its content types, a plain-text 404); what is added here is
merged into them.

The CSC routes (``/csc/``) declare their own schema in :mod:`kyso.routers.csc`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.routing import BaseRoute

from kyso.access.matrix import MATRIX, PUBLIC

_SKIPPED = "/csc/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_SIGN_IN = frozenset({("POST", "/oauth/token"), ("POST", "/api/v1/auth/login")})
"""Sign-in routes: refused credentials (401), and :func:`kyso.routers.auth.limit` in their
body (429)."""
_RATES = frozenset({"sign_rate", "authorize_rate"})
"""The dependencies of the signing and activation rate limits (:mod:`kyso.routers.signing`)."""
_PIN_ROUTES = frozenset(
    {
        ("POST", "/api/v1/credentials/{credential_id}/authorize"),
        ("POST", "/api/v1/sign"),
        ("POST", "/api/v1/batches"),
        ("POST", "/api/v1/documents/{document_id}/sign"),
        ("POST", "/api/v1/documents/{document_id}/seal"),
    }
)
"""Routes that activate a signing credential: a PIN missing (400) or locked (423), and (but
for ``authorize``, which signs nothing) the HSM or the timestamp authority failing (502)."""
_UNAVAILABLE_NEVER = frozenset({("GET", "/healthz")})
"""Routes that need no part of the runtime; every other one may answer 503."""
_EXTRA: Mapping[tuple[str, str], frozenset[int]] = {
    # the page cursor ``before`` names no document
    ("GET", "/api/v1/documents"): frozenset({404}),
    # a credential without a pending CSR
    ("GET", "/api/v1/credentials/{credential_id}/csr"): frozenset({409}),
    # no entry has that leaf hash; a proof the tree cannot give
    ("GET", "/audit/proof/inclusion"): frozenset({404}),
    # the image is not image/png
    ("PUT", "/api/v1/people/{person_id}/signature-image"): frozenset({415}),
    ("PUT", "/api/v1/units/{unit_id}/seal-image"): frozenset({415}),
}
"""What a route can answer that no general rule above tells."""
_RAW_BODIES: Mapping[tuple[str, str], str] = {
    ("PUT", "/api/v1/people/{person_id}/signature-image"): "image/png",
    ("PUT", "/api/v1/units/{unit_id}/seal-image"): "image/png",
}
"""Routes that read their body themselves (so FastAPI cannot describe it), by media type."""


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable error code, e.g. access.forbidden")
    message: str = Field(description="What went wrong, for a person to read")


class ErrorBody(BaseModel):
    """Every error Kyso itself answers (:func:`kyso.app.error_body`)."""

    error: ErrorDetail


class ValidationIssue(BaseModel):
    model_config = ConfigDict(extra="allow")
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """A request that does not match the schema (FastAPI's answer, without the input)."""

    detail: list[ValidationIssue]


class ParseErrorBody(BaseModel):
    """A body FastAPI could not parse at all (a broken multipart or form body)."""

    detail: str


_MODELS: tuple[type[BaseModel], ...] = (
    ErrorDetail,
    ErrorBody,
    ValidationIssue,
    ValidationErrorBody,
    ParseErrorBody,
)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


_ERROR = _ref(ErrorBody)
_BAD_REQUEST = {"anyOf": [_ERROR, _ref(ParseErrorBody)]}
_INVALID = {"anyOf": [_ERROR, _ref(ValidationErrorBody)]}
_INTEGER = {"schema": {"type": "integer", "minimum": 0}}

_DESCRIPTIONS = {
    400: "Malformed body, or a PIN (or scope) the request needs is missing",
    401: "No valid session or access token",
    403: "Not allowed for this caller here (or a cookie request without X-CSRF-Token)",
    404: "Nothing by that name or id",
    409: "Not possible in the current state",
    413: "The body is larger than the route's limit",
    415: "Not the media type the route reads",
    422: "Invalid request (schema or business rule)",
    423: "The credential's PIN is locked",
    429: "Too many requests; see Retry-After",
    502: "An upstream service (the HSM, the timestamp authority) failed",
    503: "A part of the service is not available; try again later",
}


BodyLimited = Callable[[str, str], bool]
"""Whether a request (method, path) has its body bounded before the route (413 beyond)."""


def api_routes(routes: Sequence[BaseRoute]) -> Iterator[tuple[str, APIRoute]]:
    """Every API route of an app, with its full path as the schema names it."""
    for context in iter_route_contexts(routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema and context.path_format:
            yield context.path_format, route


def error_statuses(
    path: str, route: APIRoute, method: str, limited: BodyLimited
) -> dict[int, dict[str, Any]]:
    """Status → JSON schema of every error ``route`` at ``path`` answers to ``method`` (see
    the module)."""
    key = (method, path)
    rule = MATRIX.get(key)
    statuses: dict[int, dict[str, Any]] = {}
    if key not in PUBLIC or key in _SIGN_IN:
        statuses[401] = _ERROR
    if key not in PUBLIC and (rule is None or not rule.signed_in or method in _BODY_METHODS):
        statuses[403] = _ERROR  # for a signed-in rule: a cookie request without its CSRF token
    if rule is not None and rule.writes:
        statuses[409] = _ERROR
    has_body = route.body_field is not None or key in _RAW_BODIES
    if has_body:
        statuses[400] = _BAD_REQUEST
    if has_body and limited(method, path):
        statuses[413] = _ERROR
    names_one = rule is not None and (rule.target or "").startswith(("body:", "form:"))
    if names_one or route.dependant.path_params:  # also no route: a value with a "/" in it
        statuses[404] = _ERROR
    if has_body or route.dependant.query_params or any(map(_checked, route.dependant.path_params)):
        statuses[422] = _INVALID
    if key in _PIN_ROUTES:
        statuses.update({400: _BAD_REQUEST, 423: _ERROR})
        if not path.endswith("/authorize"):
            statuses[502] = _ERROR
    if key in _SIGN_IN or _RATES & _dependencies(route):
        statuses[429] = _ERROR
    if key not in _UNAVAILABLE_NEVER:
        statuses[503] = _ERROR
    for status in _EXTRA.get(key, frozenset()):
        statuses[status] = _ERROR
    return statuses


def _checked(param: Any) -> bool:
    """Whether FastAPI can refuse a value of this path parameter (not any plain string)."""
    return param.field_info.annotation is not str or bool(param.field_info.metadata)


def _dependencies(route: APIRoute) -> set[str]:
    """The names of the functions ``route`` depends on, directly or not."""
    names, todo = set(), list(route.dependant.dependencies)
    while todo:
        dependency = todo.pop()
        names.add(getattr(dependency.call, "__name__", ""))
        todo.extend(dependency.dependencies)
    return names


def _merge(responses: dict[str, Any], status: int, schema: dict[str, Any]) -> None:
    """Declare ``schema`` as a JSON answer of ``status``, next to what the route declares."""
    answer = responses.setdefault(str(status), {"description": _DESCRIPTIONS[status]})
    content = answer.setdefault("content", {})
    current = content.get("application/json", {}).get("schema")
    if current and current != schema:
        schema = {"anyOf": [current, schema]}
    content["application/json"] = {"schema": schema}
    if status == 429:
        answer.setdefault("headers", {})["Retry-After"] = {"required": True, **_INTEGER}


def install(app: FastAPI, limited: BodyLimited) -> None:
    """Make ``app.openapi()`` declare every error answer of every route (but /csc/)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        amend(schema, app.routes, limited)
        app.openapi_schema = schema
        return schema

    setattr(app, "openapi", openapi)  # noqa: B010 (FastAPI's documented way to replace it)


def amend(schema: dict[str, Any], routes: Sequence[BaseRoute], limited: BodyLimited) -> None:
    """Add the error answers and raw request bodies to ``schema`` (built from ``routes``)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in _MODELS:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    for path, route in api_routes(routes):
        if path.startswith(_SKIPPED):
            continue
        for method in sorted(route.methods or ()):
            operation = schema["paths"][path][method.lower()]
            responses = operation["responses"]
            # FastAPI's own 422 says only half of it: Kyso's 422 answers are declared here.
            if responses.get("422", {}).get("description") == "Validation Error":
                del responses["422"]
            for status, body in error_statuses(path, route, method, limited).items():
                _merge(responses, status, body)
            raw = _RAW_BODIES.get((method, path))
            if raw is not None:
                operation["requestBody"] = {
                    "required": True,
                    "content": {raw: {"schema": {"type": "string", "format": "binary"}}},
                }
