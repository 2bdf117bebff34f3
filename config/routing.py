"""Websocket routes. All of them are tenant routes: the handshake's host chooses the schema."""

from django.urls import path

from apps.conversations.consumers import ChatConsumer
from apps.core.consumers import WhoAmIConsumer

websocket_urlpatterns = [
    path("ws/whoami/", WhoAmIConsumer.as_asgi()),
    path("ws/deployments/<int:deployment_id>/chat/", ChatConsumer.as_asgi()),
]
