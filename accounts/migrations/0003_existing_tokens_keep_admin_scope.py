"""Tokens made before scopes existed could do everything their user may: they keep that (scope admin)."""

from django.db import migrations


def existing_tokens_admin(apps, schema_editor):
    apps.get_model("accounts", "ApiToken").objects.update(scope="admin")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_apitoken_scope_last_used_ip"),
    ]

    operations = [
        migrations.RunPython(existing_tokens_admin, migrations.RunPython.noop),
    ]
