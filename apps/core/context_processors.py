from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def site(request: HttpRequest) -> dict[str, Any]:
    tenant = getattr(request, "tenant", None)
    is_tenant = tenant is not None and tenant.schema_name != settings.PUBLIC_SCHEMA_NAME
    return {
        "current_tenant": tenant if is_tenant else None,
        "is_public_site": not is_tenant,
    }
