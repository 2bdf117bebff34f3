"""Public-site pages: the landing page and self-service sign-up."""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from apps.core.exceptions import InvalidInput
from apps.tenants.forms import SignupForm
from apps.tenants.selectors import tenant_primary_url
from apps.tenants.services import tenant_provision

SIGNUPS_PER_ADDRESS_PER_HOUR = 5
_FIELD_FOR = {"admin_password": "password1", "plan": None, "custom_domain": None}


def landing(request: HttpRequest) -> HttpResponse:
    return render(request, "tenants/landing.html")


def _signup_key(request: HttpRequest) -> str:
    return f"signup-rate:{request.META.get('REMOTE_ADDR', '')}"


def _signup_allowed(request: HttpRequest) -> bool:
    """Workspaces created from this address in the last hour are under the limit. Only created
    workspaces count: a mistyped form costs nothing."""
    return int(cache.get(_signup_key(request), 0)) < SIGNUPS_PER_ADDRESS_PER_HOUR


def _signup_count(request: HttpRequest) -> None:
    key = _signup_key(request)
    if not cache.add(key, 1, timeout=3600):
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=3600)


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None, base_domain=settings.BASE_DOMAIN)
    if request.method == "POST" and form.is_valid():
        if not _signup_allowed(request):
            form.add_error(
                None, _("Too many workspaces were created from your network. Try again in an hour.")
            )
            return render(request, "tenants/signup.html", {"form": form}, status=429)
        data = form.cleaned_data
        try:
            result = tenant_provision(
                slug=data["slug"],
                name=data["name"],
                admin_email=data["admin_email"],
                admin_password=data["password1"],
            )
        except InvalidInput as exc:
            for field, messages in exc.details.items():
                target = _FIELD_FOR.get(field, field)
                for message in messages:
                    form.add_error(target if target in form.fields else None, message)
        else:
            _signup_count(request)
            url = tenant_primary_url(result.tenant, request)
            return render(
                request,
                "tenants/signup_done.html",
                {
                    "tenant": result.tenant,
                    "workspace_url": url,
                    "login_url": f"{url}accounts/login/",
                    "email": result.admin.email,
                },
                status=201,
            )
    status = 400 if request.method == "POST" else 200
    return render(request, "tenants/signup.html", {"form": form}, status=status)
