from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from drf_spectacular.views import SpectacularAPIView
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response


@extend_schema(
    summary="The organisation this host belongs to",
    responses=inline_serializer(
        "CurrentTenant",
        {
            "slug": serializers.CharField(),
            "name": serializers.CharField(),
            "status": serializers.CharField(),
        },
    ),
)
@api_view(["GET"])
@permission_classes([AllowAny])
def current_tenant(request: Request) -> Response:
    """Public facts about the workspace at this address, for sign-in pages and clients."""
    tenant = request.tenant
    return Response({"slug": tenant.slug, "name": tenant.name, "status": tenant.status})


class HostSchemaView(SpectacularAPIView):
    """The OpenAPI schema of the API this host serves (public or tenant), not of ROOT_URLCONF."""

    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        self.urlconf = getattr(request, "urlconf", None) or settings.ROOT_URLCONF
        return super().get(request, *args, **kwargs)
