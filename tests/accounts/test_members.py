"""Members and invitations: invite, accept once within seven days, change roles, deactivate,
reactivate, remove — and never lose the last tenant admin."""

from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts import members
from apps.accounts.models import Invitation, User
from apps.audit.models import AuditEvent
from apps.core.exceptions import Conflict, InvalidInput
from tests.conftest import PASSWORD

ACCEPT = "http://acme.localhost/people/invitations/accept/{token}/"


def _invite(org, email="new@acme.example", role="developer"):
    with schema_context(org.schema):
        admin = org.user(org.admin_email)
        return members.invitation_create(email=email, role=role, actor=admin, accept_url=ACCEPT)


def test_an_invited_person_joins_with_the_role_and_can_sign_in(
    db, acme, client_for, django_capture_on_commit_callbacks
):
    admin = client_for(acme.host, acme.admin_email)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin.post(
            "/api/v1/invitations/",
            {"email": "New@Acme.example", "role": "developer"},
            content_type="application/json",
        )
    assert response.status_code == 201
    assert len(mail.outbox) == 1
    link = next(line for line in mail.outbox[0].body.split() if "/invitations/accept/" in line)
    path = link.split("acme.localhost", 1)[1]

    visitor = Client(HTTP_HOST=acme.host)
    assert "Join Acme Corp" in visitor.get(path).content.decode()
    response = visitor.post(
        path, {"full_name": "New Person", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    with schema_context(acme.schema):
        user = User.objects.get(email="new@acme.example")
        assert user.role == "developer"
        assert AuditEvent.objects.filter(
            action="invitation.accepted", actor_label="new@acme.example"
        ).exists()
    assert (
        Client(HTTP_HOST=acme.host)
        .post("/accounts/login/", {"login": "new@acme.example", "password": PASSWORD})
        .status_code
        == 302
    )


def test_an_invitation_works_once(db, acme):
    invitation = _invite(acme)
    with schema_context(acme.schema):
        token = members.invitation_token(invitation)
        members.invitation_accept(token=token, password=PASSWORD)
        with pytest.raises(InvalidInput) as error:
            members.invitation_accept(token=token, password=PASSWORD)
    assert error.value.code == "invitation_used"
    response = Client(HTTP_HOST=acme.host).get(f"/people/invitations/accept/{token}/")
    assert response.status_code == 400
    assert "already been used" in response.content.decode()


def test_an_invitation_expires_after_seven_days(db, acme, settings):
    invitation = _invite(acme)
    with schema_context(acme.schema):
        token = members.invitation_token(invitation)
    original = members.INVITATION_VALIDITY
    members.INVITATION_VALIDITY = timedelta(seconds=-1)  # as if seven days had passed
    try:
        with schema_context(acme.schema), pytest.raises(InvalidInput) as error:
            members.invitation_accept(token=token, password=PASSWORD)
    finally:
        members.INVITATION_VALIDITY = original
    assert error.value.code == "invitation_expired"


def test_an_invitation_of_another_organisation_is_refused(db, acme, globex):
    invitation = _invite(globex, email="x@globex.example")
    with schema_context(globex.schema):
        token = members.invitation_token(invitation)
    response = Client(HTTP_HOST=acme.host).get(f"/people/invitations/accept/{token}/")
    assert response.status_code == 400
    assert "another workspace" in response.content.decode()
    with schema_context(acme.schema):
        assert not User.objects.filter(email="x@globex.example").exists()


def test_a_tampered_token_is_refused(db, acme):
    invitation = _invite(acme)
    with schema_context(acme.schema):
        token = members.invitation_token(invitation)
    assert (
        Client(HTTP_HOST=acme.host).get(f"/people/invitations/accept/{token[:-2]}xx/").status_code
        == 400
    )


def test_a_revoked_invitation_cannot_be_used(db, acme, client_for):
    invitation = _invite(acme)
    admin = client_for(acme.host, acme.admin_email)
    assert admin.post(f"/api/v1/invitations/{invitation.pk}/revoke/").status_code == 200
    with schema_context(acme.schema):
        token = members.invitation_token(invitation)
        with pytest.raises(InvalidInput):
            members.invitation_accept(token=token, password=PASSWORD)


@pytest.mark.parametrize(
    ("email", "role", "field"),
    [
        ("not-an-email", "member", "email"),
        ("a@b.example", "platform_admin", "role"),
        ("admin@acme.example", "member", "email"),
    ],
)
def test_bad_invitations_are_explained(db, acme, client_for, email, role, field):
    response = client_for(acme.host, acme.admin_email).post(
        "/api/v1/invitations/", {"email": email, "role": role}, content_type="application/json"
    )
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_a_second_pending_invitation_for_one_address_is_refused(db, acme):
    _invite(acme)
    with pytest.raises(InvalidInput):
        _invite(acme)


def test_role_change_deactivate_reactivate_and_remove_are_audited(db, acme, client_for):
    admin = client_for(acme.host, acme.admin_email)
    with schema_context(acme.schema):
        member = acme.user(acme.member_emails[0])
    assert (
        admin.post(
            f"/api/v1/members/{member.pk}/role/",
            {"role": "analyst"},
            content_type="application/json",
        ).json()["role"]
        == "analyst"
    )
    assert admin.post(f"/api/v1/members/{member.pk}/deactivate/").json()["is_active"] is False
    refused = Client(HTTP_HOST=acme.host)
    response = refused.post("/accounts/login/", {"login": member.email, "password": PASSWORD})
    assert response["Location"] == "/accounts/inactive/"
    assert "_auth_user_id" not in refused.session
    assert admin.post(f"/api/v1/members/{member.pk}/reactivate/").json()["is_active"] is True
    assert admin.delete(f"/api/v1/members/{member.pk}/").status_code == 204
    with schema_context(acme.schema):
        actions = list(
            AuditEvent.objects.filter(target_type="user", target_id=str(member.pk)).values_list(
                "action", flat=True
            )
        )
    for action in (
        "member.role_changed",
        "member.deactivated",
        "member.reactivated",
        "member.removed",
    ):
        assert action in actions


def test_the_last_active_tenant_admin_cannot_be_demoted_deactivated_or_removed(
    db, acme, client_for
):
    admin_client = client_for(acme.host, acme.admin_email)
    with schema_context(acme.schema):
        admin = acme.user(acme.admin_email)
    for method, path, body in [
        ("post", f"/api/v1/members/{admin.pk}/role/", {"role": "member"}),
        ("post", f"/api/v1/members/{admin.pk}/deactivate/", {}),
        ("delete", f"/api/v1/members/{admin.pk}/", {}),
    ]:
        response = getattr(admin_client, method)(path, body, content_type="application/json")
        assert response.status_code == 409, path
        assert response.json()["error"]["code"] == "last_admin"
    with schema_context(acme.schema):
        admin.refresh_from_db()
        assert (admin.role, admin.is_active) == ("tenant_admin", True)
        # With a second admin, the first may step down.
        second = acme.user(acme.member_emails[0])
        members.member_role_change(member=second, role="tenant_admin", actor=admin)
        members.member_role_change(member=admin, role="member", actor=second)
        with pytest.raises(Conflict):
            members.member_deactivate(member=second, actor=second)


def test_members_list_shows_role_status_last_sign_in_and_origin_in_flat_queries(
    db, acme, client_for
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    admin = client_for(acme.host, acme.admin_email)
    with CaptureQueriesContext(connection) as few:
        admin.get("/api/v1/members/")
    with schema_context(acme.schema):
        for index in range(5):
            User.objects.create_user(f"extra{index}@acme.example", "x" * 12)
    with CaptureQueriesContext(connection) as many:
        response = admin.get("/api/v1/members/")
    results = response.json()["results"]
    assert {"email", "role", "is_active", "last_login", "signs_in_with"} <= set(results[0])
    assert len(many.captured_queries) == len(few.captured_queries)


def test_a_member_cannot_manage_members(db, acme, client_for):
    client = client_for(acme.host, acme.member_emails[0])
    assert client.get("/api/v1/members/").status_code == 403
    assert (
        client.post(
            "/api/v1/invitations/",
            {"email": "a@b.example", "role": "member"},
            content_type="application/json",
        ).status_code
        == 403
    )
    with schema_context(acme.schema):
        assert AuditEvent.objects.filter(
            action="permission.denied", actor_label=acme.member_emails[0]
        ).exists()
        assert not Invitation.objects.exists()


def test_members_page_lets_an_admin_invite_and_change_roles(db, acme, client_for):
    admin = client_for(acme.host, acme.admin_email)
    page = admin.get("/people/members/").content.decode()
    assert acme.member_emails[0] in page
    response = admin.post("/people/invitations/", {"email": "bad", "role": "member"})
    assert response.status_code == 400
    assert "Enter a valid email address." in response.content.decode()
    response = admin.post(
        "/people/invitations/", {"email": "page@acme.example", "role": "member"}, follow=True
    )
    assert "An invitation was sent to page@acme.example." in response.content.decode()
    with schema_context(acme.schema):
        member = acme.user(acme.member_emails[0])
    response = admin.post(f"/people/members/{member.pk}/role/", {"role": "operator"}, follow=True)
    assert "is now Operator" in response.content.decode()


def test_refused_invitation_links_are_audited(db, acme):
    Client(HTTP_HOST=acme.host).get("/people/invitations/accept/not-a-token/")
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="invitation.refused").get()
    assert (event.outcome, event.metadata["reason"]) == ("denied", "invitation_invalid")
