"""The catalog API on the public host: browsing, publishing, the lifecycle and moderation."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.marketplace.api.views import (
    BlueprintViewSet,
    PublisherReviewViewSet,
    PublishViewSet,
    ReportViewSet,
    VersionViewSet,
)

router = SimpleRouter(trailing_slash=True)
router.register("marketplace/blueprints", BlueprintViewSet, basename="marketplace-blueprint")
router.register("marketplace/reviews", PublisherReviewViewSet, basename="marketplace-review")
router.register("marketplace/versions", VersionViewSet, basename="marketplace-version")
router.register("marketplace/reports", ReportViewSet, basename="marketplace-report")
urlpatterns = [
    path(
        "marketplace/publish/",
        PublishViewSet.as_view({"post": "create"}),
        name="marketplace-publish",
    ),
    *router.urls,
]
