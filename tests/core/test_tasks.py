"""Celery tasks run in the schema they were dispatched from — through a real Redis broker and a
real worker when REDIS_URL is set, eagerly in-process otherwise."""

from typing import cast

import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django_tenants.utils import schema_context

from apps.core.tasks import TenantTask, tenant_snapshot
from apps.tenants.db import connection
from config.celery import app

pytestmark = pytest.mark.usefixtures("committed")


@pytest.fixture(scope="module")
def worker(django_db_setup, django_db_blocker):
    if settings.CELERY_TASK_ALWAYS_EAGER:
        yield None
        return
    with (
        django_db_blocker.unblock(),
        start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=20) as running,
    ):
        yield running


def test_the_broker_is_real_when_redis_is_configured():
    if settings.REDIS_URL:
        assert app.conf.broker_url.startswith("redis://")
        assert not app.conf.task_always_eager
    else:
        assert app.conf.task_always_eager


def test_task_reads_the_data_of_the_tenant_that_dispatched_it(worker, acme, globex):
    with schema_context(acme.schema):
        from_acme = tenant_snapshot.delay()
    with schema_context(globex.schema):
        from_globex = tenant_snapshot.delay()
    assert from_acme.get(timeout=30) == {"schema": "acme", "users": 3}
    assert from_globex.get(timeout=30) == {"schema": "globex", "users": 5}


def test_task_applied_in_process_runs_in_the_callers_schema(acme):
    with schema_context(acme.schema):
        assert tenant_snapshot.apply().get() == {"schema": "acme", "users": 3}
        assert connection.schema_name == "acme"


def test_dispatch_on_commit_keeps_the_schema_of_the_moment_it_was_asked(
    db, worker, acme, django_capture_on_commit_callbacks
):
    # db: the test runs in a transaction, so on_commit callbacks wait for a commit.
    task = cast(TenantTask, tenant_snapshot)
    with django_capture_on_commit_callbacks() as callbacks, schema_context(acme.schema):
        task.delay_on_commit()
    assert len(callbacks) == 1  # nothing is sent before the commit
    # The callback runs after the schema_context was left, as on_commit callbacks do.
    assert connection.schema_name == "public"
    result = callbacks[0]()
    assert result.get(timeout=30) == {"schema": "acme", "users": 3}


def test_task_for_a_deleted_tenant_does_nothing_and_restores_the_caller(worker, acme):
    with schema_context(acme.schema):
        result = tenant_snapshot.apply_async(headers={"tenant_schema": "gone_tenant"})
        assert result.get(timeout=30) is None
        assert connection.schema_name == "acme"
