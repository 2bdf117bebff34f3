"""Deployments API: deploy, list with health and usage, settings, secrets, pause, resume,
upgrade and delete. Everything goes through the services the pages use."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.core.api.base import ScopedViewSet
from apps.deployments import services
from apps.deployments.api.serializers import (
    AskInput,
    AskOutput,
    DeploymentCreateInput,
    DeploymentOutput,
    DeploymentUpdateInput,
    DocumentInput,
    DocumentOutput,
    RotateSecretInput,
    UpgradeInput,
)
from apps.deployments.models import Deployment, DeploymentSecret
from apps.deployments.runtime import deployment_ask
from apps.deployments.selectors import deployment_get, deployment_stats, deployments_live
from apps.tenants.models import Tenant


def _tenant(request: Request) -> Tenant:
    tenant = getattr(request, "tenant", None)
    assert isinstance(tenant, Tenant)
    return tenant


def _with_secrets(rows: QuerySet[Deployment]) -> QuerySet[Deployment]:
    # Only the names are needed for the output; the encrypted values are not even loaded.
    names = DeploymentSecret.objects.only("id", "name", "deployment_id")
    return rows.prefetch_related(Prefetch("secrets", queryset=names))


@extend_schema_view(
    list=extend_schema(summary="Deployments, with this month's usage and health"),
    retrieve=extend_schema(summary="One deployment"),
)
class DeploymentViewSet(ScopedViewSet):
    """The organisation's deployed agents."""

    serializer_class = DeploymentOutput
    schema_model = Deployment
    permission_map = {
        "list": "deployments:read",
        "retrieve": "deployments:read",
        "create": "deployments:manage",
        "partial_update": "deployments:manage",
        "destroy": "deployments:manage",
        "upgrade": "deployments:manage",
        "rotate_secret": "deployments:manage",
        "pause": "deployments:operate",
        "resume": "deployments:operate",
        "ask": "chat:use",
        "documents": "deployments:read",
        "add_document": "deployments:manage",
        "remove_document": "deployments:manage",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return _with_secrets(deployments_live())

    def _render(self, deployment: Deployment, code: int = status.HTTP_200_OK) -> Response:
        fresh = _with_secrets(deployments_live()).get(pk=deployment.pk)
        stats = deployment_stats([fresh.pk])
        return Response(DeploymentOutput(fresh, context={"stats": stats}).data, status=code)

    def list(self, request: Request) -> Response:
        rows = list(self.scoped_queryset())
        stats = deployment_stats([row.pk for row in rows])
        return Response(DeploymentOutput(rows, many=True, context={"stats": stats}).data)

    def retrieve(self, request: Request, pk: str) -> Response:
        return self._render(deployment_get(pk=pk))

    @extend_schema(
        summary="Deploy a blueprint",
        request=DeploymentCreateInput,
        responses={201: DeploymentOutput},
    )
    def create(self, request: Request) -> Response:
        data = DeploymentCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_create(
            tenant=_tenant(request),
            actor=request.user,
            blueprint_slug=data.validated_data["blueprint"],
            version=data.validated_data.get("version") or None,
            name=data.validated_data["name"],
            settings=data.validated_data["settings"],
            fallback_provider=data.validated_data["fallback_provider"],
        )
        return self._render(deployment, status.HTTP_201_CREATED)

    @extend_schema(
        summary="Rename or change settings",
        request=DeploymentUpdateInput,
        responses=DeploymentOutput,
    )
    def partial_update(self, request: Request, pk: str) -> Response:
        data = DeploymentUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = deployment_get(pk=pk)
        deployment = services.deployment_update_settings(
            deployment=deployment,
            actor=request.user,
            settings=data.validated_data.get("settings", deployment.settings),
            name=data.validated_data.get("name"),
        )
        return self._render(deployment)

    @extend_schema(
        summary="Delete (the usage history stays; secrets are destroyed)", responses={204: None}
    )
    def destroy(self, request: Request, pk: str) -> Response:
        services.deployment_delete(deployment=deployment_get(pk=pk), actor=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(summary="Pause", request=None, responses=DeploymentOutput)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: str) -> Response:
        deployment = services.deployment_pause(deployment=deployment_get(pk=pk), actor=request.user)
        return self._render(deployment)

    @extend_schema(
        summary="Resume (checks the plan's limit)", request=None, responses=DeploymentOutput
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        deployment = services.deployment_resume(
            deployment=deployment_get(pk=pk), actor=request.user, tenant=_tenant(request)
        )
        return self._render(deployment)

    @extend_schema(
        summary="Upgrade to another version", request=UpgradeInput, responses=DeploymentOutput
    )
    @action(detail=True, methods=["post"])
    def upgrade(self, request: Request, pk: str) -> Response:
        data = UpgradeInput(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_upgrade(
            deployment=deployment_get(pk=pk),
            actor=request.user,
            tenant=_tenant(request),
            version=data.validated_data["version"],
        )
        return self._render(deployment)

    @extend_schema(
        summary="Replace a secret setting", request=RotateSecretInput, responses=DeploymentOutput
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        data = RotateSecretInput(data=request.data)
        data.is_valid(raise_exception=True)
        deployment = services.deployment_secret_rotate(
            deployment=deployment_get(pk=pk),
            actor=request.user,
            name=data.validated_data["name"],
            value=data.validated_data["value"],
        )
        return self._render(deployment)

    @extend_schema(
        summary="Ask the agent one question (no history kept)",
        request=AskInput,
        responses=AskOutput,
    )
    @action(detail=True, methods=["post"])
    def ask(self, request: Request, pk: str) -> Response:
        data = AskInput(data=request.data)
        data.is_valid(raise_exception=True)
        answer = deployment_ask(
            deployment=deployment_get(pk=pk), user=request.user, text=data.validated_data["message"]
        )
        usage = answer.usage
        return Response(
            {
                "reply": answer.text,
                "refused": answer.refused.code if answer.refused else None,
                "offline": answer.offline,
                "tool_calls": answer.tool_calls,
                "usage": {
                    "provider": usage.provider,
                    "model": usage.model,
                    "input_tokens": usage.input_tokens,
                    "output_tokens": usage.output_tokens,
                    "latency_ms": usage.latency_ms,
                }
                if usage
                else None,
            }
        )

    @extend_schema(
        summary="Documents uploaded for the agent's knowledge", responses=DocumentOutput(many=True)
    )
    @action(detail=True, methods=["get"])
    def documents(self, request: Request, pk: str) -> Response:
        deployment = deployment_get(pk=pk)
        return Response(DocumentOutput(deployment.documents.all(), many=True).data)

    @extend_schema(
        summary="Add a knowledge document", request=DocumentInput, responses={201: DocumentOutput}
    )
    @action(detail=True, methods=["post"], url_path="documents/add")
    def add_document(self, request: Request, pk: str) -> Response:
        data = DocumentInput(data=request.data)
        data.is_valid(raise_exception=True)
        document = services.document_add(
            deployment=deployment_get(pk=pk), actor=request.user, **data.validated_data
        )
        return Response(DocumentOutput(document).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Remove a knowledge document", request=None, responses={204: None})
    @action(detail=True, methods=["post"], url_path=r"documents/(?P<document_id>\d+)/remove")
    def remove_document(self, request: Request, pk: str, document_id: str) -> Response:
        services.document_remove(
            deployment=deployment_get(pk=pk), actor=request.user, document_id=int(document_id)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)
