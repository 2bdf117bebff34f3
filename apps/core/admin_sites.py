"""Two admin sites: the platform's on the public host, and each organisation's on its own host.

Registering models per site keeps platform models (tenants, plans) off tenant hosts entirely.
"""

from __future__ import annotations

from typing import Any

from django.contrib.admin import AdminSite
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.accounts.permissions import has_permission
from apps.accounts.policy import password_sign_in_check


class AdminLoginForm(AdminAuthenticationForm):
    """The admin's own password form obeys the organisation's require-SSO policy too."""

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        password_sign_in_check(user, attempted=user.get_username())


class PlatformAdminSite(AdminSite):
    login_form = AdminLoginForm
    site_header = _("Agent Factory platform")
    site_title = _("Agent Factory platform")
    index_title = _("Platform administration")

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (user.is_superuser or has_permission(user, "tenants:manage"))
        )


class TenantAdminSite(AdminSite):
    login_form = AdminLoginForm
    site_header = _("Agent Factory workspace")
    site_title = _("Workspace administration")
    index_title = _("Workspace administration")

    def has_permission(self, request: HttpRequest) -> bool:
        user = request.user
        return bool(
            user.is_active
            and user.is_staff
            and (user.is_superuser or has_permission(user, "members:manage"))
        )


platform_admin_site = PlatformAdminSite(name="admin")
tenant_admin_site = TenantAdminSite(name="admin")
