"""Workspace pages that belong to no single feature."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.permissions import has_permission


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "core/dashboard.html",
        {
            "can_read_audit": has_permission(request.user, "audit:read"),
            "can_read_members": has_permission(request.user, "members:read"),
            "can_browse_catalog": has_permission(request.user, "catalog:read"),
        },
    )
