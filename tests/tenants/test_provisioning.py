"""Provisioning clones the template schema, creates the first admin, and writes nothing on failure."""

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_context, schema_exists

from apps.accounts.models import Role, User
from apps.audit.models import AuditEvent
from apps.core.exceptions import InvalidInput
from apps.tenants.models import Domain, Tenant
from apps.tenants.services import tenant_provision
from tests.conftest import PASSWORD


def _catalog(schema: str) -> dict[str, list[str]]:
    """Names of everything in a schema that migrations create, for comparing a clone to its source."""
    queries = {
        "tables": "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE nspname = %s AND relkind = 'r'",
        "indexes": "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE nspname = %s AND relkind = 'i'",
        "constraints": "SELECT conname || ':' || pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "JOIN pg_namespace n ON n.oid = k.connamespace WHERE nspname = %s",
        "triggers": "SELECT tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = %s AND NOT tgisinternal",
        "columns": "SELECT table_name || '.' || column_name || ':' || data_type || ':' || is_nullable "
        "|| ':' || coalesce(column_default, '') || ':' || is_identity FROM information_schema.columns "
        "WHERE table_schema = %s",
    }
    result = {}
    with connection.cursor() as cursor:
        for name, query in queries.items():
            cursor.execute(query, [schema])
            result[name] = sorted(
                row[0].replace(f"{schema}.", "<schema>.") for row in cursor.fetchall()
            )
    return result


def test_provisioning_creates_schema_domain_and_tenant_admin(db):
    result = tenant_provision(
        slug="initech", name="Initech", admin_email="Boss@Initech.Example", admin_password=PASSWORD
    )
    assert schema_exists("initech")
    assert Domain.objects.get(tenant=result.tenant).domain == "initech.localhost"
    assert result.tenant.plan.code == "free"
    with schema_context("initech"):
        admin = User.objects.get()
        assert admin.email == "boss@initech.example"
        assert admin.role == Role.TENANT_ADMIN


def test_provisioning_copies_the_template_instead_of_migrating(db):
    tenant_provision(slug="initech", name="Initech", admin_email="boss@initech.example")
    assert _catalog("initech") == _catalog(settings.TENANT_TEMPLATE_SCHEMA)
    with connection.cursor() as cursor:
        # Migration records are copied rows: their timestamps are the template's, not new ones.
        cursor.execute("SELECT app, name, applied FROM initech.django_migrations ORDER BY id")
        cloned = cursor.fetchall()
        cursor.execute(
            f"SELECT app, name, applied FROM {settings.TENANT_TEMPLATE_SCHEMA}.django_migrations ORDER BY id"
        )
        assert cloned == cursor.fetchall()


def test_cloned_identity_sequences_continue_after_copied_rows(db):
    tenant_provision(slug="initech", name="Initech", admin_email="boss@initech.example")
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(id) FROM initech.django_content_type")
        copied_max = cursor.fetchone()[0]
    with schema_context("initech"):
        from django.contrib.contenttypes.models import ContentType

        created = ContentType.objects.create(app_label="x", model="y")
    assert created.pk > copied_max


def test_new_tenant_admin_can_sign_in_on_its_host(db):
    tenant_provision(
        slug="initech", name="Initech", admin_email="boss@initech.example", admin_password=PASSWORD
    )
    client = Client(HTTP_HOST="initech.localhost")
    response = client.post(
        "/accounts/login/", {"login": "boss@initech.example", "password": PASSWORD}
    )
    assert response.status_code == 302
    assert "Welcome to Initech" in client.get("/").content.decode()


def test_provisioning_is_audited_in_public_and_tenant_trails(db):
    result = tenant_provision(slug="initech", name="Initech", admin_email="boss@initech.example")
    assert AuditEvent.objects.filter(
        action="tenant.provisioned", target_id=str(result.tenant.pk)
    ).exists()
    with schema_context("initech"):
        assert list(AuditEvent.objects.order_by("id").values_list("action", flat=True)) == [
            "user.created",
            "tenant.provisioned",
        ]


def test_generated_password_is_returned_once_and_works(db):
    result = tenant_provision(slug="initech", name="Initech", admin_email="boss@initech.example")
    assert result.password_generated
    with schema_context("initech"):
        assert User.objects.get().check_password(result.admin_password)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"slug": "A!"}, "slug"),
        ({"slug": "ab"}, "slug"),
        ({"slug": "1abc"}, "slug"),
        ({"slug": "abc-"}, "slug"),
        ({"slug": "a--b"}, "slug"),
        ({"slug": "www"}, "slug"),
        ({"slug": "pg-catalog"}, "slug"),
        ({"slug": "acme"}, "slug"),
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"admin_email": "not-an-email"}, "admin_email"),
        ({"admin_password": "123"}, "admin_password"),
        ({"plan_code": "platinum"}, "plan"),
        ({"custom_domain": "not a domain"}, "custom_domain"),
        ({"custom_domain": "acme.localhost"}, "custom_domain"),
        ({"custom_domain": "localhost"}, "custom_domain"),
        ({"custom_domain": "initech.localhost"}, "custom_domain"),
        ({"custom_domain": "www.initech.example"}, "custom_domain"),
    ],
)
def test_bad_input_is_refused_and_nothing_is_written(db, acme, overrides, field):
    before = (Tenant.objects.count(), Domain.objects.count(), AuditEvent.objects.count())
    arguments = {
        "slug": "initech",
        "name": "Initech",
        "admin_email": "boss@initech.example",
    } | overrides
    with pytest.raises(InvalidInput) as error:
        tenant_provision(**arguments)
    assert field in error.value.details
    assert (Tenant.objects.count(), Domain.objects.count(), AuditEvent.objects.count()) == before
    assert not schema_exists("initech")


def test_custom_domain_routes_to_the_tenant(db, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "agents.initech.example"]
    tenant_provision(
        slug="initech",
        name="Initech",
        admin_email="boss@initech.example",
        custom_domain="agents.initech.example",
    )
    response = Client(HTTP_HOST="agents.initech.example").get("/api/v1/tenant/")
    assert response.json()["slug"] == "initech"


def test_two_simultaneous_sign_ups_for_one_slug_give_one_tenant_and_one_clear_error(committed):
    import threading

    from django.db import connections

    from apps.tenants.services import tenant_delete

    start = threading.Barrier(2)
    outcomes: list[object] = []

    def sign_up(index: int) -> None:
        try:
            start.wait()
            outcomes.append(
                tenant_provision(
                    slug="race-co", name=f"Race {index}", admin_email=f"a{index}@race.example"
                )
            )
        except Exception as exc:  # the outcome is what is asserted
            outcomes.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sign_up, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        errors = [o for o in outcomes if isinstance(o, Exception)]
        assert len(outcomes) == 2
        assert len(errors) == 1
        assert isinstance(errors[0], InvalidInput), errors[0]
        assert "slug" in errors[0].details
        assert Tenant.objects.filter(slug="race-co").count() == 1
    finally:
        tenant = Tenant.objects.filter(slug="race-co").first()
        if tenant is not None:
            tenant_delete(tenant=tenant, confirm="race-co")
