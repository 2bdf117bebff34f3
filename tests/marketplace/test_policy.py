"""Private blueprints and an organisation's catalog policy, enforced wherever the catalog is read."""

from __future__ import annotations

import pytest
from django_tenants.utils import schema_context

from apps.audit.models import AuditEvent
from apps.core.exceptions import NotFound
from apps.marketplace.models import CatalogPolicy
from apps.marketplace.selectors import deployable_version
from apps.marketplace.services import catalog_policy_update
from tests.marketplace.conftest import as_json, publish

API = "/api/v1/marketplace/blueprints/"
POLICY = "/api/v1/marketplace/catalog-policy/"


def visible(client, **params):
    body = as_json(client.get(API, {"page_size": 100, **params}))
    return {row["slug"] for row in body["results"]}


def test_a_private_blueprint_is_seen_only_by_the_organisations_it_names(
    db, client_for, acme, globex
):
    publish(slug="acme-internal", name="Acme Internal", visibility="private", tenants=["acme"])
    acme_client = client_for(acme.host, acme.admin_email)
    globex_client = client_for(globex.host, globex.admin_email)

    assert "acme-internal" in visible(acme_client)
    assert "acme-internal" not in visible(globex_client)
    assert globex_client.get(API + "acme-internal/").status_code == 404
    assert globex_client.get("/marketplace/acme-internal/").status_code == 404
    assert client_for("localhost").get("/marketplace/acme-internal/").status_code == 404
    with pytest.raises(NotFound):
        deployable_version(tenant=globex.tenant, slug="acme-internal", version="1.0.0")


def test_an_allow_list_limits_search_detail_api_and_deploys(db, client_for, acme, globex):
    admin = client_for(acme.host, acme.admin_email)

    response = admin.put(
        POLICY,
        {"mode": "allow_list", "blueprints": ["it-helpdesk"], "categories": ["language"]},
        content_type="application/json",
    )

    assert response.status_code == 200, response.content
    member = client_for(acme.host, acme.member_emails[0])
    assert visible(member) == {"it-helpdesk", "translator"}
    assert visible(member, q="sql") == set()
    assert member.get(API + "sql-helper/").status_code == 404
    assert member.get("/marketplace/sql-helper/").status_code == 404
    with pytest.raises(NotFound):
        deployable_version(tenant=acme.tenant, slug="sql-helper", version="1.0.0")
    # Another organisation is unaffected.
    assert "sql-helper" in visible(client_for(globex.host, globex.admin_email))


def test_an_allow_list_by_publisher(db, client_for, acme):
    publish()
    with schema_context(acme.schema):
        catalog_policy_update(
            tenant=acme.tenant,
            actor=acme.user(acme.admin_email),
            mode="allow_list",
            publisher_slugs=["northwind"],
        )

    assert visible(client_for(acme.host, acme.admin_email)) == {"invoice-checker"}


def test_private_only_hides_the_public_catalog(db, client_for, acme):
    publish(slug="acme-internal", name="Acme Internal", visibility="private", tenants=["acme"])
    with schema_context(acme.schema):
        catalog_policy_update(
            tenant=acme.tenant, actor=acme.user(acme.admin_email), mode="private_only"
        )

    member = client_for(acme.host, acme.member_emails[0])

    assert visible(member) == {"acme-internal"}
    assert (
        "Your organisation shows only the blueprints made for it."
        in member.get("/marketplace/").content.decode()
    )


def test_policy_changes_are_audited_with_before_and_after(db, client_for, acme):
    client_for(acme.host, acme.admin_email).put(
        POLICY, {"mode": "private_only"}, content_type="application/json"
    )

    with schema_context(acme.schema):
        event = AuditEvent.objects.filter(action="catalog_policy.updated").latest("id")
    assert event.metadata["before"]["mode"] == "all"
    assert event.metadata["after"]["mode"] == "private_only"


def test_an_invalid_policy_is_refused_and_changes_nothing(db, client_for, acme):
    admin = client_for(acme.host, acme.admin_email)

    response = admin.put(
        POLICY,
        {"mode": "everything", "blueprints": ["no-such"], "categories": ["weapons"]},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert set(as_json(response)["error"]["details"]) == {"mode", "blueprints", "categories"}
    assert not CatalogPolicy.objects.filter(tenant=acme.tenant).exists()


def test_only_tenant_admins_set_the_policy(db, client_for, acme):
    member = client_for(acme.host, acme.member_emails[0])

    assert (
        member.put(POLICY, {"mode": "private_only"}, content_type="application/json").status_code
        == 403
    )
    assert member.get("/marketplace/policy/").status_code == 403


def test_the_policy_page_saves(db, client_for, acme):
    admin = client_for(acme.host, acme.admin_email)

    page = admin.get("/marketplace/policy/")
    saved = admin.post("/marketplace/policy/", {"mode": "allow_list", "categories": ["it", "hr"]})

    assert page.status_code == 200
    assert saved.status_code == 302
    policy = CatalogPolicy.objects.get(tenant=acme.tenant)
    assert (policy.mode, sorted(policy.categories)) == ("allow_list", ["hr", "it"])
