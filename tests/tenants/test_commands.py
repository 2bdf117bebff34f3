"""The operator's commands call the same services as the API and the pages."""

import pytest
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_exists

from apps.tenants.models import Tenant


def test_provision_suspend_resume_and_drop_from_the_command_line(db, capsys):
    call_command(
        "provision_tenant",
        "--slug",
        "cli-co",
        "--name",
        "CLI Co",
        "--admin-email",
        "ops@cli.example",
    )
    out = capsys.readouterr().out
    assert "Provisioned cli-co" in out
    assert "Password:" in out  # generated, shown once
    assert schema_exists("cli_co")

    call_command("suspend_tenant", "--slug", "cli-co", "--reason", "testing")
    assert Tenant.objects.get(slug="cli-co").status == "suspended"
    call_command("suspend_tenant", "--slug", "cli-co", "--resume")
    assert Tenant.objects.get(slug="cli-co").status == "active"

    with pytest.raises(CommandError, match="--confirm cli-co"):
        call_command("drop_tenant", "--slug", "cli-co")
    assert schema_exists("cli_co")
    call_command("drop_tenant", "--slug", "cli-co", "--confirm", "cli-co")
    assert not schema_exists("cli_co")


def test_provision_command_explains_bad_input(db):
    with pytest.raises(CommandError, match="slug"):
        call_command(
            "provision_tenant", "--slug", "Bad Slug", "--name", "X", "--admin-email", "a@b.example"
        )


def test_commands_refuse_unknown_tenants(db):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("suspend_tenant", "--slug", "nobody", "--reason", "x")
    with pytest.raises(CommandError, match="No tenant"):
        call_command("drop_tenant", "--slug", "nobody", "--confirm", "nobody")
