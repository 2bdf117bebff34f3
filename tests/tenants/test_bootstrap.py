"""`bootstrap` migrates only the tenant schemas that are behind the template."""

from django.core.management import call_command
from django.db import connection

from apps.tenants.selectors import tenant_schemas_behind_template


def test_up_to_date_tenants_are_skipped_and_a_stale_one_is_migrated(db, acme, globex, capsys):
    assert tenant_schemas_behind_template() == []
    with connection.cursor() as cursor:
        # A migration that is safe to apply again (it drops and re-creates the audit triggers).
        cursor.execute(
            "DELETE FROM acme.django_migrations "
            "WHERE app = 'audit' AND name = '0002_append_only_trigger'"
        )
    assert tenant_schemas_behind_template() == ["acme"]

    call_command("bootstrap")
    assert "1 behind the template" in capsys.readouterr().out
    assert tenant_schemas_behind_template() == []
