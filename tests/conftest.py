"""Shared fixtures: a real PostgreSQL test database with the public schema, the template schema
and two organisations (acme and globex) provisioned once per run, committed, so that tests using
threads, websockets, workers or a live server see them too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client
from django_tenants.utils import schema_context

from apps.accounts.models import Role, User
from apps.accounts.services import user_create
from apps.marketplace.services import publisher_ensure
from apps.marketplace.shipped import shipped_catalog_seed
from apps.tenants.db import connection
from apps.tenants.models import Tenant
from apps.tenants.selectors import tenant_for_host
from apps.tenants.services import public_tenant_ensure, template_schema_migrate, tenant_provision

PASSWORD = "correct-horse-battery-staple"


@dataclass(frozen=True)
class Org:
    """A provisioned tenant with its people, as tests use it."""

    tenant: Tenant
    host: str
    admin_email: str
    member_emails: tuple[str, ...]

    @property
    def slug(self) -> str:
        return self.tenant.slug

    @property
    def schema(self) -> str:
        return self.tenant.schema_name

    def user(self, email: str) -> User:
        with schema_context(self.schema):
            return User.objects.get(email=email)


def _provision_org(slug: str, name: str, members: int) -> Org:
    result = tenant_provision(
        slug=slug, name=name, admin_email=f"admin@{slug}.example", admin_password=PASSWORD
    )
    emails = []
    with schema_context(result.tenant.schema_name):
        for index in range(members):
            email = f"member{index}@{slug}.example"
            user_create(email=email, password=PASSWORD, role=Role.MEMBER, email_verified=True)
            emails.append(email)
        user_create(
            email=f"auditor@{slug}.example",
            password=PASSWORD,
            role=Role.AUDITOR,
            email_verified=True,
        )
    return Org(result.tenant, f"{slug}.{settings.BASE_DOMAIN}", result.admin.email, tuple(emails))


@pytest.fixture(scope="session")
def django_db_setup(request, django_test_environment, django_db_blocker, django_db_keepdb):
    """Always create the test database, whatever the selected tests are marked with.

    pytest-django creates it only for aliases some collected test marks as using the database;
    a run of only ``committed`` tests would otherwise talk to the developer's real database.
    """
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=request.config.option.verbose,
            interactive=False,
            aliases={"default"},  # type: ignore[arg-type]  # a set of aliases at run time
            keepdb=django_db_keepdb,
        )
        assert connection.settings_dict["NAME"].startswith("test_"), "not on a test database"
        _seed()
    yield
    if not django_db_keepdb:
        with django_db_blocker.unblock():
            # Worker threads (websocket consumers, database_sync_to_async) keep connections open.
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            connection.close()
            teardown_databases(config, verbosity=request.config.option.verbose)


def _seed() -> None:
    public_tenant_ensure()
    template_schema_migrate()
    with schema_context("public"):
        user_create(
            email="platform@agentfactory.example",
            password=PASSWORD,
            role=Role.PLATFORM_ADMIN,
            is_staff=True,
            email_verified=True,
        )
        user_create(
            email="publisher@agentfactory.example",
            password=PASSWORD,
            role=Role.PUBLISHER,
            email_verified=True,
        )
        shipped_catalog_seed()
        publisher = publisher_ensure(slug="northwind", name="Northwind Agents")
        publisher.members.add(User.objects.get(email="publisher@agentfactory.example"))
    # Different member counts make it obvious which schema a reader actually saw.
    _provision_org("acme", "Acme Corp", members=1)
    _provision_org("globex", "Globex Inc", members=3)


@pytest.fixture(scope="session")
def orgs(django_db_setup, django_db_blocker) -> dict[str, Org]:
    with django_db_blocker.unblock(), schema_context("public"):
        result = {}
        for slug in ("acme", "globex"):
            tenant = Tenant.objects.get(slug=slug)
            emails = tuple(sorted(_emails_in(tenant.schema_name, Role.MEMBER)))
            result[slug] = Org(
                tenant, f"{slug}.{settings.BASE_DOMAIN}", f"admin@{slug}.example", emails
            )
        return result


def _emails_in(schema: str, role: str) -> list[str]:
    with schema_context(schema):
        return list(User.objects.filter(role=role).values_list("email", flat=True))


@pytest.fixture
def acme(orgs: dict[str, Org]) -> Org:
    return orgs["acme"]


@pytest.fixture
def globex(orgs: dict[str, Org]) -> Org:
    return orgs["globex"]


@pytest.fixture(autouse=True)
def _public_schema_between_tests() -> Iterator[None]:
    yield
    with contextlib.suppress(Exception):
        connection.set_schema_to_public()


@pytest.fixture
def client_for():
    """A Django test client speaking to one host, optionally signed in as someone there."""

    def make(host: str, email: str | None = None, **headers: Any) -> Client:
        client = Client(HTTP_HOST=host, **headers)
        if email is not None:
            # login() bypasses the middleware, so enter the host's schema as a request would.
            tenant = tenant_for_host(host)
            assert tenant is not None, f"no tenant at {host}"
            with schema_context(tenant.schema_name):
                assert client.login(username=email, password=PASSWORD), (
                    f"cannot sign in {email} at {host}"
                )
        return client

    return make


@pytest.fixture
def committed(django_db_setup, django_db_blocker) -> Iterator[None]:
    """Database access outside any test transaction: what is written is committed."""
    with django_db_blocker.unblock():
        yield


def make_session_cookie(org: Org, email: str) -> str:
    """Create a committed, signed-in session in the org's schema; returns the session key."""
    with schema_context(org.schema):
        user = User.objects.get(email=email)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        return str(session.session_key)


@pytest.fixture(scope="session")
def product_server(django_db_setup, tmp_path_factory):
    """The product served by uvicorn in a subprocess, on this run's test database."""
    from tests.servers import ServerProcess, database_url

    server = ServerProcess(
        {"DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings.test"},
        tmp_path_factory.mktemp("live") / "server.log",
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests last: while Playwright's browser is open, its event loop is current in the
    main thread and Django refuses synchronous database calls there."""
    items.sort(key=lambda item: item.get_closest_marker("e2e") is not None)
