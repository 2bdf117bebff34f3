"""Structured logs: one JSON object a line with the request id, tenant and user."""

import io
import json
import logging

import pytest

from apps.core.logging import JsonFormatter, RequestContextFilter


@pytest.fixture
def json_log():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger("django.request")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def test_request_log_lines_carry_request_id_tenant_and_user(db, acme, client_for, json_log):
    client = client_for(acme.host, acme.member_emails[0])
    response = client.get("/api/v1/audit/events/", HTTP_X_REQUEST_ID="trace-42")
    assert response.status_code == 403
    assert response["X-Request-ID"] == "trace-42"
    line = json.loads(json_log.getvalue().strip().splitlines()[-1])
    member = acme.user(acme.member_emails[0])
    assert line["request_id"] == "trace-42"
    assert line["tenant"] == "acme"
    assert line["user"] == str(member.pk)
    assert line["level"] == "WARNING"
    assert "Forbidden" in line["message"]
