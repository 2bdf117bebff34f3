from __future__ import annotations

from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import User
from apps.core.admin import AuditedModelAdmin
from apps.core.admin_sites import platform_admin_site, tenant_admin_site


class UserAdmin(AuditedModelAdmin, DjangoUserAdmin[User]):
    ordering = ("email",)
    list_display = ("email", "full_name", "role", "is_active", "last_login")
    list_filter = ("role", "is_active", "is_staff")
    search_fields = ("email", "full_name")
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        (_("Profile"), {"fields": ("full_name", "role")}),
        # Access follows the role; superuser status is not granted from the admin.
        (_("Access"), {"fields": ("is_active", "is_staff")}),
        (_("Dates"), {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "role", "password1", "password2")}),
    )
    readonly_fields = ("last_login", "date_joined")
    filter_horizontal = ()


platform_admin_site.register(User, UserAdmin)
tenant_admin_site.register(User, UserAdmin)
