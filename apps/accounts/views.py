"""Pages for tenant admins: members and invitations."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.accounts.decorators import permission_required
from apps.accounts.selectors import member_list as select_members


@permission_required("members:read")
def member_list(request: HttpRequest) -> HttpResponse:
    return render(request, "accounts/members.html", {"members": select_members()})
