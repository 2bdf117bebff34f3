"""Routes every host answers: probes, metrics, language switching and the API docs."""

from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerView

from apps.core import health
from apps.core.api.views import HostSchemaView

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", HostSchemaView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
