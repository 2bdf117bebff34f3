"""Personal API keys: shown once, stored hashed, scoped, revocable, and bound to their owner."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tenants.utils import schema_context

from apps.accounts.api_keys import api_key_create
from apps.accounts.models import ApiKey
from apps.audit.models import AuditEvent


def _bearer(org, key: str) -> Client:
    return Client(HTTP_HOST=org.host, HTTP_AUTHORIZATION=f"Bearer {key}")


@pytest.fixture
def admin_key(acme):
    with schema_context(acme.schema):
        return api_key_create(
            user=acme.user(acme.admin_email), name="ci", scopes=["audit:read"]
        ).secret


def test_a_key_is_shown_once_and_stored_only_as_prefix_and_hash(db, acme, client_for):
    client = client_for(acme.host, acme.admin_email)
    response = client.post(
        "/api/v1/api-keys/",
        {"name": "reporting", "scopes": ["audit:read"]},
        content_type="application/json",
    )
    assert response.status_code == 201
    body = response.json()
    secret = body["key"]
    assert secret.startswith(f"af_{body['prefix']}_")
    with schema_context(acme.schema):
        stored = ApiKey.objects.get(pk=body["id"])
        assert secret not in str(stored.__dict__)
        assert AuditEvent.objects.filter(
            action="api_key.created", target_id=str(stored.pk)
        ).exists()
    listed = client.get("/api/v1/api-keys/").json()["results"]
    assert [k["prefix"] for k in listed] == [body["prefix"]]
    assert "key" not in listed[0]


def test_a_key_authenticates_as_its_owner_within_its_scopes(db, acme, admin_key):
    client = _bearer(acme, admin_key)
    assert client.get("/api/v1/audit/events/").status_code == 200
    # The owner may manage API keys, but this key was not given that scope.
    assert client.get("/api/v1/api-keys/").status_code == 403


def test_scopes_beyond_the_owners_role_are_refused(db, acme, client_for):
    client = client_for(acme.host, acme.member_emails[0])
    response = client.post(
        "/api/v1/api-keys/",
        {"name": "sneaky", "scopes": ["audit:read"]},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "scopes" in response.json()["error"]["details"]


def test_a_key_follows_its_owners_current_role(db, acme, admin_key):
    with schema_context(acme.schema):
        owner = acme.user(acme.admin_email)
        owner.role = "member"
        owner.save(update_fields=["role"])
    assert _bearer(acme, admin_key).get("/api/v1/audit/events/").status_code == 403


def test_a_deactivated_owners_keys_stop_at_once(db, acme, admin_key):
    with schema_context(acme.schema):
        owner = acme.user(acme.admin_email)
        owner.is_active = False
        owner.save(update_fields=["is_active"])
    response = _bearer(acme, admin_key).get("/api/v1/audit/events/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_and_expired_keys_are_refused(db, acme, client_for):
    owner_client = client_for(acme.host, acme.admin_email)
    with schema_context(acme.schema):
        owner = acme.user(acme.admin_email)
        revoked = api_key_create(user=owner, name="old", scopes=["audit:read"])
        expiring = api_key_create(
            user=owner,
            name="short",
            scopes=["audit:read"],
            expires_at=timezone.now() + timedelta(seconds=1),
        )
        ApiKey.objects.filter(pk=expiring.api_key.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    assert owner_client.post(f"/api/v1/api-keys/{revoked.api_key.pk}/revoke/").status_code == 200
    assert owner_client.post(f"/api/v1/api-keys/{revoked.api_key.pk}/revoke/").status_code == 409
    assert _bearer(acme, revoked.secret).get("/api/v1/audit/events/").status_code == 401
    assert _bearer(acme, expiring.secret).get("/api/v1/audit/events/").status_code == 401
    with schema_context(acme.schema):
        assert AuditEvent.objects.filter(action="api_key.revoked").count() == 1


def test_a_key_of_another_organisation_is_refused(db, acme, globex, admin_key):
    response = _bearer(globex, admin_key).get("/api/v1/audit/events/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"


@pytest.mark.parametrize("presented", ["af_", "af_nothing", "garbage", "af_abc_" + "x" * 40, ""])
def test_malformed_keys_are_a_clean_401(db, acme, presented):
    response = _bearer(acme, presented).get("/api/v1/audit/events/")
    assert response.status_code == 401


def test_last_use_is_recorded(db, acme, admin_key):
    _bearer(acme, admin_key).get("/api/v1/audit/events/")
    with schema_context(acme.schema):
        assert ApiKey.objects.get().last_used_at is not None


def test_keys_are_private_to_their_owner(db, acme, client_for, admin_key):
    other = client_for(acme.host, acme.member_emails[0])
    assert other.get("/api/v1/api-keys/").json()["results"] == []
    with schema_context(acme.schema):
        key_id = ApiKey.objects.get().pk
    assert other.post(f"/api/v1/api-keys/{key_id}/revoke/").status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "scopes": ["api_keys:own"]}, "name"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": ["tenants:manage"]}, "scopes"),
        (
            {"name": "x", "scopes": ["api_keys:own"], "expires_at": "2001-01-01T00:00:00Z"},
            "expires_at",
        ),
        ({"name": "x", "scopes": "api_keys:own"}, "scopes"),
    ],
)
def test_bad_input_is_explained(db, acme, client_for, body, field):
    response = client_for(acme.host, acme.admin_email).post(
        "/api/v1/api-keys/", body, content_type="application/json"
    )
    assert response.status_code == 400
    assert field in response.json()["error"]["details"]


def test_a_refused_key_is_audited_without_its_secret(db, acme, globex, admin_key):
    _bearer(globex, admin_key).get("/api/v1/audit/events/")
    with schema_context(globex.schema):
        event = AuditEvent.objects.filter(action="auth.api_key_failed").get()
    assert event.metadata["key_prefix"] == admin_key[:15]
    assert admin_key[15:] not in str(event.metadata)
