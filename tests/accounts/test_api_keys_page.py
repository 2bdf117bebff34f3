"""The self-service API-keys page: create (shown once), list, revoke — one's own keys only."""

import re

from django_tenants.utils import schema_context

from apps.accounts.models import ApiKey


def test_a_member_creates_sees_once_and_revokes_a_key(db, acme, client_for):
    client = client_for(acme.host, acme.member_emails[0])
    page = client.get("/people/api-keys/").content.decode()
    assert "You have no API keys yet." in page
    assert 'value="api_keys:own"' in page
    assert 'value="audit:read"' not in page  # beyond a member's role

    created = client.post("/people/api-keys/", {"name": "laptop", "scopes": ["api_keys:own"]})
    assert created.status_code == 200
    body = created.content.decode()
    assert "Your new API key" in body
    with schema_context(acme.schema):
        key = ApiKey.objects.get(name="laptop")
    secret = re.search(rf"af_{key.prefix}_[A-Za-z0-9_-]{{20,}}", body).group(0)
    # Shown once: the list afterwards shows only the prefix.
    listing = client.get("/people/api-keys/").content.decode()
    assert "Your new API key" not in listing
    assert secret not in listing
    assert f"af_{key.prefix}_…" in listing

    assert client.post(f"/people/api-keys/{key.pk}/revoke/").status_code == 302
    with schema_context(acme.schema):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is not None


def test_bad_input_is_shown_next_to_the_fields(db, acme, client_for):
    client = client_for(acme.host, acme.member_emails[0])
    response = client.post("/people/api-keys/", {"name": "", "scopes": ["audit:read"]})
    assert response.status_code == 400
    page = response.content.decode()
    assert "This field is required." in page
    assert "Select a valid choice." in page
    past = client.post(
        "/people/api-keys/", {"name": "old", "scopes": ["api_keys:own"], "expires_on": "2001-01-01"}
    )
    assert past.status_code == 400
    assert "The expiry must be in the future." in past.content.decode()


def test_nobody_revokes_someone_elses_key(db, acme, client_for):
    owner = client_for(acme.host, acme.admin_email)
    owner.post("/people/api-keys/", {"name": "admin-key", "scopes": ["api_keys:own"]})
    with schema_context(acme.schema):
        key = ApiKey.objects.get(name="admin-key")
    other = client_for(acme.host, acme.member_emails[0])
    assert other.post(f"/people/api-keys/{key.pk}/revoke/").status_code == 404
    with schema_context(acme.schema):
        assert ApiKey.objects.get(pk=key.pk).revoked_at is None
