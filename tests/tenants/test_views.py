"""The public sign-up page."""

from django.test import Client
from django_tenants.utils import schema_exists

from apps.tenants.models import Tenant

FORM = {
    "name": "Initech",
    "slug": "initech",
    "admin_email": "boss@initech.example",
    "password1": "a-long-private-passphrase",
    "password2": "a-long-private-passphrase",
}


def test_sign_up_creates_the_workspace_and_links_to_it(db):
    response = Client(HTTP_HOST="localhost:8000").post("/signup/", FORM)
    assert response.status_code == 201
    page = response.content.decode()
    assert "http://initech.localhost:8000/accounts/login/" in page
    assert schema_exists("initech")


def test_invalid_fields_are_explained_and_what_was_typed_is_kept(db):
    response = Client(HTTP_HOST="localhost").post(
        "/signup/", FORM | {"slug": "Bad Slug", "password2": "other"}
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Use 3 to 30 lowercase letters" in page
    assert "The two passwords differ." in page
    assert 'value="Initech"' in page
    assert 'value="boss@initech.example"' in page
    assert not Tenant.objects.filter(name="Initech").exists()


def test_a_weak_password_is_refused_by_the_password_rules(db):
    response = Client(HTTP_HOST="localhost").post(
        "/signup/", FORM | {"password1": "12345678", "password2": "12345678"}
    )
    assert response.status_code == 400
    assert "This password is too short" in response.content.decode()
    assert not schema_exists("initech")


def test_sign_ups_from_one_address_are_rate_limited(db):
    client = Client(HTTP_HOST="localhost", REMOTE_ADDR="198.51.100.7")
    for index in range(5):
        slug = f"rate-{index}"
        response = client.post("/signup/", FORM | {"slug": slug, "name": slug})
        assert response.status_code == 201
    response = client.post("/signup/", FORM | {"slug": "rate-x", "name": "X"})
    assert response.status_code == 429
    assert "Too many workspaces" in response.content.decode()
    assert not Tenant.objects.filter(slug="rate-x").exists()


def test_mistyped_sign_ups_do_not_count_against_the_limit(db):
    client = Client(HTTP_HOST="localhost", REMOTE_ADDR="198.51.100.8")
    for _ in range(6):
        response = client.post(
            "/signup/", FORM | {"password1": "12345678", "password2": "12345678"}
        )
        assert response.status_code == 400
    assert client.post("/signup/", FORM).status_code == 201
