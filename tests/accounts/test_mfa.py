"""Two-factor authentication: a second step at sign-in, and an organisation can require it."""

from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.policy import security_policy_update
from tests.conftest import PASSWORD


def _current_code(secret: str) -> str:
    counter = next(iter(yield_hotp_counters_from_time()))
    return format_hotp_value(hotp_value(secret, counter))


def test_a_person_with_totp_must_give_a_code_after_the_password(db, acme):
    secret = generate_totp_secret()
    with schema_context(acme.schema):
        TOTP.activate(acme.user(acme.member_emails[0]), secret)
    client = Client(HTTP_HOST=acme.host)
    response = client.post(
        "/accounts/login/", {"login": acme.member_emails[0], "password": PASSWORD}
    )
    assert response["Location"] == "/accounts/2fa/authenticate/"
    assert "_auth_user_id" not in client.session
    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert wrong.status_code == 200
    assert "_auth_user_id" not in client.session
    right = client.post("/accounts/2fa/authenticate/", {"code": _current_code(secret)})
    assert right.status_code == 302
    assert "_auth_user_id" in client.session


def test_when_required_people_without_totp_are_sent_to_set_it_up(db, acme, client_for):
    with schema_context(acme.schema):
        admin = acme.user(acme.admin_email)
        security_policy_update(actor=admin, require_mfa=True)
    client = Client(HTTP_HOST=acme.host)
    client.post("/accounts/login/", {"login": acme.member_emails[0], "password": PASSWORD})
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/totp/activate/"
    # Setting up a second factor asks for the password again, then shows the set-up page.
    reauth = client.get("/accounts/2fa/totp/activate/")
    assert reauth["Location"].startswith("/accounts/reauthenticate/")
    assert client.post(reauth["Location"], {"password": PASSWORD}).status_code == 302
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200
    api = client.get("/api/v1/api-keys/")
    assert api.status_code == 403
    assert api.json()["error"]["code"] == "mfa_required"

    with schema_context(acme.schema):
        TOTP.activate(acme.user(acme.member_emails[0]), generate_totp_secret())
    assert client.get("/").status_code == 200


def test_the_requirement_is_per_organisation(db, acme, globex, client_for):
    with schema_context(acme.schema):
        security_policy_update(actor=acme.user(acme.admin_email), require_mfa=True)
    assert client_for(globex.host, globex.member_emails[0]).get("/").status_code == 200
