"""Request-wide middleware: request ids and log context, and JSON errors on API paths."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from apps.core.api.errors import error_payload
from apps.core.context import client_ip_var, request_id_var, tenant_var, user_agent_var, user_var

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
API_PREFIX = "/api/"


def is_api_request(request: HttpRequest) -> bool:
    return request.path.startswith(API_PREFIX) or request.path.startswith("/v1/")


class RequestContextMiddleware:
    """Give every request an id (a sane incoming X-Request-ID is kept) and bind it for logging."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        bindings = {
            request_id_var: request_id,
            tenant_var: "-",
            user_var: "-",
            # REMOTE_ADDR is the peer; a trusted proxy in front rewrites it (deploy/ docs).
            client_ip_var: request.META.get("REMOTE_ADDR") or None,
            user_agent_var: request.headers.get("User-Agent", "")[:512],
        }
        # Set, not reset afterwards: each request runs in its own context under ASGI, and Django
        # logs the response (django.request) after the middleware chain has returned.
        for var, value in bindings.items():
            var.set(value)  # type: ignore[attr-defined]
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class RequestUserContextMiddleware:
    """After authentication: name the user in the log context."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            user_var.set(str(user.pk))
        return self.get_response(request)


class ApiErrorMiddleware:
    """Errors that Django itself produces (404, 405, 500...) on API paths become JSON errors."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and is_api_request(request)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            return json_error_response(response.status_code, headers=response)
        return response


def json_error_response(
    status: int,
    code: str | None = None,
    message: str | None = None,
    details: dict[str, object] | None = None,
    headers: HttpResponse | None = None,
) -> HttpResponse:
    body = error_payload(status, code=code, message=message, details=details)
    response = HttpResponse(
        json.dumps(body), status=status, content_type="application/json; charset=utf-8"
    )
    if headers is not None:
        for name in ("Allow", "Retry-After", "WWW-Authenticate", "X-Request-ID"):
            if name in headers:
                response[name] = headers[name]
    return response
