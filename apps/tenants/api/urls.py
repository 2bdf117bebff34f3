from rest_framework.routers import SimpleRouter

from apps.tenants.api.views import TenantViewSet

router = SimpleRouter(trailing_slash=True)
router.register("tenants", TenantViewSet, basename="tenant")
urlpatterns = router.urls
