from __future__ import annotations

from typing import Any

from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from apps.accounts.models import User
from apps.accounts.permissions import role_choices_for_current_schema
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

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        # Django's view saves and logs separately; the change and its audit event commit together.
        with transaction.atomic():
            return super().user_change_password(request, id, form_url)

    def formfield_for_choice_field(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "role":
            kwargs["choices"] = role_choices_for_current_schema()
        return super().formfield_for_choice_field(db_field, request, **kwargs)


platform_admin_site.register(User, UserAdmin)
tenant_admin_site.register(User, UserAdmin)
