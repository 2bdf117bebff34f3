"""An organisation's host: its workspace, its admin and its API."""

from django.urls import include, path

from apps.core.admin_sites import tenant_admin_site
from config.urls_common import urlpatterns as common

urlpatterns = [
    path("", include("apps.core.urls_tenant")),
    path("accounts/", include("allauth.urls")),
    path("people/", include("apps.accounts.urls")),
    path("sso/", include("apps.sso.urls")),
    path("marketplace/", include("apps.marketplace.urls")),
    path("deployments/", include("apps.deployments.urls")),
    path("chat/", include("apps.conversations.urls")),
    path("admin/", tenant_admin_site.urls),
    path("api/v1/", include("apps.core.api.urls")),
    path("api/v1/", include("apps.audit.api.urls")),
    path("api/v1/", include("apps.accounts.api.urls")),
    path("api/v1/", include("apps.marketplace.api.urls")),
    path("api/v1/", include("apps.deployments.api.urls")),
    path("api/v1/", include("apps.conversations.api.urls")),
    path("v1/", include("apps.conversations.urls_openai")),
    *common,
]
