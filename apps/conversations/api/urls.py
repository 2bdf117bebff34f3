"""The conversations API on an organisation's host (under /api/v1/)."""

from django.urls import URLPattern, URLResolver, path
from rest_framework.routers import SimpleRouter

from apps.conversations.api.views import (
    ConversationViewSet,
    DeploymentMessageViewSet,
    message_stream,
)

router = SimpleRouter(trailing_slash=True)
router.register("conversations", ConversationViewSet, basename="conversation")

urlpatterns: list[URLPattern | URLResolver] = [
    path(
        "deployments/<int:pk>/messages/",
        DeploymentMessageViewSet.as_view({"post": "create"}),
        name="deployment-messages",
    ),
    path(
        "deployments/<int:pk>/messages/stream/",
        message_stream,
        name="deployment-messages-stream",
    ),
    *router.urls,
]
