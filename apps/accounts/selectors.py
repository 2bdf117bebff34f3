"""Reads on users of the current schema."""

from __future__ import annotations

from typing import Any

from apps.accounts.models import User


def user_identity(*, user_id: int) -> dict[str, Any]:
    """Who a user is and how many people share their organisation."""
    user = User.objects.get(pk=user_id)
    return {"user": user.email, "role": user.role, "members": User.objects.count()}
