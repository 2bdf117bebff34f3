from django.db import migrations

PLANS = [
    # code, name, members, active deployments, messages per month, default
    ("free", "Free", 5, 2, 2_000, True),
    ("team", "Team", 50, 10, 50_000, False),
    ("enterprise", "Enterprise", None, None, None, False),
]


def seed(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for code, name, members, deployments, messages, default in PLANS:
        Plan.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "max_members": members,
                "max_active_deployments": deployments,
                "monthly_message_quota": messages,
                "is_default": default,
            },
        )


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
