"""Every API error is JSON in one shape, whoever produced it (DRF or Django itself)."""

import pytest
from django.test import Client
from django.urls import path


def _boom(request):
    raise RuntimeError("unexpected")


urlpatterns = [path("api/v1/boom/", _boom)]


def test_unknown_api_route_is_a_json_404(db, acme):
    response = Client(HTTP_HOST=acme.host).get("/api/v1/does-not-exist/")
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": "The requested resource was not found.",
            "details": {},
        }
    }


def test_wrong_method_is_a_json_405(db, acme):
    response = Client(HTTP_HOST=acme.host).delete("/api/v1/tenant/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unauthenticated_is_a_json_401(db, acme):
    response = Client(HTTP_HOST=acme.host).get("/api/v1/audit/events/")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_crash_on_an_api_path_is_a_json_500_without_internals(db, settings):
    settings.PUBLIC_SCHEMA_URLCONF = "tests.core.test_errors"
    response = Client(HTTP_HOST="localhost", raise_request_exception=False).get("/api/v1/boom/")
    assert response.status_code == 500
    body = response.json()
    assert body["error"]["code"] == "server_error"
    assert "unexpected" not in response.content.decode()


def test_non_api_404_stays_an_html_page(db, acme):
    response = Client(HTTP_HOST=acme.host).get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("incoming", ["abc-123", "A.b_c-9"])
def test_request_id_is_kept_when_sane_and_returned(db, incoming):
    response = Client(HTTP_HOST="localhost").get("/healthz", HTTP_X_REQUEST_ID=incoming)
    assert response["X-Request-ID"] == incoming


def test_insane_request_id_is_replaced(db):
    response = Client(HTTP_HOST="localhost").get("/healthz", HTTP_X_REQUEST_ID="<script>" * 20)
    assert len(response["X-Request-ID"]) == 32
    assert "<" not in response["X-Request-ID"]
