from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts import members
from apps.accounts.api.serializers import (
    InvitationCreateInput,
    InvitationOutput,
    MemberOutput,
    MemberRoleInput,
)
from apps.accounts.links import invitation_accept_url
from apps.accounts.models import Invitation, User
from apps.accounts.selectors import invitation_list, member_list
from apps.core.api.base import ScopedViewSet


@extend_schema_view(
    list=extend_schema(summary="Members"), retrieve=extend_schema(summary="One member")
)
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """People in the organisation: their role, status, last sign-in and how they sign in."""

    serializer_class = MemberOutput
    schema_model = User
    permission_map = {
        "list": "members:read",
        "retrieve": "members:read",
        "role": "members:manage",
        "deactivate": "members:manage",
        "reactivate": "members:manage",
        "destroy": "members:manage",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return member_list()

    @extend_schema(
        summary="Change a member's role", request=MemberRoleInput, responses=MemberOutput
    )
    @action(detail=True, methods=["post"])
    def role(self, request: Request, pk: str) -> Response:
        data = MemberRoleInput(data=request.data)
        data.is_valid(raise_exception=True)
        member = members.member_role_change(
            member=self.get_object(),
            role=data.validated_data["role"],
            actor=cast(User, request.user),
        )
        return Response(MemberOutput(member).data)

    @extend_schema(
        summary="Deactivate a member (sign-in and API keys stop at once)",
        request=None,
        responses=MemberOutput,
    )
    @action(detail=True, methods=["post"])
    def deactivate(self, request: Request, pk: str) -> Response:
        member = members.member_deactivate(member=self.get_object(), actor=cast(User, request.user))
        return Response(MemberOutput(member).data)

    @extend_schema(summary="Reactivate a member", request=None, responses=MemberOutput)
    @action(detail=True, methods=["post"])
    def reactivate(self, request: Request, pk: str) -> Response:
        member = members.member_reactivate(member=self.get_object(), actor=cast(User, request.user))
        return Response(MemberOutput(member).data)

    @extend_schema(summary="Remove a member from the organisation", responses={204: None})
    def destroy(self, request: Request, pk: str) -> Response:
        members.member_remove(member=self.get_object(), actor=cast(User, request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(summary="Invitations"), retrieve=extend_schema(summary="One invitation")
)
class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ScopedViewSet):
    """Invitations to join the organisation (signed links, valid seven days, single use)."""

    serializer_class = InvitationOutput
    schema_model = Invitation
    permission_map = {
        "list": "members:manage",
        "retrieve": "members:manage",
        "create": "members:manage",
        "revoke": "members:manage",
    }

    def scoped_queryset(self) -> QuerySet[Any]:
        return invitation_list()

    @extend_schema(
        summary="Invite someone", request=InvitationCreateInput, responses={201: InvitationOutput}
    )
    def create(self, request: Request) -> Response:
        data = InvitationCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        invitation = members.invitation_create(
            email=data.validated_data["email"],
            role=data.validated_data["role"],
            actor=cast(User, request.user),
            accept_url=invitation_accept_url(request),
        )
        return Response(InvitationOutput(invitation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Withdraw a pending invitation", request=None, responses=InvitationOutput
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str) -> Response:
        invitation = members.invitation_revoke(
            invitation=self.get_object(), actor=cast(User, request.user)
        )
        return Response(InvitationOutput(invitation).data)
