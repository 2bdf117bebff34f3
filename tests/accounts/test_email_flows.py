"""Email verification and password reset, inside an organisation's workspace."""

import re

from django.core import mail
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.services import user_create
from tests.conftest import PASSWORD


def _link(message: object, host: str) -> str:
    url = next(word for word in str(message).split() if word.startswith(f"http://{host}"))
    return url.split(host, 1)[1]


def test_an_unverified_address_must_be_confirmed_before_signing_in(db, acme):
    with schema_context(acme.schema):
        user_create(email="unverified@acme.example", password=PASSWORD, role="member")
    client = Client(HTTP_HOST=acme.host)
    response = client.post(
        "/accounts/login/", {"login": "unverified@acme.example", "password": PASSWORD}
    )
    assert response["Location"] == "/accounts/confirm-email/"
    assert "_auth_user_id" not in client.session
    assert mail.outbox[-1].to == ["unverified@acme.example"]

    confirm = _link(mail.outbox[-1].body, acme.host)
    assert client.post(confirm).status_code == 302
    response = Client(HTTP_HOST=acme.host).post(
        "/accounts/login/", {"login": "unverified@acme.example", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_a_forgotten_password_is_reset_by_email(db, acme):
    member = acme.member_emails[0]
    client = Client(HTTP_HOST=acme.host)
    assert client.post("/accounts/password/reset/", {"email": member}).status_code == 302
    reset = _link(mail.outbox[-1].body, acme.host)
    form_page = client.get(reset, follow=True)
    action = re.search(r'action="([^"]+)"', form_page.content.decode())
    target = (
        action.group(1)
        if action and "password/reset/key" in action.group(1)
        else form_page.request["PATH_INFO"]
    )
    new_password = "a-brand-new-passphrase-7"
    done = client.post(target, {"password1": new_password, "password2": new_password})
    assert done.status_code == 302
    signed_in = Client(HTTP_HOST=acme.host).post(
        "/accounts/login/", {"login": member, "password": new_password}
    )
    assert signed_in.status_code == 302


def test_a_reset_request_does_not_reveal_whether_an_address_exists(db, acme):
    client = Client(HTTP_HOST=acme.host)
    known = client.post("/accounts/password/reset/", {"email": acme.member_emails[0]})
    unknown = client.post("/accounts/password/reset/", {"email": "nobody@acme.example"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
