"""Browse and search: ranking, typo tolerance, filters, facets, sorting and pagination."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.marketplace.models import Blueprint
from apps.marketplace.selectors import CatalogQuery, catalog_search
from apps.marketplace.services import blueprint_install_record
from tests.marketplace.conftest import as_json, publish

API = "/api/v1/marketplace/blueprints/"


def search(client, **params):
    response = client.get(API, params)
    assert response.status_code == 200, response.content
    return as_json(response)


def slugs(body):
    return [row["slug"] for row in body["results"]]


def test_a_name_match_ranks_above_a_description_match(db, client_for, acme):
    publish(
        slug="ledger-helper",
        name="Ledger Helper",
        summary="Keeps the books tidy for small teams.",
        description="Mentions invoices only here, in passing, among many other words.",
        tags=["accounting"],
    )
    publish()  # Invoice Checker: "invoice" in its name
    client = client_for(acme.host, acme.admin_email)

    body = search(client, q="invoice")

    assert slugs(body)[:2] == ["invoice-checker", "ledger-helper"]


def test_typos_still_find_what_was_meant(db, client_for, acme):
    client = client_for(acme.host, acme.admin_email)

    helpdesk = search(client, q="helpdsk")
    support = search(client, q="custmer suport")

    assert "it-helpdesk" in slugs(helpdesk)
    assert helpdesk["corrected"] == {"helpdsk": ["helpdesk"]}
    assert slugs(support)[0] == "customer-support-assistant"


def test_a_query_nothing_matches_gives_an_empty_page(db, client_for, acme):
    body = search(client_for(acme.host, acme.admin_email), q="zzzqqqxxx")

    assert body["count"] == 0
    assert body["results"] == []


def test_filters_narrow_and_facets_count_the_alternatives(db, client_for, acme):
    client = client_for(acme.host, acme.admin_email)
    everything = search(client)
    data = search(client, category="data")

    assert everything["count"] == Blueprint.objects.filter(state="listed").count()
    assert {row["category"] for row in data["results"]} == {"data"}
    categories = {f["value"]: f["count"] for f in data["facets"]["category"]}
    # The category facet ignores the category filter: every category keeps its count.
    assert categories == {f["value"]: f["count"] for f in everything["facets"]["category"]}
    assert data["count"] == categories["data"]
    # Other facets apply it.
    pricing = {f["value"]: f["count"] for f in data["facets"]["pricing"]}
    assert sum(pricing.values()) == data["count"]


def test_pricing_tag_publisher_and_certified_filters(db, client_for, acme):
    publish(release="experimental")  # not certified
    client = client_for(acme.host, acme.admin_email)

    paid = search(client, pricing="monthly")
    tagged = search(client, tag="finance")
    northwind = search(client, publisher="northwind")
    certified = search(client, certified="true", publisher="northwind")

    assert paid["count"] > 0
    assert all(r["pricing"]["model"] == "monthly" for r in paid["results"])
    assert slugs(tagged) == ["invoice-checker"]
    assert slugs(northwind) == ["invoice-checker"]
    assert certified["count"] == 0


def test_sorting(db, client_for, acme):
    version = publish()
    blueprint_install_record(version=version, tenant=acme.tenant)
    client = client_for(acme.host, acme.admin_email)

    by_name = slugs(search(client, sort="name", page_size=100))
    popular = slugs(search(client, sort="popularity"))
    newest = slugs(search(client, sort="newest"))

    names = list(
        Blueprint.objects.filter(state="listed").order_by("name").values_list("slug", flat=True)
    )
    assert by_name == names
    assert popular[0] == "invoice-checker"
    assert newest[0] == "invoice-checker"


def test_pagination_links_keep_the_filters(db, client_for, acme):
    client = client_for(acme.host, acme.admin_email)

    first = search(client, page_size=5, sort="name")
    second = search(client, page_size=5, sort="name", page=2)

    assert first["pages"] == -(-first["count"] // 5)
    assert "sort=name" in first["next"]
    assert "page=2" in first["next"]
    assert not set(slugs(first)) & set(slugs(second))


def test_invalid_parameters_get_the_json_error(db, client_for, acme):
    client = client_for(acme.host, acme.admin_email)

    response = client.get(API, {"category": "weapons", "page": "0", "page_size": "1000"})

    assert response.status_code == 400
    details = as_json(response)["error"]["details"]
    assert set(details) == {"category", "page", "page_size"}


def test_search_runs_a_fixed_number_of_queries(db, acme):
    # Policy, typo lookup, facets (2), publisher names, the page: not one query per result.
    def statements(context):
        return [q for q in context.captured_queries if not q["sql"].startswith("SET ")]

    with CaptureQueriesContext(connection) as ten:
        catalog_search(tenant=acme.tenant, query=CatalogQuery(q="helpdsk", page_size=10))
    with CaptureQueriesContext(connection) as hundred:
        catalog_search(tenant=acme.tenant, query=CatalogQuery(q="", page_size=100))

    assert len(statements(ten)) <= 6
    assert len(statements(hundred)) <= 5


def test_trending_counts_installs_of_the_last_seven_days(db, client_for, acme):
    from datetime import timedelta

    from django.utils import timezone

    from apps.marketplace.models import Install

    version = publish()
    blueprint_install_record(version=version, tenant=acme.tenant)
    old = publish(slug="old-favourite", name="Old Favourite", version__version="1.0.0")
    blueprint_install_record(version=old, tenant=acme.tenant)
    Install.objects.filter(blueprint__slug="old-favourite").update(
        installed_at=timezone.now() - timedelta(days=8)
    )
    client = client_for(acme.host, acme.admin_email)

    trending = as_json(client.get(API + "trending/"))
    newest = as_json(client.get(API + "newest/"))

    assert [row["slug"] for row in trending] == ["invoice-checker"]
    assert Blueprint.objects.get(slug="old-favourite").install_count == 1
    assert newest[0]["slug"] in ("invoice-checker", "old-favourite")


def test_the_public_site_shows_the_public_catalog_to_anyone(db, client):
    page = client.get("/marketplace/?q=helpdsk", HTTP_HOST="localhost")

    assert page.status_code == 200
    assert "IT Helpdesk" in page.content.decode()


def test_cached_facet_counts_follow_catalog_changes(db, client_for, acme):
    client = client_for(acme.host, acme.admin_email)
    before = {f["value"]: f["count"] for f in search(client)["facets"]["category"]}

    publish(slug="another-data-agent", name="Another Data Agent")
    after = {f["value"]: f["count"] for f in search(client)["facets"]["category"]}

    assert after["data"] == before["data"] + 1
