"""The OpenAPI schema is part of the product: it generates cleanly and its docs work offline."""

import pytest
from django.test import Client


@pytest.mark.parametrize(
    ("host", "expected_path"),
    [("localhost", "/api/v1/tenants/"), ("acme.localhost", "/api/v1/audit/events/")],
)
def test_each_host_publishes_the_schema_of_its_own_api(db, host, expected_path):
    response = Client(HTTP_HOST=host).get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert expected_path in schema["paths"]
    other = "/api/v1/audit/events/" if host == "localhost" else "/api/v1/tenants/"
    if host != "localhost":
        assert other not in schema["paths"]


def test_swagger_ui_loads_its_assets_from_this_site(db, acme):
    page = Client(HTTP_HOST=acme.host).get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "cdn.jsdelivr" not in page
    asset = Client(HTTP_HOST=acme.host).get(
        "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    )
    assert asset.status_code == 200
