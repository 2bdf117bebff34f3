"""The one error format of the API (design.md, Errors).

``{"error": {"code": "...", "message": "...", "details": {...}}}`` with the right status, whether
the error comes from DRF, from Django itself, or from our own services.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from django.utils.translation import gettext_lazy
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps.core.exceptions import ServiceError

_DEFAULTS: dict[int, tuple[str, Any]] = {
    400: ("bad_request", gettext_lazy("The request could not be understood.")),
    401: (
        "not_authenticated",
        gettext_lazy("Authentication credentials were not provided or are invalid."),
    ),
    403: ("permission_denied", gettext_lazy("You do not have permission to perform this action.")),
    404: ("not_found", gettext_lazy("The requested resource was not found.")),
    405: ("method_not_allowed", gettext_lazy("This method is not allowed on this resource.")),
    406: ("not_acceptable", gettext_lazy("The requested response format is not available.")),
    409: (
        "conflict",
        gettext_lazy("The request conflicts with the current state of the resource."),
    ),
    413: ("payload_too_large", gettext_lazy("The request body is too large.")),
    415: ("unsupported_media_type", gettext_lazy("The request body must be JSON.")),
    422: ("unprocessable", gettext_lazy("The request was understood but cannot be processed.")),
    429: ("throttled", gettext_lazy("Too many requests. Try again later.")),
    500: ("server_error", gettext_lazy("Something went wrong on our side. It has been logged.")),
    503: (
        "unavailable",
        gettext_lazy("The service is temporarily unavailable. Try again shortly."),
    ),
}


def error_payload(
    status_code: int,
    *,
    code: str | None = None,
    message: str | None = None,
    details: dict[str, Any] | None = None,
) -> dict[str, Any]:
    default_code, default_message = _DEFAULTS.get(
        status_code, ("error", gettext_lazy("The request failed."))
    )
    return {
        "error": {
            "code": code or default_code,
            "message": str(message or default_message),
            "details": details or {},
        }
    }


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ServiceError):
        answer = Response(
            error_payload(exc.status, code=exc.code, message=exc.message, details=exc.details),
            status=exc.status,
        )
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            answer["Retry-After"] = str(retry_after)
        return answer
    if isinstance(exc, RequestDataTooBig):
        return Response(error_payload(413), status=413)
    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=_django_validation_details(exc))
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unhandled: Django's 500 path, turned into JSON by ApiErrorMiddleware

    status_code = response.status_code
    if isinstance(exc, exceptions.ValidationError):
        details = (
            response.data
            if isinstance(response.data, dict)
            else {"non_field_errors": response.data}
        )
        response.data = error_payload(
            status_code,
            code="invalid",
            message=str(gettext_lazy("Some fields are invalid. See details for each field.")),
            details=details,
        )
        return response

    detail = response.data.get("detail") if isinstance(response.data, dict) else None
    code = getattr(detail, "code", None)
    extra: dict[str, Any] = {}
    wait = getattr(exc, "wait", None)
    if isinstance(exc, exceptions.Throttled) and wait is not None:
        extra["retry_after_seconds"] = int(wait)
    response.data = error_payload(
        status_code,
        code=_code_for(status_code, code),
        message=str(detail) if detail else None,
        details=extra,
    )
    return response


def _code_for(status_code: int, drf_code: str | None) -> str:
    if drf_code and status_code not in (status.HTTP_404_NOT_FOUND,):
        return drf_code
    return _DEFAULTS.get(status_code, ("error", ""))[0]


def _django_validation_details(exc: DjangoValidationError) -> dict[str, Any]:
    if hasattr(exc, "error_dict"):
        return {
            field: [message for error in errors for message in error.messages]
            for field, errors in exc.error_dict.items()
        }
    return {"non_field_errors": list(exc.messages)}
