"""Signing in and out: every outcome is audited, repeated failures lock the address."""

from django.test import Client
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from tests.conftest import PASSWORD


def _events(org, action):
    with schema_context(org.schema):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_successful_sign_in_and_sign_out_are_audited(db, acme):
    client = Client(HTTP_HOST=acme.host)
    response = client.post("/accounts/login/", {"login": acme.admin_email, "password": PASSWORD})
    assert response.status_code == 302
    sign_in = _events(acme, "auth.login")[-1]
    assert (sign_in.actor_label, sign_in.metadata["method"]) == (acme.admin_email, "password")

    assert client.post("/accounts/logout/").status_code == 302
    assert _events(acme, "auth.logout")[-1].actor_label == acme.admin_email


def test_wrong_password_is_audited_with_its_reason_and_gives_no_session(db, acme):
    client = Client(HTTP_HOST=acme.host)
    response = client.post("/accounts/login/", {"login": acme.admin_email, "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    failure = _events(acme, "auth.login_failed")[-1]
    assert failure.outcome == "failure"
    assert failure.actor_label == acme.admin_email
    assert failure.metadata == {"reason": "invalid_credentials", "method": "password"}


def test_five_failures_lock_the_address_even_for_the_right_password(db, acme):
    client = Client(HTTP_HOST=acme.host, REMOTE_ADDR="192.0.2.10")
    email = acme.member_emails[0]
    for _ in range(5):
        client.post("/accounts/login/", {"login": email, "password": "wrong"})
    response = client.post("/accounts/login/", {"login": email, "password": PASSWORD})
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session
    locked = _events(acme, "auth.login_failed")[-1]
    assert (locked.outcome, locked.metadata["reason"]) == ("denied", "locked_out")


def test_a_lockout_in_one_organisation_does_not_lock_another(db, acme, globex):
    # Same address shape, different organisations: rate-limit keys are per tenant.
    attacker = Client(HTTP_HOST=acme.host, REMOTE_ADDR="192.0.2.11")
    for _ in range(6):
        attacker.post("/accounts/login/", {"login": "shared@example.com", "password": "wrong"})
    client = Client(HTTP_HOST=globex.host, REMOTE_ADDR="192.0.2.12")
    response = client.post("/accounts/login/", {"login": globex.admin_email, "password": PASSWORD})
    assert response.status_code == 302


def test_the_session_key_changes_at_sign_in(db, acme):
    client = Client(HTTP_HOST=acme.host)
    client.get("/accounts/login/")
    client.session.save()
    before = client.session.session_key
    client.post("/accounts/login/", {"login": acme.admin_email, "password": PASSWORD})
    assert client.session.session_key != before


def test_workspaces_have_no_open_sign_up(db, acme):
    client = Client(HTTP_HOST=acme.host)
    assert "Sign Up Closed" in client.get("/accounts/signup/").content.decode()
    response = client.post(
        "/accounts/signup/",
        {"email": "intruder@evil.example", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert "Sign Up Closed" in response.content.decode()
    with schema_context(acme.schema):
        from apps.accounts.models import User

        assert not User.objects.filter(email="intruder@evil.example").exists()
