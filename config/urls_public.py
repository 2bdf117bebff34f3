"""The public host: landing page, sign-up, the platform admin and the platform API."""

from django.urls import include, path

from apps.core.admin_sites import platform_admin_site
from config.urls_common import urlpatterns as common

urlpatterns = [
    path("", include("apps.core.urls_public")),
    path("", include("apps.tenants.urls")),
    path("accounts/", include("allauth.urls")),
    path("marketplace/", include("apps.marketplace.urls_public")),
    path("admin/", platform_admin_site.urls),
    path("api/v1/", include("apps.tenants.api.urls")),
    path("api/v1/", include("apps.audit.api.urls")),
    path("api/v1/", include("apps.accounts.api.urls")),
    path("api/v1/", include("apps.marketplace.api.urls_public")),
    *common,
]
