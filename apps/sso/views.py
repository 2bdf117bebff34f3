"""Pages: tenant admins manage their identity-provider connections; everyone whose SSO sign-in
fails lands on one error page (the failure is audited with its reason)."""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.providers.base.constants import AuthError
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from requests import RequestException

from apps.accounts.decorators import permission_required
from apps.audit.models import AuditEvent
from apps.audit.services import Actor, audit_record
from apps.core.context import request_id_var
from apps.core.exceptions import ServiceError
from apps.sso import services
from apps.sso.forms import form_class_for
from apps.sso.models import Connection
from apps.sso.selectors import connection_get, connection_list

# Refusals by the organisation's rules (outcome "denied"); everything else is a response or token
# that failed verification (outcome "failure").
_POLICY_REASONS = frozenset(
    {"idp_initiated", "jit_disabled", "inactive", "email_conflict", "no_email", "cancelled"}
)
_BAD_REQUEST_REASONS = frozenset({"malformed_xml", "dtd_forbidden", "missing_response"})


# --- Sign-in failures ----------------------------------------------------------------------------


def failure_reason(
    *, provider: Any, error: Any, exception: Any, extra: dict[str, Any]
) -> tuple[str, str]:
    """The audit reason and method ("saml"/"oidc") of an allauth authentication error."""
    method = "saml" if getattr(provider, "id", "") == "saml" else "oidc"
    reason = extra.get("sso_reason") or getattr(exception, "sso_reason", None)
    if reason:
        return str(reason), method
    if error == AuthError.CANCELLED:
        return "cancelled", method
    if isinstance(exception, PermissionDenied) or ("state_id" in extra and "state" not in extra):
        return "state_missing", method
    if isinstance(exception, RequestException):
        return "provider_unreachable", method
    if exception is not None:
        return "token_exchange_failed", method
    if "callback_view" in extra:
        return "idp_error", method
    return "unknown", method


def sign_in_failed(
    request: HttpRequest,
    *,
    reason: str,
    method: str,
    slug: str,
    message: str | None = None,
    attempted: str = "",
) -> HttpResponse:
    """Audit a failed SSO sign-in and answer the error page. Verification failures are not
    explained to the visitor (they would help an attacker); the reference finds the audit event."""
    policy = reason in _POLICY_REASONS
    audit_record(
        action="auth.login_failed",
        actor=Actor.anonymous(attempted[:254]),
        outcome=AuditEvent.Outcome.DENIED if policy else AuditEvent.Outcome.FAILURE,
        metadata={"reason": reason, "method": method, "connection": slug},
    )
    if message is None:
        message = (
            _("You cancelled the sign-in at your identity provider.")
            if reason == "cancelled"
            else _(
                "Sign-in with IdP-initiated single sign-on is not enabled for this organisation."
            )
            if reason == "idp_initiated"
            else _(
                "Your identity provider's answer could not be verified, so you have not been "
                "signed in. Try again, and contact your administrator if it keeps happening."
            )
        )
    reference = request_id_var.get()
    status = 400 if reason in _BAD_REQUEST_REASONS else 403
    return render(
        request,
        "sso/sign_in_failed.html",
        {"message": message, "reference": "" if reference == "-" else reference},
        status=status,
    )


# --- Connection pages (tenant admins) ------------------------------------------------------------


def _service_arguments(form: Any) -> dict[str, Any]:
    return form.service_arguments()


def _show_errors(form: Any, exc: ServiceError) -> None:
    form_names = set(form.fields)
    aliases = {"attribute_mapping": "map_email", "protocol": None}
    for name, errors in (exc.details or {}).items():
        target = aliases.get(name, name)
        for error in errors if isinstance(errors, list) else [errors]:
            form.add_error(target if target in form_names else None, str(error))
    if not exc.details:
        form.add_error(None, exc.message)


def _missing(request: HttpRequest) -> HttpResponse:
    # Another organisation's connection is simply not here: the same answer as a missing one.
    messages.error(request, _("There is no such connection."))
    return redirect("sso:connections")


def _sp_urls(request: HttpRequest, connection: Connection) -> dict[str, str]:
    if connection.protocol == Connection.Protocol.SAML:
        return {
            "metadata": request.build_absolute_uri(
                reverse("saml_metadata", args=[connection.slug])
            ),
            "acs": request.build_absolute_uri(reverse("saml_acs", args=[connection.slug])),
            "slo": request.build_absolute_uri(reverse("saml_sls", args=[connection.slug])),
        }
    return {
        "redirect_uri": request.build_absolute_uri(
            reverse("openid_connect_callback", kwargs={"provider_id": connection.slug})
        )
    }


@permission_required("sso:manage")
def connections(request: HttpRequest) -> HttpResponse:
    rows = [
        {"connection": connection, "urls": _sp_urls(request, connection)}
        for connection in connection_list()
    ]
    return render(request, "sso/connections.html", {"rows": rows})


@require_http_methods(["GET", "POST"])
@permission_required("sso:manage")
def connection_create_saml(request: HttpRequest) -> HttpResponse:
    return _create(request, Connection.Protocol.SAML)


@require_http_methods(["GET", "POST"])
@permission_required("sso:manage")
def connection_create_oidc(request: HttpRequest) -> HttpResponse:
    return _create(request, Connection.Protocol.OIDC)


def _create(request: HttpRequest, protocol: str) -> HttpResponse:
    form_class = form_class_for(protocol)
    form = form_class(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                connection = services.connection_create(
                    actor=request.user, protocol=protocol, **_service_arguments(form)
                )
            except ServiceError as exc:
                _show_errors(form, exc)
            else:
                messages.success(
                    request,
                    _("The connection “%(name)s” was created.") % {"name": connection.display_name},
                )
                return redirect("sso:connections")
        status = 400
    return render(
        request,
        "sso/connection_form.html",
        {"form": form, "protocol": protocol, "connection": None},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@permission_required("sso:manage")
def connection_edit(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get(pk=pk)
    if connection is None:
        return _missing(request)
    form = form_class_for(connection.protocol)(request.POST or None, instance=connection)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                services.connection_update(
                    actor=request.user, connection=connection, **_service_arguments(form)
                )
            except ServiceError as exc:
                _show_errors(form, exc)
            else:
                messages.success(request, _("The connection was saved."))
                return redirect("sso:connections")
        status = 400
    return render(
        request,
        "sso/connection_form.html",
        {
            "form": form,
            "protocol": connection.protocol,
            "connection": connection,
            "urls": _sp_urls(request, connection),
        },
        status=status,
    )


@require_POST
@permission_required("sso:manage")
def connection_toggle(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get(pk=pk)
    if connection is None:
        return _missing(request)
    enabled = not connection.enabled
    try:
        services.connection_set_enabled(actor=request.user, connection=connection, enabled=enabled)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("“%(name)s” is now enabled.") % {"name": connection.display_name}
            if enabled
            else _("“%(name)s” is now disabled.") % {"name": connection.display_name},
        )
    return redirect("sso:connections")


@require_http_methods(["GET", "POST"])
@permission_required("sso:manage")
def connection_delete(request: HttpRequest, pk: int) -> HttpResponse:
    connection = connection_get(pk=pk)
    if connection is None:
        return _missing(request)
    if request.method == "POST":
        services.connection_delete(actor=request.user, connection=connection)
        messages.success(
            request, _("The connection “%(name)s” was deleted.") % {"name": connection.display_name}
        )
        return redirect("sso:connections")
    return render(request, "sso/connection_delete.html", {"connection": connection})
