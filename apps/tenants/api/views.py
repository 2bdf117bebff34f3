from __future__ import annotations

from typing import Any

import django_filters
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.base import ScopedViewSet
from apps.tenants import services
from apps.tenants.api.serializers import (
    TenantCreatedOutput,
    TenantCreateInput,
    TenantOutput,
    TenantSuspendInput,
)
from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_list


class TenantFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=Tenant.Status.choices)
    plan = django_filters.CharFilter(field_name="plan__code")

    class Meta:
        model = Tenant
        fields: list[str] = []


@extend_schema_view(
    list=extend_schema(summary="List organisations"),
    retrieve=extend_schema(summary="One organisation"),
)
class TenantViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Organisations on the platform. Platform admins only; served on the public host."""

    serializer_class = TenantOutput
    filterset_class = TenantFilter
    lookup_field = "slug"
    permission_map = {
        "list": "tenants:read",
        "retrieve": "tenants:read",
        "create": "tenants:manage",
        "suspend": "tenants:manage",
        "resume": "tenants:manage",
        "destroy": "tenants:manage",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return tenant_list()

    @extend_schema(
        summary="Provision an organisation",
        request=TenantCreateInput,
        responses={201: TenantCreatedOutput},
    )
    def create(self, request: Request) -> Response:
        data = TenantCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        plan_code = values.pop("plan", None)
        result = services.tenant_provision(**values, plan_code=plan_code, actor=request.user)
        output = TenantCreatedOutput(
            result.tenant,
            context={
                **self.get_serializer_context(),
                "admin_email": result.admin.email,
                "admin_password": result.admin_password if result.password_generated else None,
            },
        )
        return Response(output.data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Suspend an organisation", request=TenantSuspendInput, responses=TenantOutput
    )
    @action(detail=True, methods=["post"])
    def suspend(self, request: Request, slug: str) -> Response:
        data = TenantSuspendInput(data=request.data)
        data.is_valid(raise_exception=True)
        tenant = services.tenant_suspend(
            tenant=self.get_object(), reason=data.validated_data["reason"], actor=request.user
        )
        return Response(TenantOutput(tenant, context=self.get_serializer_context()).data)

    @extend_schema(summary="Resume a suspended organisation", request=None, responses=TenantOutput)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, slug: str) -> Response:
        tenant = services.tenant_resume(tenant=self.get_object(), actor=request.user)
        return Response(TenantOutput(tenant, context=self.get_serializer_context()).data)

    @extend_schema(
        summary="Delete an organisation and all its data",
        parameters=[
            OpenApiParameter(
                "confirm", str, required=True, description="Repeat the slug to confirm."
            )
        ],
        responses={204: None},
    )
    def destroy(self, request: Request, slug: str) -> Response:
        services.tenant_delete(
            tenant=self.get_object(),
            confirm=request.query_params.get("confirm"),
            actor=request.user,
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
