from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from apps.accounts.permissions import has_permission


def site(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    is_tenant = tenant is not None and tenant.schema_name != settings.PUBLIC_SCHEMA_NAME
    user = getattr(request, "user", None)
    return {
        "current_tenant": tenant if is_tenant else None,
        "is_public_site": not is_tenant,
        # For the navigation: cheap (the role is on the user), and safe to show.
        "can_read_deployments": bool(is_tenant and has_permission(user, "deployments:read")),
        "can_chat": bool(is_tenant and has_permission(user, "chat:use")),
    }
