from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.api.serializers import ApiKeyCreatedOutput, ApiKeyCreateInput, ApiKeyOutput
from apps.accounts.api_keys import api_key_create, api_key_revoke
from apps.accounts.models import ApiKey, User
from apps.accounts.selectors import api_key_list_for
from apps.core.api.base import ScopedViewSet


@extend_schema_view(
    list=extend_schema(summary="Your API keys"),
    retrieve=extend_schema(summary="One of your API keys"),
)
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Personal API keys. A key acts as its owner, limited to its scopes; the secret is shown
    only in the response that creates it."""

    serializer_class = ApiKeyOutput
    schema_model = ApiKey
    permission_map = {
        "list": "api_keys:own",
        "retrieve": "api_keys:own",
        "create": "api_keys:own",
        "revoke": "api_keys:own",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return api_key_list_for(user=self.request.user)

    @extend_schema(
        summary="Create an API key", request=ApiKeyCreateInput, responses={201: ApiKeyCreatedOutput}
    )
    def create(self, request: Request) -> Response:
        data = ApiKeyCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        owner = cast(User, request.user)  # IsAuthenticated has run
        created = api_key_create(user=owner, actor=owner, **data.validated_data)
        body = ApiKeyCreatedOutput(created.api_key, context={"secret": created.secret}).data
        return Response(body, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Revoke an API key", request=None, responses=ApiKeyOutput)
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        api_key = api_key_revoke(api_key=self.get_object(), actor=request.user)
        return Response(ApiKeyOutput(api_key).data)
