"""The organisation's security policy: validated, audited, and never able to lock everyone out."""

import pytest
from django_tenants.utils import schema_context

from apps.accounts.policy import (
    password_sign_in_allowed,
    security_policy_get,
    security_policy_update,
)
from apps.audit.models import AuditEvent
from apps.core.exceptions import InvalidInput


def test_requiring_sso_needs_a_break_glass_tenant_admin(db, acme):
    with schema_context(acme.schema):
        admin = acme.user(acme.admin_email)
        with pytest.raises(InvalidInput) as error:
            security_policy_update(actor=admin, require_sso=True)
        assert "break_glass_user" in error.value.details
        assert security_policy_get().require_sso is False

        member = acme.user(acme.member_emails[0])
        with pytest.raises(InvalidInput):
            security_policy_update(actor=admin, require_sso=True, break_glass_user=member)

        security_policy_update(actor=admin, require_sso=True, break_glass_user=admin)
        assert password_sign_in_allowed(admin)
        assert not password_sign_in_allowed(member)
        event = AuditEvent.objects.filter(action="security_policy.changed").get()
        assert event.metadata["before"]["require_sso"] is False
        assert event.metadata["after"] == {
            "require_mfa": False,
            "require_sso": True,
            "break_glass_user": admin.email,
        }


def test_unknown_settings_are_refused(db, acme):
    with schema_context(acme.schema), pytest.raises(InvalidInput):
        security_policy_update(actor=None, allow_everything=True)


def test_the_admin_sign_in_obeys_require_sso_too(db, acme):
    from django.test import Client

    from tests.conftest import PASSWORD

    with schema_context(acme.schema):
        admin = acme.user(acme.admin_email)
        second = acme.user(acme.member_emails[0])
        second.role, second.is_staff = "tenant_admin", True
        second.save(update_fields=["role", "is_staff"])
        security_policy_update(actor=admin, require_sso=True, break_glass_user=admin)
    refused = Client(HTTP_HOST=acme.host)
    response = refused.post("/admin/login/", {"username": second.email, "password": PASSWORD})
    assert response.status_code == 200
    assert "requires single sign-on" in response.content.decode()
    assert "_auth_user_id" not in refused.session
    allowed = Client(HTTP_HOST=acme.host)
    assert (
        allowed.post("/admin/login/", {"username": admin.email, "password": PASSWORD}).status_code
        == 302
    )
    with schema_context(acme.schema):
        assert AuditEvent.objects.filter(
            action="auth.login_failed", metadata__reason="sso_required"
        ).exists()


def test_tenant_admins_set_the_policy_on_its_page(db, acme, client_for):
    admin = client_for(acme.host, acme.admin_email)
    assert admin.get("/people/security/").status_code == 200
    refused = admin.post("/people/security/", {"require_sso": "on"})
    assert refused.status_code == 400
    assert "Name a break-glass administrator" in refused.content.decode()
    with schema_context(acme.schema):
        admin_id = acme.user(acme.admin_email).pk
    saved = admin.post(
        "/people/security/",
        {"require_mfa": "on", "require_sso": "on", "break_glass_user": admin_id},
        follow=True,
    )
    assert "The security policy was saved." in saved.content.decode()
    with schema_context(acme.schema):
        policy = security_policy_get()
        assert (policy.require_mfa, policy.require_sso, policy.break_glass_user_id) == (
            True,
            True,
            admin_id,
        )


def test_members_cannot_change_the_policy(db, acme, client_for):
    member = client_for(acme.host, acme.member_emails[0])
    assert member.post("/people/security/", {"require_mfa": "on"}).status_code == 403
    with schema_context(acme.schema):
        assert security_policy_get().require_mfa is False
