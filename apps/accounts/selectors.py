"""Reads on users of the current schema."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from apps.accounts.models import ApiKey, Invitation, User


def user_identity(*, user_id: int) -> dict[str, Any]:
    """Who a user is and how many people share their organisation."""
    user = User.objects.get(pk=user_id)
    return {"user": user.email, "role": user.role, "members": User.objects.count()}


def api_key_list_for(*, user: Any) -> QuerySet[ApiKey]:
    """The caller's own keys, newest first."""
    return ApiKey.objects.filter(user=user).order_by("-created_at", "-id")


def member_list() -> QuerySet[User]:
    """Everyone in the organisation, with how they sign in."""
    return User.objects.order_by("email").prefetch_related("socialaccount_set")


def invitation_list() -> QuerySet[Invitation]:
    return Invitation.objects.select_related("invited_by").order_by("-created_at", "-id")
