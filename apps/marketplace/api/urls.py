"""The catalog API on an organisation's host."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.marketplace.api.views import BlueprintViewSet, CatalogPolicyViewSet, ReviewViewSet

router = SimpleRouter(trailing_slash=True)
router.register("marketplace/blueprints", BlueprintViewSet, basename="marketplace-blueprint")
router.register("marketplace/reviews", ReviewViewSet, basename="marketplace-review")
urlpatterns = [
    path(
        "marketplace/catalog-policy/",
        CatalogPolicyViewSet.as_view({"get": "retrieve", "put": "update"}),
        name="marketplace-catalog-policy",
    ),
    *router.urls,
]
