"""Pages for tenant admins (members and invitations) and for invited people (accepting)."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import cast

from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import members
from apps.accounts.api_keys import api_key_create, api_key_revoke
from apps.accounts.decorators import permission_required
from apps.accounts.forms import AcceptInvitationForm, ApiKeyForm, InvitationForm, SecurityPolicyForm
from apps.accounts.links import invitation_accept_url
from apps.accounts.models import Invitation, User
from apps.accounts.permissions import has_permission, role_choices_for_current_schema
from apps.accounts.policy import security_policy_get, security_policy_update
from apps.accounts.selectors import api_key_list_for, invitation_list
from apps.accounts.selectors import member_list as select_members
from apps.core.exceptions import InvalidInput, ServiceError


@permission_required("members:read")
def member_list(request: HttpRequest) -> HttpResponse:
    can_manage = has_permission(request.user, "members:manage")
    return render(
        request,
        "accounts/members.html",
        {
            "members": select_members(),
            "invitations": invitation_list().filter(status=Invitation.Status.PENDING)
            if can_manage
            else [],
            "can_manage": can_manage,
            "roles": role_choices_for_current_schema(),
            "invite_form": InvitationForm(),
        },
    )


@require_POST
@permission_required("members:manage")
def member_action(request: HttpRequest, pk: int, verb: str) -> HttpResponse:
    member = get_object_or_404(User, pk=pk)
    actor = cast(User, request.user)
    try:
        if verb == "role":
            members.member_role_change(
                member=member, role=request.POST.get("role", ""), actor=actor
            )
            messages.success(
                request,
                _("%(email)s is now %(role)s.")
                % {"email": member.email, "role": member.get_role_display()},
            )
        elif verb == "deactivate":
            members.member_deactivate(member=member, actor=actor)
            messages.success(
                request, _("%(email)s can no longer sign in.") % {"email": member.email}
            )
        elif verb == "reactivate":
            members.member_reactivate(member=member, actor=actor)
            messages.success(request, _("%(email)s can sign in again.") % {"email": member.email})
        elif verb == "remove":
            members.member_remove(member=member, actor=actor)
            messages.success(request, _("%(email)s was removed.") % {"email": member.email})
        else:
            return HttpResponse(status=404)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("accounts:members")


@require_POST
@permission_required("members:manage")
def invitation_create(request: HttpRequest) -> HttpResponse:
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            members.invitation_create(
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=cast(User, request.user),
                accept_url=invitation_accept_url(request),
            )
        except InvalidInput as exc:
            for field, errors in exc.details.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(
                request,
                _("An invitation was sent to %(email)s.") % {"email": form.cleaned_data["email"]},
            )
            return redirect("accounts:members")
    return render(
        request,
        "accounts/members.html",
        {
            "members": select_members(),
            "invitations": invitation_list().filter(status=Invitation.Status.PENDING),
            "can_manage": True,
            "roles": role_choices_for_current_schema(),
            "invite_form": form,
        },
        status=400,
    )


@require_POST
@permission_required("members:manage")
def invitation_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=pk)
    try:
        members.invitation_revoke(invitation=invitation, actor=cast(User, request.user))
        messages.success(
            request, _("The invitation to %(email)s was withdrawn.") % {"email": invitation.email}
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("accounts:members")


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    """Public: the invited person chooses a password and joins."""
    try:
        invitation = members.invitation_for_token(token)
    except InvalidInput as exc:
        return render(
            request, "accounts/invitation_invalid.html", {"message": exc.message}, status=400
        )
    form = AcceptInvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = members.invitation_accept(
                token=token,
                password=form.cleaned_data["password1"],
                full_name=form.cleaned_data["full_name"],
            )
        except InvalidInput as exc:
            for field, errors in exc.details.items():
                for error in errors:
                    form.add_error("password1" if field == "password" else None, error)
            if not exc.details:
                return render(
                    request,
                    "accounts/invitation_invalid.html",
                    {"message": exc.message},
                    status=400,
                )
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, _("Welcome! You have joined the workspace."))
            return redirect("core:home")
    status = 400 if request.method == "POST" else 200
    return render(
        request,
        "accounts/invitation_accept.html",
        {"form": form, "invitation": invitation},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@permission_required("members:manage")
def security_policy(request: HttpRequest) -> HttpResponse:
    policy = security_policy_get()
    initial = {
        "require_mfa": policy.require_mfa,
        "require_sso": policy.require_sso,
        "break_glass_user": policy.break_glass_user_id,
    }
    form = SecurityPolicyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            security_policy_update(actor=request.user, **form.cleaned_data)
        except InvalidInput as exc:
            form.add_error(None, exc.message)
            for field, errors in exc.details.items():
                for error in errors:
                    form.add_error(field if field in form.fields else None, error)
        else:
            messages.success(request, _("The security policy was saved."))
            return redirect("accounts:security")
    status = 400 if request.method == "POST" else 200
    return render(request, "accounts/security.html", {"form": form}, status=status)


@require_http_methods(["GET", "POST"])
@permission_required("api_keys:own")
def api_keys(request: HttpRequest) -> HttpResponse:
    """One's own API keys: create (the key is shown once, on the next page), list, revoke."""
    user = cast(User, request.user)
    form = ApiKeyForm(request.POST or None, user=user)
    created_secret = None
    if request.method == "POST" and form.is_valid():
        expires_on = form.cleaned_data["expires_on"]
        expires_at = (
            datetime.combine(expires_on, time.max, tzinfo=UTC) if expires_on is not None else None
        )
        try:
            created = api_key_create(
                user=user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=expires_at,
                actor=user,
            )
        except InvalidInput as exc:
            for field, errors in exc.details.items():
                for error in errors:
                    form.add_error({"expires_at": "expires_on"}.get(field, field), error)
        else:
            created_secret = created.secret
            form = ApiKeyForm(user=user)
    status = 400 if request.method == "POST" and created_secret is None else 200
    return render(
        request,
        "accounts/api_keys.html",
        {"form": form, "keys": api_key_list_for(user=user), "created_secret": created_secret},
        status=status,
    )


@require_POST
@permission_required("api_keys:own")
def api_key_revoke_page(request: HttpRequest, pk: int) -> HttpResponse:
    api_key = get_object_or_404(api_key_list_for(user=request.user), pk=pk)
    try:
        api_key_revoke(api_key=api_key, actor=request.user)
        messages.success(request, _("The key “%(name)s” was revoked.") % {"name": api_key.name})
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("accounts:api-keys")
