"""Choose the tenant from the request's host, before anything else touches the database."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import set_urlconf
from django.utils import translation
from django.utils.translation import gettext as _
from django_tenants.middleware.main import TenantMainMiddleware
from django_tenants.utils import remove_www

from apps.core.context import tenant_var
from apps.core.middleware import is_api_request, json_error_response
from apps.tenants.db import connection
from apps.tenants.selectors import tenant_for_host

logger = logging.getLogger(__name__)

# Probes and scrapers answer on any host (including a bare IP) and never touch tenant data.
HOST_INDEPENDENT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class TenantRoutingMiddleware(TenantMainMiddleware):
    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        connection.set_schema_to_public()
        if request.path in HOST_INDEPENDENT_PATHS:
            # Probes arrive with whatever Host the orchestrator uses (often a bare pod IP); these
            # views never use the host, so skip its validation for them only.
            request.get_host = request._get_raw_host  # type: ignore[method-assign,attr-defined]
            request.urlconf = settings.PUBLIC_SCHEMA_URLCONF
            set_urlconf(request.urlconf)
            return None

        try:
            hostname = remove_www(request.get_host().split(":")[0])
        except DisallowedHost:
            return self._unknown_host(request)
        try:
            tenant = tenant_for_host(hostname)
        except DatabaseError:
            logger.exception("tenant lookup failed")
            return self._unavailable(request)
        if tenant is None:
            return self._unknown_host(request)

        tenant.domain_url = hostname
        request.tenant = tenant  # type: ignore[attr-defined]
        tenant_var.set(tenant.schema_name)
        if not tenant.is_active:
            return self._suspended(request, tenant)
        connection.set_tenant(tenant)
        self.setup_url_routing(request)
        return None

    @staticmethod
    def _unknown_host(request: HttpRequest) -> HttpResponse:
        # Answered before LocaleMiddleware runs, so pick the language here.
        translation.activate(translation.get_language_from_request(request))
        message = _("There is no organisation at this address. Check the link you followed.")
        if is_api_request(request):
            return json_error_response(404, code="unknown_host", message=message)
        return _page(request, _("No workspace here"), message, status=404)

    @staticmethod
    def _unavailable(request: HttpRequest) -> HttpResponse:
        translation.activate(translation.get_language_from_request(request))
        message = _("The service is temporarily unavailable. Try again shortly.")
        if is_api_request(request):
            response = json_error_response(503, message=message)
        else:
            response = _page(request, _("Temporarily unavailable"), message, status=503)
        response["Retry-After"] = "30"
        return response

    @staticmethod
    def _suspended(request: HttpRequest, tenant: object) -> HttpResponse:
        translation.activate(translation.get_language_from_request(request))
        message = _(
            "This organisation's workspace is suspended. Contact your administrator or our "
            "support team to restore access."
        )
        if is_api_request(request):
            return json_error_response(403, code="tenant_suspended", message=message)
        return _page(request, _("Workspace suspended"), message, status=403, warning=True)


def _page(
    request: HttpRequest, heading: str, message: str, *, status: int, warning: bool = False
) -> HttpResponse:
    context = {"heading": heading, "message": message, "warning": warning}
    return render(request, "message_page.html", context, status=status)
