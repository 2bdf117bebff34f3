"""The platform admin on the public host; each organisation's own admin on its host."""

from tests.conftest import PASSWORD

PLATFORM_ADMIN = "platform@agentfactory.example"


def test_platform_admin_manages_tenants_on_the_public_host(db, client_for, acme):
    client = client_for("localhost", PLATFORM_ADMIN)
    page = client.get("/admin/tenants/tenant/")
    assert page.status_code == 200
    assert "acme" in page.content.decode()
    assert client.get("/admin/tenants/plan/").status_code == 200


def test_tenant_admin_credentials_do_not_open_the_platform_admin(db, client_for, acme):
    client = client_for("localhost")
    response = client.post("/admin/login/", {"username": acme.admin_email, "password": PASSWORD})
    assert response.status_code == 200  # the login form again
    assert client.get("/admin/tenants/tenant/").status_code == 302


def test_members_without_the_admin_role_cannot_open_the_workspace_admin(db, client_for, acme):
    client = client_for(acme.host, acme.member_emails[0])
    assert client.get("/admin/").status_code == 302


def test_suspend_action_in_the_platform_admin_goes_through_the_service(db, client_for, acme):
    client = client_for("localhost", PLATFORM_ADMIN)
    response = client.post(
        "/admin/tenants/tenant/",
        {"action": "suspend", "_selected_action": [acme.tenant.pk]},
    )
    assert response.status_code == 302
    from apps.audit.models import AuditEvent
    from apps.tenants.models import Tenant

    assert Tenant.objects.get(pk=acme.tenant.pk).status == "suspended"
    assert AuditEvent.objects.filter(action="tenant.suspended", actor_label=PLATFORM_ADMIN).exists()


def test_the_audit_trail_is_read_only_in_the_admin(db, client_for, acme):
    client = client_for(acme.host, acme.admin_email)
    assert client.get("/admin/audit/auditevent/").status_code == 200
    assert client.get("/admin/audit/auditevent/add/").status_code == 403


def test_admin_changes_are_audited_with_what_changed(db, client_for, acme):
    from django_tenants.utils import schema_context

    from apps.audit.models import AuditEvent

    client = client_for(acme.host, acme.admin_email)
    response = client.post(
        "/admin/accounts/user/add/",
        {
            "email": "new@acme.example",
            "role": "developer",
            "password1": "a-long-secret-1",
            "password2": "a-long-secret-1",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="user.created").order_by("-id").first()
        user_id = event.target_id
    assert event.actor_label == acme.admin_email
    assert event.metadata["via"] == "admin"

    response = client.post(
        f"/admin/accounts/user/{user_id}/password/",
        {"password1": "another-long-secret-2", "password2": "another-long-secret-2"},
    )
    assert response.status_code == 302
    with schema_context(acme.schema):
        event = AuditEvent.objects.order_by("-id").first()
    assert (event.action, event.target_id) == ("user.changed", user_id)
    assert "password" in str(event.metadata["change"]).lower()
